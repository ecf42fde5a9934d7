from __future__ import annotations

import uuid
from typing import Annotated, TypeAlias

from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from sync_server.domain.events.schemas import (
    EventCreate,
    EventOut,
    EventPage,
    KeyRotation,
    TicketTypeCreate,
    TicketTypeOut,
)
from sync_server.domain.events.services import EventService, event_out
from sync_server.domain.keys.services import KeysDep
from sync_server.http.auth import Role, allow
from sync_server.http.dependencies import PrincipalDep, SessionDep
from sync_server.http.pagination import DEFAULT_LIMIT
from sync_server.http.problems import AUTHENTICATED, DocumentedOperation, problem_responses


async def provide_event_service(
    session: SessionDep, keys: KeysDep, principal: PrincipalDep
) -> EventService:
    return EventService(session, keys, principal)


EventServiceDep: TypeAlias = NamedDependency[EventService]


class EventController(Controller):
    path = "/v1/events"
    tags = ["events"]  # noqa: RUF012
    guards = [allow(Role.MANAGER, Role.SERVICE)]  # noqa: RUF012
    dependencies = {"event_service": Provide(provide_event_service)}  # noqa: RUF012

    @post(
        "/",
        operation_class=DocumentedOperation,
        responses=problem_responses(400, *AUTHENTICATED),
    )
    async def create(
        self,
        data: JSONBody[EventCreate],
        event_service: EventServiceDep,
    ) -> EventOut:
        """Create an event (its ticket-code keys are made with it)."""
        return await event_service.create(data)

    @get(
        "/",
        operation_class=DocumentedOperation,
        responses=problem_responses(400, *AUTHENTICATED),
    )
    async def list_events(
        self,
        event_service: EventServiceDep,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = DEFAULT_LIMIT,
    ) -> EventPage:
        return await event_service.page(cursor, limit)

    @get(
        "/{event_id:uuid}",
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, *AUTHENTICATED),
    )
    async def read(
        self,
        event_id: FromPath[uuid.UUID],
        event_service: EventServiceDep,
    ) -> EventOut:
        return event_out(await event_service.get(event_id))

    @post(
        "/{event_id:uuid}/ticket-types",
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, 409, *AUTHENTICATED),
    )
    async def add_ticket_type(
        self,
        event_id: FromPath[uuid.UUID],
        data: JSONBody[TicketTypeCreate],
        event_service: EventServiceDep,
    ) -> TicketTypeOut:
        return await event_service.add_ticket_type(event_id, data)

    @get(
        "/{event_id:uuid}/ticket-types",
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, *AUTHENTICATED),
    )
    async def ticket_types(
        self,
        event_id: FromPath[uuid.UUID],
        event_service: EventServiceDep,
    ) -> list[TicketTypeOut]:
        return await event_service.ticket_types(event_id)

    @post(
        "/{event_id:uuid}/keys/rotate",
        guards=[allow(Role.MANAGER)],
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, *AUTHENTICATED),
    )
    async def rotate_keys(
        self,
        event_id: FromPath[uuid.UUID],
        event_service: EventServiceDep,
    ) -> KeyRotation:
        """Issue new codes with fresh keys; codes issued before keep working."""
        return await event_service.rotate_keys(event_id)
