"""Identifiers. Everything the system creates gets a UUIDv7: time-ordered, so ids sort by
creation and index well, and unique across devices without coordination (a scanner mints scan
ids offline)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from uuid_utils import compat as _uuid_compat


def new_id() -> uuid.UUID:
    """A fresh UUIDv7 (a stdlib ``uuid.UUID``)."""
    return _uuid_compat.uuid7()


def id_time(value: uuid.UUID) -> datetime:
    """When a UUIDv7 was minted (millisecond precision, UTC).

    Raises ``ValueError`` for a UUID of another version, whose leading bits are not a time.
    """
    if value.version != 7:
        raise ValueError(f"{value} is a version {value.version} UUID, not version 7")
    millis = value.int >> 80
    return datetime.fromtimestamp(millis / 1000, tz=UTC)
