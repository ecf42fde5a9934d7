"""The admission rules that need no scan history: what a genuine code says against what is
known about its ticket and event, and which of its refusals still let someone leave. The
server's check-in and the scanner's offline validator both decide with these, so a gate online
and a gate offline agree."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from shared.domain import Direction, TicketStatus, VerdictReason
from shared.ticket_code import TicketCode


@dataclass(frozen=True, slots=True)
class TicketFacts:
    ticket_id: uuid.UUID
    event_id: uuid.UUID
    status: TicketStatus
    secret_version: int


@dataclass(frozen=True, slots=True)
class EventWindow:
    """When the event admits: from ``opens_at`` (no lower bound when None) to ``ends_at``."""

    event_id: uuid.UUID
    opens_at: datetime | None
    ends_at: datetime


def code_standing(
    code: TicketCode,
    *,
    gate_event_id: uuid.UUID,
    ticket: TicketFacts | None,
    window: EventWindow | None,
    now: datetime,
) -> VerdictReason | None:
    """Why this genuine code must be refused at a gate of ``gate_event_id``, or None when
    nothing here stands in its way (earlier scans are judged separately).

    ``ticket`` and ``window`` are None when the ticket or its event is not known.
    """
    if code.event_id != gate_event_id:
        return VerdictReason.WRONG_EVENT
    if ticket is None or ticket.event_id != code.event_id:
        return VerdictReason.NOT_FOUND
    if ticket.status is TicketStatus.REVOKED:
        return VerdictReason.REVOKED
    if ticket.status is TicketStatus.EXPIRED:
        return VerdictReason.EXPIRED
    if code.secret_version < ticket.secret_version:
        return VerdictReason.SUPERSEDED
    if code.secret_version > ticket.secret_version:
        # Newer than the issuer's own record: not a code the issuer made.
        return VerdictReason.INVALID_CODE
    if window is not None:
        if window.opens_at is not None and now < window.opens_at:
            return VerdictReason.NOT_YET_VALID
        if now > window.ends_at:
            return VerdictReason.NO_LONGER_VALID
    return None


#: Refusals that speak of a ticket's right to be *inside* — not of which ticket it is: an exit
#: gate lets its holder out, and the leave counts. Check-in lists' refusals (issue 16) are of
#: that kind too: no list, rule or day holds anyone in.
NO_BAR_TO_LEAVING: Final = frozenset(
    {
        VerdictReason.REVOKED,
        VerdictReason.EXPIRED,
        VerdictReason.SUPERSEDED,
        VerdictReason.NOT_YET_VALID,
        VerdictReason.NO_LONGER_VALID,
        VerdictReason.NOT_ON_LIST,
        VerdictReason.RULE_FAILED,
    }
)


def refusal(reason: VerdictReason | None, direction: Direction) -> VerdictReason | None:
    """Why a scan going ``direction`` is refused, given why its code is: ``reason`` as reading
    the code or ``code_standing`` found it (None when nothing stands in its way).

    An entry is refused for any reason. An exit is refused only when the code does not name a
    known ticket of this event — it does not read (``invalid_code``, ``unknown_key``, a secret
    version newer than the issuer's record), is for another event (``wrong_event``), or its
    ticket is not on the list (``not_found``) — or the scanner is switched off: nobody is known
    to have left, so the exit does not count. No gate holds anyone in; a refused exit only
    tells staff that this leave is not recorded. A ticket revoked, expired, superseded or
    outside its hours still leaves, and its leave counts.
    """
    if direction is Direction.EXIT and reason in NO_BAR_TO_LEAVING:
        return None
    return reason
