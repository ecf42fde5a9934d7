"""The history-free admission rules, one reason at a time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain import TicketStatus, VerdictReason
from shared.rules import EventWindow, TicketFacts, code_standing
from shared.ticket_code import TicketCode

EVENT = uuid.uuid4()
NOW = datetime(2030, 5, 1, 20, 0, tzinfo=UTC)


def _code(version: int = 1, event: uuid.UUID = EVENT) -> TicketCode:
    return TicketCode(
        ticket_id=uuid.UUID(int=7),
        event_id=event,
        secret_version=version,
        issued_at=NOW - timedelta(days=3),
        signing_key_id=1,
        encryption_key_id=2,
    )


def _ticket(status: TicketStatus = TicketStatus.ACTIVE, version: int = 1) -> TicketFacts:
    return TicketFacts(
        ticket_id=uuid.UUID(int=7), event_id=EVENT, status=status, secret_version=version
    )


WINDOW = EventWindow(
    event_id=EVENT, opens_at=NOW - timedelta(hours=2), ends_at=NOW + timedelta(hours=3)
)


@pytest.mark.parametrize(
    ("code", "ticket", "window", "now", "expected"),
    [
        (_code(), _ticket(), WINDOW, NOW, None),
        (_code(), _ticket(TicketStatus.CHECKED_IN), WINDOW, NOW, None),
        (_code(event=uuid.uuid4()), _ticket(), WINDOW, NOW, VerdictReason.WRONG_EVENT),
        (_code(), None, WINDOW, NOW, VerdictReason.NOT_FOUND),
        (_code(), _ticket(TicketStatus.REVOKED), WINDOW, NOW, VerdictReason.REVOKED),
        (_code(), _ticket(TicketStatus.EXPIRED), WINDOW, NOW, VerdictReason.EXPIRED),
        (_code(version=1), _ticket(version=2), WINDOW, NOW, VerdictReason.SUPERSEDED),
        (_code(version=3), _ticket(version=2), WINDOW, NOW, VerdictReason.INVALID_CODE),
        (_code(), _ticket(), WINDOW, NOW - timedelta(hours=3), VerdictReason.NOT_YET_VALID),
        (_code(), _ticket(), WINDOW, NOW + timedelta(hours=4), VerdictReason.NO_LONGER_VALID),
        (_code(), _ticket(), None, NOW + timedelta(days=400), None),
        (
            _code(),
            _ticket(),
            EventWindow(event_id=EVENT, opens_at=None, ends_at=NOW + timedelta(hours=1)),
            NOW - timedelta(days=30),
            None,
        ),
        # The gravest reason wins: a revoked ticket's old code is "revoked", not "superseded".
        (_code(version=0), _ticket(TicketStatus.REVOKED, 1), WINDOW, NOW, VerdictReason.REVOKED),
    ],
)
def test_code_standing(
    code: TicketCode,
    ticket: TicketFacts | None,
    window: EventWindow | None,
    now: datetime,
    expected: VerdictReason | None,
) -> None:
    assert (
        code_standing(code, gate_event_id=EVENT, ticket=ticket, window=window, now=now) is expected
    )
