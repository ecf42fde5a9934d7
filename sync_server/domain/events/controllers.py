from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, TypeAlias

from litestar import Controller, get, patch, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, Parameter, QueryParameter

from sync_server.domain.events import retirement
from sync_server.domain.events.schemas import (
    EventCreate,
    EventDays,
    EventOut,
    EventPage,
    EventUpdate,
    KeyOut,
    KeyRetirement,
    KeyRotation,
    TicketTypeCreate,
    TicketTypeOut,
    TicketTypeUpdate,
)
from sync_server.domain.events.services import EventService, event_out
from sync_server.domain.keys.services import KeysDep
from sync_server.http.auth import Role, allow
from sync_server.http.dependencies import (
    ClockDep,
    OpenSessionDep,
    PrincipalDep,
    SessionDep,
    SettingsDep,
)
from sync_server.http.pagination import DEFAULT_LIMIT
from sync_server.http.problems import AUTHENTICATED, DocumentedOperation, problem_responses


async def provide_event_service(
    session: SessionDep, keys: KeysDep, principal: PrincipalDep
) -> EventService:
    return EventService(session, keys, principal)


EventServiceDep: TypeAlias = NamedDependency[EventService]
#: Transactions of new codes per retirement request (of ``REISSUE_BATCH`` tickets each).
RETIRE_BATCHES_PER_REQUEST = 10


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

    @patch(
        "/{event_id:uuid}",
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, *AUTHENTICATED),
    )
    async def update(
        self,
        event_id: FromPath[uuid.UUID],
        data: JSONBody[EventUpdate],
        event_service: EventServiceDep,
    ) -> EventOut:
        """Change an event: the fields given replace its own, the rest stay, and the result is
        checked as a new event would be (400 ``invalid_time_window``, ``invalid_time_zone``,
        ``duplicate_day``). A change of its times, time zone, days or re-entry grows its
        ``setup_version``: scanners receive it with their next sync, and check-in lists count
        "today" in the new time zone and days from then on."""
        return await event_service.update(event_id, data)

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

    @put(
        "/{event_id:uuid}/days",
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, *AUTHENTICATED),
    )
    async def set_days(
        self,
        event_id: FromPath[uuid.UUID],
        data: JSONBody[EventDays],
        event_service: EventServiceDep,
    ) -> EventOut:
        """Set the event's time zone and days (or sessions), replacing what it had: check-in
        lists count "today" in them, ticket types name the days they admit. Scanners receive
        the change with their next sync."""
        return await event_service.set_days(event_id, data)

    @patch(
        "/{event_id:uuid}/ticket-types/{ticket_type_id:uuid}",
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, 409, *AUTHENTICATED),
    )
    async def update_ticket_type(
        self,
        event_id: FromPath[uuid.UUID],
        ticket_type_id: FromPath[uuid.UUID],
        data: JSONBody[TicketTypeUpdate],
        event_service: EventServiceDep,
    ) -> TicketTypeOut:
        """Change a ticket type: the fields given replace its own. ``capacity`` may not drop
        below the tickets sold (409 ``capacity_below_sold``); a name another type of the event
        has is 409 ``ticket_type_exists``; ``days`` are the event days it admits (dates of the
        event's ``days``; empty: every day; a date that is none of the event's days admits on
        no day). A new name or days reach scanners with their next sync."""
        return await event_service.update_ticket_type(event_id, ticket_type_id, data)

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

    @get(
        "/{event_id:uuid}/keys",
        guards=[allow(Role.MANAGER)],
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, *AUTHENTICATED),
    )
    async def list_keys(
        self,
        event_id: FromPath[uuid.UUID],
        event_service: EventServiceDep,
        clock: ClockDep,
        settings: SettingsDep,
    ) -> list[KeyOut]:
        """The event's ticket-code keys (ids, kinds, which are active, which retired, which
        are due for rotation; never their material): after a lost scanner, retire the ones it
        held."""
        return await event_service.keys(
            event_id, now=clock.now(), max_age=timedelta(seconds=settings.jobs.key_max_age)
        )

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

    @post(
        "/{event_id:uuid}/keys/{key_id:int}/retire",
        guards=[allow(Role.MANAGER)],
        status_code=200,
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, *AUTHENTICATED),
    )
    async def retire_key(
        self,
        event_id: FromPath[uuid.UUID],
        key_id: Annotated[int, Parameter(ge=0, le=2**32 - 1)],
        open_session: OpenSessionDep,
        keys: KeysDep,
        clock: ClockDep,
        principal: PrincipalDep,
    ) -> KeyRetirement:
        """After a loss (a stolen scanner): retire one of the event's keys (signing or
        encryption, by its id; an active one is replaced first). Codes made with it are
        refused from now on, online and — once they have synced — by the scanners, and every
        live ticket of the event gets a new code (a ``ticket.reissued`` event each), in
        batches, up to 5,000 tickets a call: while ``tickets_remaining`` is above 0, call
        again. Safe to repeat."""
        return await retirement.retire_key(
            open_session,
            keys,
            clock,
            tenant_id=principal.tenant_id,
            event_id=event_id,
            key_id=key_id,
            actor=principal.actor,
            max_batches=RETIRE_BATCHES_PER_REQUEST,
        )
