from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from shared.wire import GateName, ScannerKeys

#: How long an enrollment code may live: at least a minute, at most a week.
EnrollmentTtl = Annotated[int, msgspec.Meta(ge=60, le=7 * 24 * 3600)]
DeviceName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
#: What a person may type for a code: generous, the service normalises it.
CodeInput = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


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


class EnrollRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    code: CodeInput
    device_name: DeviceName


class EnrolledDevice(msgspec.Struct, kw_only=True):
    """What a freshly enrolled scanner needs: who it is, its token, and the keys to read codes."""

    device_id: uuid.UUID
    device_token: str
    tenant_id: uuid.UUID
    event_id: uuid.UUID
    gate: str
    keys: ScannerKeys
    server_time: datetime


class DeviceSelf(msgspec.Struct, kw_only=True):
    """The calling device as the server knows it, with the event's current keys."""

    device_id: uuid.UUID
    name: str
    event_id: uuid.UUID
    gate: str
    revoked: bool
    keys: ScannerKeys
    server_time: datetime


class DeviceOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    event_id: uuid.UUID
    gate: str
    created_at: datetime
    revoked_at: datetime | None
    last_seen_at: datetime | None


class DevicePage(msgspec.Struct, kw_only=True):
    items: list[DeviceOut]
    next_cursor: str | None
