"""Checking a code against the server's records without recording a scan: genuine? which
ticket? would it pass a gate of this event now (earlier scans aside)?"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from shared import wire
from shared.domain import VerdictReason, VerdictResult
from sync_server.db.raw import driver
from sync_server.domain.checkin.queries import CheckinQueries
from sync_server.domain.checkin.schemas import CodeCheckOut
from sync_server.domain.checkin.standing import decode_for_gate, standing
from sync_server.domain.keys.services import KeyStore


def _rejected(reason: VerdictReason) -> CodeCheckOut:
    return CodeCheckOut(verdict=wire.Verdict(result=VerdictResult.REJECTED, reason=reason))


async def check_code(
    session: AsyncSession,
    keys: KeyStore,
    *,
    tenant_id: uuid.UUID,
    text: str,
    gate_event_id: uuid.UUID | None,
    now: datetime,
) -> CodeCheckOut:
    """The verdict a gate of ``gate_event_id`` (default: the code's own event) would reach
    from the code and the ticket's record. Never raises for a bad code."""
    code = await decode_for_gate(
        session, keys, text, tenant_id=tenant_id, gate_event_id=gate_event_id
    )
    if isinstance(code, VerdictReason):
        return _rejected(code)

    ticket = await CheckinQueries(await driver(session)).ticket_facts(code.ticket_id)
    reason = standing(code, gate_event_id=gate_event_id or code.event_id, ticket=ticket, now=now)
    verdict = wire.Verdict(
        result=VerdictResult.ADMITTED if reason is None else VerdictResult.REJECTED,
        reason=reason,
        ticket_id=code.ticket_id,
        event_id=code.event_id,
        ticket_type=ticket.ticket_type if ticket else None,
        holder_name=ticket.holder_name if ticket else None,
    )
    return CodeCheckOut(
        verdict=verdict, secret_version=code.secret_version, issued_at=code.issued_at
    )
