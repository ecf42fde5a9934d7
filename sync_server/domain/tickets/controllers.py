from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, TypeAlias

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter, SkipValidation
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from shared.domain import TicketStatus
from sync_server.domain.keys.services import KeysDep
from sync_server.domain.tickets.schemas import (
    PurchaseOut,
    PurchaseRequest,
    RevokeRequest,
    TicketOut,
    TicketPage,
    TicketWithCode,
    TransferRequest,
    TransitionOut,
)
from sync_server.domain.tickets.services import TicketService, ticket_out
from sync_server.http.auth import Role, allow
from sync_server.http.dependencies import (
    ActiveDeviceDep,
    ClockDep,
    OpenSessionDep,
    PrincipalDep,
    SessionDep,
)
from sync_server.http.idempotency import (
    REPLAYED,
    IdempotencyHeader,
    IdempotentRequest,
    run_idempotent,
)
from sync_server.http.pagination import DEFAULT_LIMIT
from sync_server.http.problems import AUTHENTICATED, DocumentedOperation, problem_responses
from sync_server.redis.ticket_cache import TicketCache

_WRITERS = [allow(Role.SERVICE, Role.MANAGER)]

#: The caller's ``TicketService`` in a given transaction.
TicketServiceFor: TypeAlias = Callable[[AsyncSession], TicketService]
#: The custodial wallet's address with the chain on (read once at start-up), None with it off.
CustodyDep: TypeAlias = NamedDependency[str | None]
TicketCacheDep: TypeAlias = NamedDependency[SkipValidation[TicketCache[TicketOut]]]


async def provide_ticket_service_for(
    keys: KeysDep, clock: ClockDep, principal: PrincipalDep, custody: CustodyDep
) -> TicketServiceFor:
    def service(session: AsyncSession) -> TicketService:
        return TicketService(session, keys, principal, clock.now(), custody=custody)

    return service


TicketServiceForDep: TypeAlias = NamedDependency[SkipValidation[TicketServiceFor]]


async def provide_ticket_service(
    session: SessionDep, ticket_service_for: TicketServiceForDep
) -> TicketService:
    return ticket_service_for(session)


TicketServiceDep: TypeAlias = NamedDependency[TicketService]
_TICKET_SERVICES = {
    "ticket_service_for": Provide(provide_ticket_service_for),
    "ticket_service": Provide(provide_ticket_service),
}


@post(
    "/v1/purchases",
    guards=_WRITERS,
    tags=["tickets"],
    status_code=201,
    dependencies=_TICKET_SERVICES,
    operation_class=DocumentedOperation,
    responses=problem_responses(400, 404, 409, 422, *AUTHENTICATED),
    response_headers=[REPLAYED],
)
async def purchase(
    data: JSONBody[PurchaseRequest],
    session: SessionDep,
    ticket_service: TicketServiceDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyHeader = None,
) -> Response[PurchaseOut]:
    """Buy tickets. Needs an ``Idempotency-Key``; answers 409 ``sold_out`` when the type has
    fewer tickets left than asked for. The codes in the answer are the tickets' QR contents."""
    request = IdempotentRequest.of(principal, "purchases", idempotency_key, data)
    return await run_idempotent(
        session,
        request,
        201,
        PurchaseOut,
        lambda: ticket_service.purchase(data, principal.tenant_id),
        redaction=ticket_service.purchase_redaction(principal.tenant_id),
    )


class TicketController(Controller):
    path = "/v1/tickets"
    tags = ["tickets"]  # noqa: RUF012
    guards = _WRITERS
    dependencies = _TICKET_SERVICES

    @get("/", operation_class=DocumentedOperation, responses=problem_responses(400, *AUTHENTICATED))
    async def list_tickets(
        self,
        ticket_service: TicketServiceDep,
        event_id: FromQuery[uuid.UUID | None] = None,
        status: FromQuery[TicketStatus | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = DEFAULT_LIMIT,
    ) -> TicketPage:
        return await ticket_service.page(
            event_id=event_id, status=status, cursor=cursor, limit=limit
        )

    @get(
        "/{ticket_id:uuid}",
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, *AUTHENTICATED),
    )
    async def read(
        self,
        ticket_id: FromPath[uuid.UUID],
        ticket_cache: TicketCacheDep,
        open_session: OpenSessionDep,
        ticket_service_for: TicketServiceForDep,
        principal: PrincipalDep,
        # A revoked token stops working everywhere, a cache hit included (401).
        active_device: ActiveDeviceDep,
    ) -> TicketOut:
        """The ticket; served from the Redis cache when it is there (a hit reads no ticket
        from the database: only the token's revocation is checked there)."""

        async def load() -> TicketOut:
            async with open_session() as session:
                return ticket_out(await ticket_service_for(session).get(ticket_id))

        return await ticket_cache.read(principal.tenant_id, ticket_id, load)

    @get(
        "/{ticket_id:uuid}/history",
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, *AUTHENTICATED),
    )
    async def history(
        self,
        ticket_id: FromPath[uuid.UUID],
        ticket_service: TicketServiceDep,
    ) -> list[TransitionOut]:
        """Every lifecycle step of the ticket, oldest first."""
        return await ticket_service.history(ticket_id)

    @get(
        "/{ticket_id:uuid}/code",
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, 422, *AUTHENTICATED),
    )
    async def code(
        self,
        ticket_id: FromPath[uuid.UUID],
        ticket_service: TicketServiceDep,
    ) -> TicketWithCode:
        """A fresh code for the ticket's current version (to send the ticket again)."""
        return await ticket_service.current_code(ticket_id)

    @post(
        "/{ticket_id:uuid}/transfer",
        status_code=200,
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, 409, 422, *AUTHENTICATED),
        response_headers=[REPLAYED],
    )
    async def transfer(
        self,
        ticket_id: FromPath[uuid.UUID],
        data: JSONBody[TransferRequest],
        session: SessionDep,
        ticket_service: TicketServiceDep,
        principal: PrincipalDep,
        idempotency_key: IdempotencyHeader = None,
    ) -> Response[TicketWithCode]:
        """Give the ticket to a new holder. Its old code becomes ``superseded``. With the chain
        on, 409 ``held_in_wallet`` when the ticket's NFT is in the holder's own wallet (the
        holder moves it from there; the ticket follows)."""
        request = IdempotentRequest.of(
            principal, f"tickets/{ticket_id}/transfer", idempotency_key, data
        )
        return await run_idempotent(
            session,
            request,
            200,
            TicketWithCode,
            lambda: ticket_service.transfer(ticket_id, data),
            redaction=ticket_service.code_redaction(principal.tenant_id),
        )

    @post(
        "/{ticket_id:uuid}/revoke",
        status_code=200,
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, 409, 422, *AUTHENTICATED),
        response_headers=[REPLAYED],
    )
    async def revoke(
        self,
        ticket_id: FromPath[uuid.UUID],
        data: JSONBody[RevokeRequest],
        session: SessionDep,
        ticket_service: TicketServiceDep,
        principal: PrincipalDep,
        idempotency_key: IdempotencyHeader = None,
    ) -> Response[TicketOut]:
        request = IdempotentRequest.of(
            principal, f"tickets/{ticket_id}/revoke", idempotency_key, data
        )
        return await run_idempotent(
            session, request, 200, TicketOut, lambda: ticket_service.revoke(ticket_id, data)
        )


TICKET_ROUTES: list[ControllerRouterHandler] = [purchase, TicketController]
