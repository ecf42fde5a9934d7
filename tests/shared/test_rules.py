"""The history-free admission rules, one reason at a time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain import Direction, TicketStatus, VerdictReason
from shared.rules import EventWindow, TicketFacts, code_standing, refusal
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


#: The refusals that say nothing of which ticket this is, only of its right to be inside.
STILL_LEAVES = [
    VerdictReason.REVOKED,
    VerdictReason.EXPIRED,
    VerdictReason.SUPERSEDED,
    VerdictReason.NOT_YET_VALID,
    VerdictReason.NO_LONGER_VALID,
    # Issue 16: no check-in list, rule or day holds anyone in.
    VerdictReason.NOT_ON_LIST,
    VerdictReason.RULE_FAILED,
]


@pytest.mark.parametrize("reason", [*VerdictReason, None])
def test_an_entry_is_refused_for_every_reason(reason: VerdictReason | None) -> None:
    assert refusal(reason, Direction.ENTRY) is reason


@pytest.mark.parametrize("reason", STILL_LEAVES)
def test_a_ticket_with_no_right_to_be_inside_still_leaves(reason: VerdictReason) -> None:
    assert refusal(reason, Direction.EXIT) is None


@pytest.mark.parametrize(
    "reason",
    [
        # Nobody is known to have left: the code names no known ticket of this event (issue 15:
        # the scanner let these out offline while the server refused them).
        VerdictReason.NOT_FOUND,
        VerdictReason.INVALID_CODE,
        VerdictReason.UNKNOWN_KEY,
        VerdictReason.WRONG_EVENT,
        VerdictReason.DEVICE_REVOKED,
    ],
)
def test_an_exit_of_a_code_that_names_no_known_ticket_is_refused(reason: VerdictReason) -> None:
    assert refusal(reason, Direction.EXIT) is reason


def test_an_exit_of_a_newer_code_than_the_issuers_record_is_refused() -> None:
    """Through ``code_standing``, as both sides call it: the two cases the sides disagreed on."""
    newer = code_standing(
        _code(version=3), gate_event_id=EVENT, ticket=_ticket(version=2), window=WINDOW, now=NOW
    )
    unknown = code_standing(_code(), gate_event_id=EVENT, ticket=None, window=WINDOW, now=NOW)
    assert refusal(newer, Direction.EXIT) is VerdictReason.INVALID_CODE
    assert refusal(unknown, Direction.EXIT) is VerdictReason.NOT_FOUND
    late = code_standing(
        _code(version=1),
        gate_event_id=EVENT,
        ticket=_ticket(TicketStatus.REVOKED, 2),
        window=WINDOW,
        now=NOW + timedelta(hours=4),
    )
    assert refusal(late, Direction.EXIT) is None
