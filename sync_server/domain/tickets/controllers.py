from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from shared.domain import TicketStatus
from sync_server.domain.checkin.code_check import check_code
from sync_server.domain.tickets.schemas import (
    CodeCheckOut,
    CodeCheckRequest,
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
from sync_server.http.auth import Principal, Role, allow
from sync_server.http.idempotency import IdempotencyHeader, IdempotentRequest, run_idempotent
from sync_server.http.pagination import DEFAULT_LIMIT
from sync_server.runtime import PrincipalDep, Runtime, RuntimeDep, SessionDep, caller_session

_WRITERS = [allow(Role.SERVICE, Role.MANAGER)]


def _service(session: AsyncSession, rt: Runtime, principal: Principal) -> TicketService:
    # The custodial wallet's address with the chain on (read once at start-up), None with it off.
    custody = str(rt.chain_keys.custody.pubkey()) if rt.chain_keys is not None else None
    return TicketService(session, rt.keys, principal, rt.clock.now(), custody=custody)


@post("/v1/purchases", guards=_WRITERS, tags=["tickets"], status_code=201)
async def purchase(
    data: JSONBody[PurchaseRequest],
    session: SessionDep,
    rt: RuntimeDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyHeader = None,
) -> Response[PurchaseOut]:
    """Buy tickets. Needs an ``Idempotency-Key``; answers 409 ``sold_out`` when the type has
    fewer tickets left than asked for. The codes in the answer are the tickets' QR contents."""
    request = IdempotentRequest.of(principal, "purchases", idempotency_key, data)
    service = _service(session, rt, principal)
    return await run_idempotent(
        session, request, 201, PurchaseOut, lambda: service.purchase(data, principal.tenant_id)
    )


@post("/v1/codes/check", guards=_WRITERS, tags=["tickets"], status_code=200)
async def check(
    data: JSONBody[CodeCheckRequest], session: SessionDep, rt: RuntimeDep, principal: PrincipalDep
) -> CodeCheckOut:
    """What a code says and whether a gate would accept it now (earlier scans aside). Records
    nothing: for box offices and support, not for gates."""
    return await check_code(
        session,
        rt.keys,
        tenant_id=principal.tenant_id,
        text=data.code,
        gate_event_id=data.event_id,
        now=rt.clock.now(),
    )


class TicketController(Controller):
    path = "/v1/tickets"
    tags = ["tickets"]  # noqa: RUF012
    guards = _WRITERS

    @get("/")
    async def list_tickets(
        self,
        session: SessionDep,
        rt: RuntimeDep,
        principal: PrincipalDep,
        event_id: FromQuery[uuid.UUID | None] = None,
        status: FromQuery[TicketStatus | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = DEFAULT_LIMIT,
    ) -> TicketPage:
        return await _service(session, rt, principal).page(
            event_id=event_id, status=status, cursor=cursor, limit=limit
        )

    @get("/{ticket_id:uuid}")
    async def read(
        self, ticket_id: FromPath[uuid.UUID], rt: RuntimeDep, principal: PrincipalDep
    ) -> TicketOut:
        """The ticket; served from the Redis cache when it is there (a hit needs no database
        transaction, so this handler opens one only on a miss)."""

        async def load() -> TicketOut:
            async with caller_session(rt.database, principal) as session:
                return ticket_out(await _service(session, rt, principal).get(ticket_id))

        return await rt.ticket_cache.read(principal.tenant_id, ticket_id, load)

    @get("/{ticket_id:uuid}/history")
    async def history(
        self,
        ticket_id: FromPath[uuid.UUID],
        session: SessionDep,
        rt: RuntimeDep,
        principal: PrincipalDep,
    ) -> list[TransitionOut]:
        """Every lifecycle step of the ticket, oldest first."""
        return await _service(session, rt, principal).history(ticket_id)

    @get("/{ticket_id:uuid}/code")
    async def code(
        self,
        ticket_id: FromPath[uuid.UUID],
        session: SessionDep,
        rt: RuntimeDep,
        principal: PrincipalDep,
    ) -> TicketWithCode:
        """A fresh code for the ticket's current version (to send the ticket again)."""
        return await _service(session, rt, principal).current_code(ticket_id)

    @post("/{ticket_id:uuid}/transfer", status_code=200)
    async def transfer(
        self,
        ticket_id: FromPath[uuid.UUID],
        data: JSONBody[TransferRequest],
        session: SessionDep,
        rt: RuntimeDep,
        principal: PrincipalDep,
        idempotency_key: IdempotencyHeader = None,
    ) -> Response[TicketWithCode]:
        """Give the ticket to a new holder. Its old code becomes ``superseded``. With the chain
        on, 409 ``held_in_wallet`` when the ticket's NFT is in the holder's own wallet (the
        holder moves it from there; the ticket follows)."""
        request = IdempotentRequest.of(
            principal, f"tickets/{ticket_id}/transfer", idempotency_key, data
        )
        service = _service(session, rt, principal)
        return await run_idempotent(
            session, request, 200, TicketWithCode, lambda: service.transfer(ticket_id, data)
        )

    @post("/{ticket_id:uuid}/revoke", status_code=200)
    async def revoke(
        self,
        ticket_id: FromPath[uuid.UUID],
        data: JSONBody[RevokeRequest],
        session: SessionDep,
        rt: RuntimeDep,
        principal: PrincipalDep,
        idempotency_key: IdempotencyHeader = None,
    ) -> Response[TicketOut]:
        request = IdempotentRequest.of(
            principal, f"tickets/{ticket_id}/revoke", idempotency_key, data
        )
        service = _service(session, rt, principal)
        return await run_idempotent(
            session, request, 200, TicketOut, lambda: service.revoke(ticket_id, data)
        )


TICKET_ROUTES: list[ControllerRouterHandler] = [purchase, check, TicketController]
