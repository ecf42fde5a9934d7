from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from sync_server.domain.events.schemas import (
    EventCreate,
    EventOut,
    EventPage,
    KeyRotation,
    TicketTypeCreate,
    TicketTypeOut,
)
from sync_server.domain.events.services import EventService, event_out
from sync_server.http.auth import Principal, Role, allow
from sync_server.http.pagination import DEFAULT_LIMIT
from sync_server.runtime import PrincipalDep, Runtime, RuntimeDep, SessionDep


def _service(session: AsyncSession, rt: Runtime, principal: Principal) -> EventService:
    return EventService(session, rt.keys, principal)


class EventController(Controller):
    path = "/v1/events"
    tags = ["events"]  # noqa: RUF012
    guards = [allow(Role.MANAGER, Role.SERVICE)]  # noqa: RUF012

    @post("/")
    async def create(
        self,
        data: JSONBody[EventCreate],
        session: SessionDep,
        rt: RuntimeDep,
        principal: PrincipalDep,
    ) -> EventOut:
        """Create an event (its ticket-code keys are made with it)."""
        return await _service(session, rt, principal).create(data)

    @get("/")
    async def list_events(
        self,
        session: SessionDep,
        rt: RuntimeDep,
        principal: PrincipalDep,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = DEFAULT_LIMIT,
    ) -> EventPage:
        return await _service(session, rt, principal).page(cursor, limit)

    @get("/{event_id:uuid}")
    async def read(
        self,
        event_id: FromPath[uuid.UUID],
        session: SessionDep,
        rt: RuntimeDep,
        principal: PrincipalDep,
    ) -> EventOut:
        return event_out(await _service(session, rt, principal).get(event_id))

    @post("/{event_id:uuid}/ticket-types")
    async def add_ticket_type(
        self,
        event_id: FromPath[uuid.UUID],
        data: JSONBody[TicketTypeCreate],
        session: SessionDep,
        rt: RuntimeDep,
        principal: PrincipalDep,
    ) -> TicketTypeOut:
        return await _service(session, rt, principal).add_ticket_type(event_id, data)

    @get("/{event_id:uuid}/ticket-types")
    async def ticket_types(
        self,
        event_id: FromPath[uuid.UUID],
        session: SessionDep,
        rt: RuntimeDep,
        principal: PrincipalDep,
    ) -> list[TicketTypeOut]:
        return await _service(session, rt, principal).ticket_types(event_id)

    @post("/{event_id:uuid}/keys/rotate", guards=[allow(Role.MANAGER)])
    async def rotate_keys(
        self,
        event_id: FromPath[uuid.UUID],
        session: SessionDep,
        rt: RuntimeDep,
        principal: PrincipalDep,
    ) -> KeyRotation:
        """Issue new codes with fresh keys; codes issued before keep working."""
        return await _service(session, rt, principal).rotate_keys(event_id)
