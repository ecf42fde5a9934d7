"""The console's tickets: find a ticket by its code's text, its id (or the id's first hex
digits) or its holder's name, and one ticket with its history and its scans. Row-level
security keeps each manager to the tenant's own tickets: another tenant's is not found."""

from __future__ import annotations

import uuid
import zoneinfo
from dataclasses import dataclass
from typing import Final

from litestar import get
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from shared.domain import VerdictReason
from sync_server.console.web import (
    AnyRequest,
    ManagerDep,
    not_found,
    now,
    principal,
    render,
    tenant,
)
from sync_server.domain.checkin.standing import decode_for_gate
from sync_server.domain.events.services import EventService
from sync_server.domain.keys.services import KeyStore
from sync_server.domain.scans.schemas import ScanFilter
from sync_server.domain.scans.services import ScanLog
from sync_server.domain.tickets.services import TicketService, ticket_id_range
from sync_server.http.dependencies import app_services
from sync_server.http.problems import Problem

#: The longest search text read (a ticket code is well under it).
MAX_QUERY: Final = 2000
#: How many hex digits an id's start needs to be read as one, not as a name ("Abe" and
#: "Dee" are hex too); a whole id is 32.
MIN_ID_DIGITS: Final = 8
#: The scans a ticket's page lists (its newest); the scan log has the rest.
TICKET_SCANS_SHOWN: Final = 50


@dataclass(frozen=True)
class TicketQuery:
    """What a manager's search text means: tickets with an id in ``ids`` (one id, or the
    range of ids starting with some hex digits), or whose holder's name starts with
    ``holder``. ``how`` says which, for the page."""

    ids: tuple[uuid.UUID, uuid.UUID] | None = None
    holder: str | None = None
    how: str = ""

    @property
    def id_prefix(self) -> str | None:
        """The hex digits every id searched for starts with (the scan log's filter)."""
        if self.ids is None:
            return None
        low, high = self.ids
        return low.hex if low == high else _common_prefix(low.hex, high.hex)


def _common_prefix(low: str, high: str) -> str:
    size = 0
    while size < len(low) and low[size] == high[size]:
        size += 1
    return low[:size]


def _hex_digits(text: str) -> str | None:
    digits = text.replace("-", "").lower()
    if digits and all(c in "0123456789abcdef" for c in digits):
        return digits
    return None


async def read_query(
    session: AsyncSession, keys: KeyStore, tenant_id: uuid.UUID, text: str
) -> TicketQuery | str:
    """Read a manager's search text (never raises): a ticket id or its first
    ``MIN_ID_DIGITS``+ hex digits; else a ticket code's text, read with the tenant's keys as
    the gates read it (the ticket it names); else the start of a holder's name. A sentence
    when the text cannot be searched for."""
    text = text.strip()
    if len(text) > MAX_QUERY:
        return f"Search with at most {MAX_QUERY} characters."
    digits = _hex_digits(text)
    if digits is not None and MIN_ID_DIGITS <= len(digits) <= 32:
        return TicketQuery(ids=ticket_id_range(digits), how="ticket id")
    if len(text) > 32:
        code = await decode_for_gate(session, keys, text, tenant_id=tenant_id, gate_event_id=None)
        if not isinstance(code, VerdictReason):
            return TicketQuery(ids=(code.ticket_id, code.ticket_id), how="ticket code")
    if "\n" in text or "\r" in text:
        return "Search with one line of text."
    return TicketQuery(holder=text, how="holder name")


def keys_of(state: State) -> KeyStore:
    found: KeyStore = app_services(state).keys
    return found


def ticket_service(state: State, session: AsyncSession, manager: ManagerDep) -> TicketService:
    return TicketService(session, keys_of(state), principal(manager), now(state))


@get("/tickets")
async def tickets_page(request: AnyRequest, state: State, manager: ManagerDep) -> Template:
    text = request.query_params.get("q", "")
    errors: dict[str, str] = {}
    found: list[dict[str, object]] = []
    how = ""
    if text.strip():
        async with tenant(state, manager) as session:
            query = await read_query(session, keys_of(state), manager.tenant_id, text)
            if isinstance(query, str):
                errors["q"] = query
            else:
                how = query.how
                tickets = await ticket_service(state, session, manager).search(
                    ids=query.ids, holder_prefix=query.holder
                )
                events = EventService(session, keys_of(state), principal(manager))
                names: dict[uuid.UUID, str] = {}
                types: dict[uuid.UUID, str] = {}
                for ticket in tickets:
                    if ticket.event_id not in names:
                        names[ticket.event_id] = (await events.get(ticket.event_id)).name
                        for kind in await events.ticket_types(ticket.event_id):
                            types[kind.id] = kind.name
                found = [
                    {
                        "ticket": ticket,
                        "event": names[ticket.event_id],
                        "type": types.get(ticket.ticket_type_id, ""),
                    }
                    for ticket in tickets
                ]
    return render(
        request,
        "tickets.html",
        manager=manager,
        status=400 if errors else 200,
        current="tickets",
        errors=errors,
        values={"q": text},
        searched=bool(text.strip()) and not errors,
        found=found,
        how=how,
    )


@get("/tickets/{ticket_id:uuid}")
async def ticket_page(
    request: AnyRequest, state: State, manager: ManagerDep, ticket_id: FromPath[uuid.UUID]
) -> Template:
    async with tenant(state, manager) as session:
        service = ticket_service(state, session, manager)
        try:
            ticket = await service.get(ticket_id)
            history = await service.history(ticket_id)
        except Problem:
            return not_found(request, manager, "tickets")
        events = EventService(session, keys_of(state), principal(manager))
        event = await events.get(ticket.event_id)
        kinds = {kind.id: kind.name for kind in await events.ticket_types(ticket.event_id)}
        scans = await ScanLog(session).page(
            ScanFilter(ticket_id=ticket_id), None, TICKET_SCANS_SHOWN, newest_first=True
        )
    return render(
        request,
        "ticket.html",
        manager=manager,
        current="tickets",
        ticket=ticket,
        event=event,
        ticket_type=kinds.get(ticket.ticket_type_id, ""),
        zone=zoneinfo.ZoneInfo(event.time_zone),
        history=history,
        scans=scans.items,
        more_scans=scans.next_cursor is not None,
    )


ROUTES: Final = [tickets_page, ticket_page]
