from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from shared.wire import (
    DeviceSelf,
    DeviceTokens,
    EnrolledDevice,
    EnrollRequest,
    GateName,
    TokenRenewal,
)

__all__ = [
    "DeviceOut",
    "DevicePage",
    "DeviceSelf",
    "DeviceTokens",
    "EnrollRequest",
    "EnrolledDevice",
    "EnrollmentCreate",
    "EnrollmentOut",
    "TokenRenewal",
]

#: How long an enrollment code may live: at least a minute, at most a week.
EnrollmentTtl = Annotated[int, msgspec.Meta(ge=60, le=7 * 24 * 3600)]


class EnrollmentCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    event_id: uuid.UUID
    gate: GateName
    #: Seconds until the code stops working; the server's default when absent.
    ttl_seconds: EnrollmentTtl | None = None


class EnrollmentOut(msgspec.Struct, kw_only=True):
    """A one-time code for enrolling one device at a gate. Shown once: only its hash is kept."""

    enrollment_id: uuid.UUID
    code: str
    event_id: uuid.UUID
    gate: str
    expires_at: datetime


class DeviceOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    event_id: uuid.UUID
    gate: str
    created_at: datetime
    revoked_at: datetime | None
    #: Why: ``manager`` (revoked by a manager) or ``refresh_token_reused`` (the server saw a
    #: spent refresh token presented again: a copy of the device's tokens is in other hands).
    revoked_reason: str | None
    last_seen_at: datetime | None
    #: Uploaded scans whose code did not read that the server counted but did not store (the
    #: device sent more of them in a minute than it stores); many means a device to look at.
    junk_scans_not_stored: int = 0


class DevicePage(msgspec.Struct, kw_only=True):
    items: list[DeviceOut]
    next_cursor: str | None
