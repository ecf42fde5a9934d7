"""``shared.rules.code_standing`` for a ticket row as the server reads it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from shared.domain import TicketStatus, VerdictReason
from shared.rules import EventWindow, TicketFacts, code_standing
from shared.ticket_code import TicketCode


def standing(
    code: TicketCode, *, gate_event_id: uuid.UUID, ticket: Any | None, now: datetime
) -> VerdictReason | None:
    """Why ``code`` must be refused at a gate of ``gate_event_id``, or None. ``ticket`` is a row
    with the ticket's ``id``, ``event_id``, ``status``, ``secret_version`` and its event's
    ``admission_opens_at`` and ``ends_at``; None when the ticket is unknown."""
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
