"""What ``POST /v1/codes/check`` takes and answers."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from shared import wire
from shared.wire import PROSE


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


class ConflictAction(enum.StrEnum):
    #: Both admissions stand (a known re-entry, say): the double entry counts as an admission.
    ACCEPT = "accept"
    #: The double entry is undone, as ``POST /v1/scans/{id}/annul`` would.
    ANNUL = "annul"


class ConflictResolveRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/scans/{id}/resolve``: how a manager resolves a double entry."""

    action: ConflictAction
    #: Why (kept in the ticket's history and the event).
    note: Annotated[str, msgspec.Meta(min_length=1, max_length=500), PROSE] | None = None


class ConflictResolutionOut(msgspec.Struct, kw_only=True):
    """A resolved double entry: the same answer however often it is asked."""

    scan_id: uuid.UUID
    ticket_id: uuid.UUID
    #: The admission it collided with.
    conflict_of: uuid.UUID | None
    #: ``accepted`` or ``annulled``.
    resolution: str
    resolved_at: datetime
    resolved_by: str
    note: str | None
