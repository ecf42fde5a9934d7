"""Events and their ticket types."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date

import msgspec
from sqlalchemy import select
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
    KeyOut,
    KeyRotation,
    TicketTypeCreate,
    TicketTypeDays,
    TicketTypeOut,
)
from sync_server.domain.keys.services import KeyStore
from sync_server.http.auth import Principal
from sync_server.http.pagination import fetch_page
from sync_server.http.problems import BadRequest, Conflict, NotFound


class EventService:
    def __init__(self, session: AsyncSession, keys: KeyStore, principal: Principal) -> None:
        self._session = session
        self._keys = keys
        self._principal = principal

    async def create(self, data: EventCreate) -> EventOut:
        """Create an event and its first ticket-code keys."""
        if data.ends_at <= data.starts_at:
            raise BadRequest("invalid_time_window", "An event must end after it starts.")
        if data.admission_opens_at is not None and data.admission_opens_at >= data.ends_at:
            raise BadRequest("invalid_time_window", "Admission must open before the event ends.")
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

    async def set_days(self, event_id: uuid.UUID, data: EventDays) -> EventOut:
        """Replace the event's time zone and days (its setup version grows)."""
        event = await self.get(event_id)
        _check_days(data.time_zone, data.days)
        event.time_zone = data.time_zone
        event.days = msgspec.to_builtins(data.days)
        await self._session.flush()
        await self._session.refresh(event)
        return event_out(event)

    async def set_ticket_type_days(
        self, event_id: uuid.UUID, ticket_type_id: uuid.UUID, data: TicketTypeDays
    ) -> TicketTypeOut:
        await self.get(event_id)
        ticket_type = await self._session.get(TicketType, ticket_type_id)
        if ticket_type is None or ticket_type.event_id != event_id:
            raise NotFound("ticket type")
        ticket_type.days = _type_days(data.days)
        await self._session.flush()
        return ticket_type_out(ticket_type)

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

    async def keys(self, event_id: uuid.UUID) -> list[KeyOut]:
        """The event's keys, retired ones included, oldest first."""
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
    )
