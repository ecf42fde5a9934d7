from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

import msgspec

from shared.wire import ONE_LINE, EventDayIn, check_times

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200), ONE_LINE]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
#: An IANA time zone name (checked on the server: ``shared.checkin_lists.event_zone``).
TimeZoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=64), ONE_LINE]
MAX_DAYS = 366
Days = Annotated[list[EventDayIn], msgspec.Meta(max_length=MAX_DAYS)]
DayDates = Annotated[list[date], msgspec.Meta(max_length=MAX_DAYS)]
CAPACITY_MAX = 10_000_000
Capacity = Annotated[int, msgspec.Meta(ge=0, le=CAPACITY_MAX)]
#: The most an event's own expiry grace may be: 30 days (migration 0022's check).
EXPIRY_GRACE_MAX = 30 * 24 * 3600
ExpiryGrace = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        le=EXPIRY_GRACE_MAX,
        description=(
            "Seconds after the event ends before its tickets expire (0 to 30 days); "
            "null: the server's default (GATEHOUSE_EXPIRY_GRACE, 6 hours unless set)."
        ),
    ),
]


class EventCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    venue: Name
    starts_at: AwareTime
    ends_at: AwareTime
    #: When gates start admitting; no lower bound when absent.
    admission_opens_at: AwareTime | None = None
    allow_reentry: bool = False
    #: The time zone its days and check-in rules count in (issue 16).
    time_zone: TimeZoneName = "UTC"
    #: Its days or sessions, for multi-day events (docs/checkin-lists.md).
    days: Days = msgspec.field(default_factory=list)
    #: Seconds after it ends before its tickets expire; None: the server's default.
    expiry_grace_seconds: ExpiryGrace | None = None

    def __post_init__(self) -> None:
        check_times(
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            admission_opens_at=self.admission_opens_at,
        )


class EventOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    venue: str
    starts_at: datetime
    ends_at: datetime
    admission_opens_at: datetime | None
    allow_reentry: bool
    created_at: datetime
    time_zone: str = "UTC"
    days: list[EventDayIn] = msgspec.field(default_factory=list)
    #: Grows with every change to its access setup (lists, days, time zone, ticket types' days).
    setup_version: int = 1
    #: Seconds after it ends before its tickets expire; None: the server's default.
    expiry_grace_seconds: int | None = None


class EventDays(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``PUT /v1/events/{id}/days``: the event's time zone and days, replacing what it had."""

    time_zone: TimeZoneName
    days: Days = msgspec.field(default_factory=list)


class EventUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``PATCH /v1/events/{id}``: the fields given replace the event's, the rest stay; the
    result is checked as a new event would be (it ends after it starts, admission opens before
    it ends, a real time zone, no day twice). ``null`` clears ``admission_opens_at``, and
    ``expiry_grace_seconds`` (back to the server's default)."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    venue: Name | msgspec.UnsetType = msgspec.UNSET
    starts_at: AwareTime | msgspec.UnsetType = msgspec.UNSET
    ends_at: AwareTime | msgspec.UnsetType = msgspec.UNSET
    admission_opens_at: AwareTime | msgspec.UnsetType | None = msgspec.UNSET
    allow_reentry: bool | msgspec.UnsetType = msgspec.UNSET
    time_zone: TimeZoneName | msgspec.UnsetType = msgspec.UNSET
    days: Days | msgspec.UnsetType = msgspec.UNSET
    expiry_grace_seconds: ExpiryGrace | msgspec.UnsetType | None = msgspec.UNSET

    def __post_init__(self) -> None:
        check_times(
            **{
                name: value
                for name, value in (
                    ("starts_at", self.starts_at),
                    ("ends_at", self.ends_at),
                    ("admission_opens_at", self.admission_opens_at),
                )
                if isinstance(value, datetime)
            }
        )


class EventPage(msgspec.Struct, kw_only=True):
    items: list[EventOut]
    next_cursor: str | None


class TicketTypeCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    capacity: Capacity
    #: The event days (dates of its ``days``) it admits; empty: every day.
    days: DayDates = msgspec.field(default_factory=list)
    #: Whether revoking one of its tickets returns the seat to sale (a revocation may say
    #: otherwise: ``RevokeRequest.release_seat``).
    release_seat: bool = False


class TicketTypeUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``PATCH /v1/events/{id}/ticket-types/{id}``: the fields given replace the type's, the
    rest stay. ``capacity`` may not drop below the tickets already sold; ``days`` are the
    event days the type admits (empty: every day). ``{"days": [...]}`` alone is the request
    this endpoint took before it could change more."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    capacity: Capacity | msgspec.UnsetType = msgspec.UNSET
    days: DayDates | msgspec.UnsetType = msgspec.UNSET
    release_seat: bool | msgspec.UnsetType = msgspec.UNSET


class TicketTypeOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    event_id: uuid.UUID
    name: str
    capacity: int
    sold: int
    available: int
    days: list[date] = msgspec.field(default_factory=list)
    release_seat: bool = False


class KeyRotation(msgspec.Struct, kw_only=True):
    """The keys new codes of the event are now issued with."""

    event_id: uuid.UUID
    signing_key_id: int
    encryption_key_id: int


class KeyRetirement(msgspec.Struct, kw_only=True):
    """A key retired after a loss, and how far its tickets' new codes have got."""

    event_id: uuid.UUID
    key_id: int
    retired_at: datetime
    #: The keys new codes are issued with now.
    signing_key_id: int
    encryption_key_id: int
    #: Tickets given a new code by this call (a ``ticket.reissued`` event each).
    tickets_reissued: int
    #: Tickets still waiting for one: 0 when done; otherwise call again (it carries on).
    tickets_remaining: int


class KeyOut(msgspec.Struct, kw_only=True):
    """One of an event's ticket-code keys (never its material)."""

    kind: str
    key_id: int
    #: New codes are made with the active key of each kind.
    active: bool
    created_at: datetime
    #: Set once retired: codes made with it are refused.
    retired_at: datetime | None
    #: Active and older than the server's ``GATEHOUSE_KEY_MAX_AGE`` (90 days unless set):
    #: time to rotate (``POST /v1/events/{id}/keys/rotate``).
    rotation_due: bool = False
