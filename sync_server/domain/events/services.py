"""Events and their ticket types."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import TypeVar

import msgspec
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.checkin_lists import event_zone
from shared.ids import new_id
from shared.wire import EventDayIn
from sync_server.db.models import Event, TicketKey, TicketType
from sync_server.domain.events.schemas import (
    EventCreate,
    EventDays,
    EventOut,
    EventPage,
    EventUpdate,
    KeyOut,
    KeyRotation,
    TicketTypeCreate,
    TicketTypeOut,
    TicketTypeUpdate,
)
from sync_server.domain.keys.rotation import rotation_due
from sync_server.domain.keys.services import KeyStore
from sync_server.http.auth import Principal
from sync_server.http.pagination import fetch_page
from sync_server.http.problems import BadRequest, Conflict, NotFound

T = TypeVar("T")
#: The sentence of an ``invalid_time_window`` about admission (the console shows it next to
#: the admission field, the other next to the end).
ADMISSION_AFTER_END = "Admission must open before the event ends."


class EventService:
    def __init__(self, session: AsyncSession, keys: KeyStore, principal: Principal) -> None:
        self._session = session
        self._keys = keys
        self._principal = principal

    async def create(self, data: EventCreate) -> EventOut:
        """Create an event and its first ticket-code keys."""
        _check_event(data.starts_at, data.ends_at, data.admission_opens_at)
        _check_days(data.time_zone, data.days)
        event = Event(
            id=new_id(),
            tenant_id=self._principal.tenant_id,
            name=data.name,
            venue=data.venue,
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            admission_opens_at=data.admission_opens_at,
            allow_reentry=data.allow_reentry,
            time_zone=data.time_zone,
            days=msgspec.to_builtins(data.days),
            expiry_grace_seconds=data.expiry_grace_seconds,
        )
        self._session.add(event)
        await self._session.flush()
        await self._keys.create(self._session, tenant_id=event.tenant_id, event_id=event.id)
        await self._session.refresh(event)
        return event_out(event)

    async def get(self, event_id: uuid.UUID) -> Event:
        event = await self._session.get(Event, event_id)
        if event is None:
            raise NotFound("event")
        return event

    async def page(self, cursor: str | None, limit: int) -> EventPage:
        events, next_cursor = await fetch_page(self._session, Event, cursor, limit)
        return EventPage(items=[event_out(e) for e in events], next_cursor=next_cursor)

    async def update(self, event_id: uuid.UUID, data: EventUpdate) -> EventOut:
        """Change the fields given; the event as changed is checked as a new one would be.
        The event's row is locked first, so two changes at once apply one after the other,
        each checked against what the other left. A change to its times, time zone, days or
        re-entry grows its setup version (migration 0013's trigger): scanners receive it with
        their next sync, and the check-in counts days by it from then on."""
        event = await self._locked(event_id)
        starts_at = _given(data.starts_at, event.starts_at)
        ends_at = _given(data.ends_at, event.ends_at)
        admission_opens_at = _given(data.admission_opens_at, event.admission_opens_at)
        time_zone = _given(data.time_zone, event.time_zone)
        _check_event(starts_at, ends_at, admission_opens_at)
        if data.time_zone is not msgspec.UNSET or data.days is not msgspec.UNSET:
            days = msgspec.convert(event.days, list[EventDayIn], strict=False)
            _check_days(time_zone, _given(data.days, days))
        event.name = _given(data.name, event.name)
        event.venue = _given(data.venue, event.venue)
        event.starts_at, event.ends_at = starts_at, ends_at
        event.admission_opens_at = admission_opens_at
        event.allow_reentry = _given(data.allow_reentry, event.allow_reentry)
        event.time_zone = time_zone
        event.expiry_grace_seconds = _given(data.expiry_grace_seconds, event.expiry_grace_seconds)
        if data.days is not msgspec.UNSET:
            event.days = msgspec.to_builtins(data.days)
        await self._session.flush()
        await self._session.refresh(event)
        return event_out(event)

    async def set_days(self, event_id: uuid.UUID, data: EventDays) -> EventOut:
        """Replace the event's time zone and days (its setup version grows)."""
        return await self.update(event_id, EventUpdate(time_zone=data.time_zone, days=data.days))

    async def update_ticket_type(
        self, event_id: uuid.UUID, ticket_type_id: uuid.UUID, data: TicketTypeUpdate
    ) -> TicketTypeOut:
        """Change the fields given. The capacity never drops below the tickets sold: the
        check and the change are one statement, so a sale at the same moment is counted."""
        await self.get(event_id)
        ticket_type = await self._session.get(TicketType, ticket_type_id)
        if ticket_type is None or ticket_type.event_id != event_id:
            raise NotFound("ticket type")
        values: dict[str, object] = {}
        if data.name is not msgspec.UNSET:
            values["name"] = data.name
        if data.capacity is not msgspec.UNSET:
            values["capacity"] = data.capacity
        if data.days is not msgspec.UNSET:
            values["days"] = _type_days(data.days)
        if data.release_seat is not msgspec.UNSET:
            values["release_seat"] = data.release_seat
        if values:
            statement = (
                update(TicketType)
                .where(TicketType.id == ticket_type_id)
                .values(**values)
                .returning(TicketType.id)
                .execution_options(synchronize_session=False)
            )
            if data.capacity is not msgspec.UNSET:
                statement = statement.where(TicketType.sold <= data.capacity)
            try:
                async with self._session.begin_nested():
                    changed = await self._session.scalar(statement)
            except IntegrityError as error:
                raise Conflict(
                    "ticket_type_exists",
                    f"The event already has a ticket type named {data.name!r}.",
                ) from error
            if changed is None:
                await self._session.refresh(ticket_type)
                raise Conflict(
                    "capacity_below_sold",
                    f"{ticket_type.sold:,} tickets of this type are sold already: "
                    f"the capacity can be no less than that.",
                    sold=ticket_type.sold,
                )
            await self._session.refresh(ticket_type)
        return ticket_type_out(ticket_type)

    async def _locked(self, event_id: uuid.UUID) -> Event:
        event = await self._session.scalar(
            select(Event).where(Event.id == event_id).with_for_update()
        )
        if event is None:
            raise NotFound("event")
        return event

    async def add_ticket_type(self, event_id: uuid.UUID, data: TicketTypeCreate) -> TicketTypeOut:
        await self.get(event_id)
        ticket_type = TicketType(
            id=new_id(),
            tenant_id=self._principal.tenant_id,
            event_id=event_id,
            name=data.name,
            capacity=data.capacity,
            sold=0,
            days=_type_days(data.days),
            release_seat=data.release_seat,
        )
        self._session.add(ticket_type)
        try:
            async with self._session.begin_nested():
                await self._session.flush()
        except IntegrityError as error:
            raise Conflict(
                "ticket_type_exists", f"The event already has a ticket type named {data.name!r}."
            ) from error
        return ticket_type_out(ticket_type)

    async def ticket_types(self, event_id: uuid.UUID) -> list[TicketTypeOut]:
        await self.get(event_id)
        found = await self._session.scalars(
            select(TicketType).where(TicketType.event_id == event_id).order_by(TicketType.id)
        )
        return [ticket_type_out(t) for t in found]

    async def keys(self, event_id: uuid.UUID, *, now: datetime, max_age: timedelta) -> list[KeyOut]:
        """The event's keys, retired ones included, oldest first; an active one older than
        ``max_age`` at ``now`` is ``rotation_due``."""
        await self.get(event_id)
        found = await self._session.scalars(
            select(TicketKey)
            .where(TicketKey.event_id == event_id)
            .order_by(TicketKey.created_at, TicketKey.kind, TicketKey.key_id)
        )
        return [
            KeyOut(
                kind=key.kind,
                key_id=key.key_id,
                active=key.active,
                created_at=key.created_at,
                retired_at=key.retired_at,
                rotation_due=rotation_due(
                    active=key.active, created_at=key.created_at, now=now, max_age=max_age
                ),
            )
            for key in found
        ]

    async def rotate_keys(self, event_id: uuid.UUID) -> KeyRotation:
        await self.get(event_id)
        ring = await self._keys.rotate(
            self._session, tenant_id=self._principal.tenant_id, event_id=event_id
        )
        return KeyRotation(
            event_id=event_id,
            signing_key_id=ring.active_signing_key.key_id,
            encryption_key_id=ring.active_encryption_key.key_id,
        )


def _given(value: T | msgspec.UnsetType, current: T) -> T:
    return current if isinstance(value, msgspec.UnsetType) else value


def _check_event(
    starts_at: datetime, ends_at: datetime, admission_opens_at: datetime | None
) -> None:
    if ends_at <= starts_at:
        raise BadRequest("invalid_time_window", "An event must end after it starts.")
    if admission_opens_at is not None and admission_opens_at >= ends_at:
        raise BadRequest("invalid_time_window", ADMISSION_AFTER_END)


def _check_days(time_zone: str, days: Sequence[EventDayIn]) -> None:
    """400 for a time zone that is none, or a date given twice."""
    try:
        event_zone(time_zone)
    except ValueError as error:
        raise BadRequest("invalid_time_zone", f"time_zone: {error}") from None
    seen: set[date] = set()
    for day in days:
        if day.date in seen:
            raise BadRequest("duplicate_day", f"days: {day.date.isoformat()} is given twice.")
        seen.add(day.date)


def _type_days(days: Sequence[date]) -> list[str]:
    """A ticket type's days as stored (ISO dates, sorted). A date that is none of the event's
    days is kept: such a ticket is refused on every day (the event's days may change later)."""
    return sorted({d.isoformat() for d in days})


def event_out(event: Event) -> EventOut:
    return EventOut(
        id=event.id,
        name=event.name,
        venue=event.venue,
        starts_at=event.starts_at,
        ends_at=event.ends_at,
        admission_opens_at=event.admission_opens_at,
        allow_reentry=event.allow_reentry,
        created_at=event.created_at,
        time_zone=event.time_zone,
        days=msgspec.convert(event.days, list[EventDayIn], strict=False),
        setup_version=event.setup_version,
        expiry_grace_seconds=event.expiry_grace_seconds,
    )


def ticket_type_out(ticket_type: TicketType) -> TicketTypeOut:
    return TicketTypeOut(
        id=ticket_type.id,
        event_id=ticket_type.event_id,
        name=ticket_type.name,
        capacity=ticket_type.capacity,
        sold=ticket_type.sold,
        available=ticket_type.capacity - ticket_type.sold,
        days=[date.fromisoformat(d) for d in ticket_type.days],
        release_seat=ticket_type.release_seat,
    )
