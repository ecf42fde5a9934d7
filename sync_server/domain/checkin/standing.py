"""Reading a code for a gate and judging it against the server's records: the steps every
check-in path shares (online, offline uploads, the box office's code checker)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from shared.domain import TicketStatus, VerdictReason
from shared.rules import EventWindow, TicketFacts, code_standing
from shared.ticket_code import CodeRejection, TicketCode
from sync_server.domain.checkin.queries import LockedTicket
from sync_server.domain.keys.services import KeyReloads, KeyStore


def standing(
    code: TicketCode, *, gate_event_id: uuid.UUID, ticket: LockedTicket | None, now: datetime
) -> VerdictReason | None:
    """Why ``code`` must be refused at a gate of ``gate_event_id``, or None. ``ticket``: the
    ticket's facts (``queries``); None when the ticket is unknown."""
    if ticket is None:
        return code_standing(code, gate_event_id=gate_event_id, ticket=None, window=None, now=now)
    return code_standing(
        code,
        gate_event_id=gate_event_id,
        ticket=TicketFacts(
            ticket_id=ticket.id,
            event_id=ticket.event_id,
            status=TicketStatus(ticket.status),
            secret_version=ticket.secret_version,
        ),
        window=EventWindow(
            event_id=ticket.event_id, opens_at=ticket.admission_opens_at, ends_at=ticket.ends_at
        ),
        now=now,
    )


async def decode_for_gate(
    session: AsyncSession,
    keys: KeyStore,
    text: str,
    *,
    tenant_id: uuid.UUID,
    gate_event_id: uuid.UUID | None,
    reloads: KeyReloads | None = None,
) -> TicketCode | VerdictReason:
    """Read ``text`` for a gate of ``gate_event_id`` with the tenant's keys. A genuine code of
    another event of the tenant is ``wrong_event`` (not ``unknown_key``); without a gate event,
    the code is read with whichever of the tenant's events holds its key. ``reloads`` is the
    calling batch's allowance of key-ring reloads (one per batch)."""
    found = await keys.read(
        session, text, tenant_id=tenant_id, prefer=gate_event_id, reloads=reloads
    )
    if isinstance(found, CodeRejection):
        return found.reason
    event_id, code = found
    if gate_event_id is not None and event_id != gate_event_id:
        return VerdictReason.WRONG_EVENT
    return code
