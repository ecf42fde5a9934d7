from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from shared.wire import (
    DeviceHeartbeat,
    DeviceSelf,
    DeviceTokens,
    EnrolledDevice,
    EnrollRequest,
    GateName,
    TokenRenewal,
)

__all__ = [
    "DeviceHeartbeat",
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
    #: Why: ``manager`` (revoked by a manager), ``refresh_token_reused`` (the server saw a
    #: spent refresh token presented again: a copy of the device's tokens is in other hands)
    #: or ``re_enrolled`` (the same computer was enrolled again: a newer device took it over).
    revoked_reason: str | None
    #: Last contact: the device's latest sync (or token renewal, or heartbeat), server time.
    last_seen_at: datetime | None
    #: Uploaded scans whose code did not read that the server counted but did not store (the
    #: device sent more of them in a minute than it stores); many means a device to look at.
    junk_scans_not_stored: int = 0
    #: The device this one took over (the same computer enrolled again, ``wire.Succession``):
    #: its scans count as this device's. None for a first enrollment.
    succeeds_id: uuid.UUID | None = None
    #: Last contact within the device's window (three reported sync intervals, one to ten
    #: minutes; a minute without a heartbeat), and not revoked (docs/api.md).
    online: bool = False
    #: A sentence for managers: online or since when not, and what it still has to upload.
    status: str = ""
    # The latest heartbeat (``POST /v1/devices/me/heartbeat``): what the device said about
    # itself, as it said it; all null until its first (and for scanners older than it).
    #: When the server received it.
    heartbeat_at: datetime | None = None
    #: Scans made on the device and not yet uploaded.
    queued_scans: int | None = None
    queued_annulments: int | None = None
    oldest_queued_at: datetime | None = None
    #: Server time minus device time, in ms, as the device measured it.
    clock_offset_ms: int | None = None
    app_version: str | None = None
    #: The check-in setup version it holds (compare with the event's).
    setup_version: int | None = None
    #: Its last sync that went through, as it says.
    last_sync_at: datetime | None = None
    sync_interval_seconds: int | None = None
    lab_mode: bool | None = None
    #: How many other gates of its event it heard in the last minute (peer sync, issue 18);
    #: null when it has peer sync off (or is older than peer sync).
    peers_heard: int | None = None


class DevicePage(msgspec.Struct, kw_only=True):
    items: list[DeviceOut]
    next_cursor: str | None
