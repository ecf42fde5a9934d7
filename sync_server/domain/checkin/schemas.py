"""What ``POST /v1/codes/check`` takes and answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from shared import wire


class CodeCheckRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    #: The gate's event; defaults to the event the code names.
    event_id: uuid.UUID | None = None


class CodeCheckOut(msgspec.Struct, kw_only=True):
    """What the code says and whether it would pass a gate now, ignoring earlier scans.
    Nothing is recorded."""

    verdict: wire.Verdict
    secret_version: int | None = None
    issued_at: datetime | None = None
