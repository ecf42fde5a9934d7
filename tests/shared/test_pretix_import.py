"""pretix check-in lists imported as they come from pretix's API, then decided: the examples
pretix's check-in guide documents ("Custom check-in rules", Applications) give the verdicts the
guide says they give. Products: 11 Season ticket, 12 Standard ticket, 13 Discount ticket,
14 Fast lane ticket; the mapping makes them our tt-season, tt-standard, tt-discount, tt-fast."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shared.checkin_lists import EventPlan, TicketKind, checkin_list_from_request, decide
from shared.domain import Direction, VerdictReason
from shared.pretix_import import PretixImportError, PretixMapping, import_pretix_list
from shared.timeline import AdmittedScan

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 6, 5, 18, 0, tzinfo=BERLIN)  # a Friday
MAPPING = PretixMapping(
    products={"11": ["tt-season"], "12": ["tt-standard"], "13": ["tt-discount"], "14": ["tt-fast"]},
    variations={"21": ["tt-standard"]},
    gates={"3": "North"},
)
TYPES = {
    "tt-season": "Season ticket",
    "tt-standard": "Standard ticket",
    "tt-discount": "Discount ticket",
    "tt-fast": "Fast lane ticket",
}


def product_in(*ids: int) -> dict[str, Any]:
    return {
        "inList": [
            {"var": "product"},
            {"objectList": [{"lookup": ["product", str(i), f"Product {i}"]} for i in ids]},
        ]
    }


def pretix_list(rules: dict[str, Any], **more: Any) -> dict[str, Any]:
    """A check-in list as pretix's API answers it (doc/api/resources/checkinlists.rst)."""
    return {
        "id": 1,
        "name": "Default",
        "checkin_count": 0,
        "position_count": 0,
        "all_products": True,
        "limit_products": [],
        "subevent": None,
        "include_pending": False,
        "allow_multiple_entries": True,
        "allow_entry_after_exit": True,
        "exit_all_at": None,
        "addon_match": False,
        "gates": [],
        "rules": rules,
        **more,
    }


def entries(*minutes_before_now: float, now: datetime) -> list[AdmittedScan]:
    return [
        AdmittedScan(
            scan_id=uuid.UUID(int=i + 1),
            at=now - timedelta(minutes=m),
            direction=Direction.ENTRY,
            list_id="imported",
        )
        for i, m in enumerate(sorted(minutes_before_now, reverse=True))
    ]


def verdict(data: dict[str, Any], ticket: str, now: datetime, history: list[AdmittedScan]) -> bool:
    request = import_pretix_list(data, MAPPING)
    plan = EventPlan(
        tz=BERLIN,
        lists=(checkin_list_from_request("imported", request),),
        starts_at=START,
        ends_at=START + timedelta(days=3),
    )
    decision = decide(
        plan,
        gate="Main",
        direction=Direction.ENTRY,
        ticket=TicketKind(id=ticket, name=TYPES[ticket]),
        history=history,
        now=now,
    )
    assert decision is not None
    if decision.refusal is not None:
        assert decision.refusal.reason is VerdictReason.RULE_FAILED, decision.refusal
    return decision.admitted


SAT_NOON = datetime(2026, 6, 6, 12, 0, tzinfo=BERLIN)
STD, SEASON = "tt-standard", "tt-season"


def at(minutes_after_start: int) -> datetime:
    return START + timedelta(minutes=minutes_after_start)


MONDAY = datetime(2026, 6, 8, 12, 0, tzinfo=BERLIN)

WEEKDAYS = pretix_list({"<": [{"var": "now_isoweekday"}, 6]}, allow_multiple_entries=False)
SEASON_UNLIMITED = pretix_list(
    {"or": [product_in(11), {"and": [product_in(12, 13), {"==": [{"var": "entries_number"}, 0]}]}]}
)
SEASON_TEN = pretix_list(
    {
        "or": [
            {"and": [product_in(11), {"<": [{"var": "entries_number"}, 10]}]},
            {"and": [product_in(12, 13), {"==": [{"var": "entries_number"}, 0]}]},
        ]
    }
)
ONE_DAY = pretix_list(
    {
        "and": [
            product_in(14),
            {"or": [{"==": [{"var": "entries_number"}, 0]}, {">=": [{"var": "entries_today"}, 1]}]},
        ]
    }
)
TWO_DAYS = pretix_list(
    {
        "and": [
            product_in(12, 13),
            {"or": [{"<": [{"var": "entries_days"}, 2]}, {">=": [{"var": "entries_today"}, 1]}]},
        ]
    }
)
GAP = pretix_list(
    {
        "and": [
            product_in(12, 13),
            {
                "or": [
                    {"==": [{"var": "entries_number"}, 0]},
                    {">": [{"var": "minutes_since_last_entry"}, 120]},
                ]
            },
        ]
    }
)
SPAN = pretix_list(
    {"and": [product_in(12, 13), {"<=": [{"var": "minutes_since_first_entry"}, 120]}]}
)
EARLY = pretix_list({"isAfter": [{"var": "now"}, {"buildTime": ["date_from"]}, 10]})
LATE = pretix_list({"isBefore": [{"var": "now"}, {"buildTime": ["date_from"]}, 10]})
BEFORE_EVENT = pretix_list(
    {
        "or": [
            {"isBefore": [{"var": "now"}, {"buildTime": ["date_from"]}, 0]},
            {
                "and": [
                    {"isAfter": [{"var": "now"}, {"buildTime": ["date_from"]}, 0]},
                    {"==": [{"entries_since": [{"buildTime": ["date_from"]}]}, 0]},
                ]
            },
        ]
    }
)
FAST_OPENING = pretix_list(
    {"isAfter": [{"var": "now"}, {"buildTime": ["customtime", "18:00"]}, 10]}
)


@pytest.mark.parametrize(
    ("example", "data", "ticket", "now", "minutes_before", "admitted"),
    [
        # "Current day of the week < 6": Monday through Friday only.
        ("weekdays: Friday", WEEKDAYS, STD, START, [], True),
        ("weekdays: Saturday", WEEKDAYS, STD, SAT_NOON, [], False),
        # Season pass unlimited, every other ticket once.
        ("season unlimited: 5th entry", SEASON_UNLIMITED, SEASON, SAT_NOON, [1, 2, 3, 4], True),
        ("others once: first", SEASON_UNLIMITED, STD, SAT_NOON, [], True),
        ("others once: second", SEASON_UNLIMITED, "tt-discount", SAT_NOON, [60], False),
        # Season ticket fewer than ten previous entries, standard and discount once.
        ("season <10: 10th entry", SEASON_TEN, SEASON, SAT_NOON, list(range(1, 10)), True),
        ("season <10: 11th entry", SEASON_TEN, SEASON, SAT_NOON, list(range(1, 11)), False),
        ("standard once: second", SEASON_TEN, STD, SAT_NOON, [30], False),
        # Unlimited entries on one day of the holder's choosing.
        ("one day: first ever", ONE_DAY, "tt-fast", SAT_NOON, [], True),
        ("one day: again the same day", ONE_DAY, "tt-fast", SAT_NOON, [60, 120], True),
        ("one day: another day", ONE_DAY, "tt-fast", SAT_NOON, [20 * 60], False),
        ("one day: not a fast lane ticket", ONE_DAY, STD, SAT_NOON, [], False),
        # Entries on any two days.
        ("two days: second day", TWO_DAYS, STD, SAT_NOON, [20 * 60], True),
        ("two days: third day", TWO_DAYS, STD, MONDAY, [48 * 60, 24 * 60], False),
        ("two days: again on the second", TWO_DAYS, STD, MONDAY, [72 * 60, 60], True),
        # At least 120 minutes between entries.
        ("gap: 121 minutes", GAP, STD, SAT_NOON, [121], True),
        ("gap: 120 minutes", GAP, STD, SAT_NOON, [120], False),
        # Entries for 120 minutes after the first.
        ("span: first entry (-1)", SPAN, STD, SAT_NOON, [], True),
        ("span: 120 minutes after", SPAN, STD, SAT_NOON, [120, 30], True),
        ("span: 121 minutes after", SPAN, STD, SAT_NOON, [121], False),
        # "is after Event start, tolerance 10": up to ten minutes before the start.
        ("after start -10: 9 minutes early", EARLY, STD, at(-9), [], True),
        ("after start -10: 10 minutes early", EARLY, STD, at(-10), [], False),
        # "is before Event start, tolerance 10": up to ten minutes after the start.
        ("before start +10: 9 minutes late", LATE, STD, at(9), [], True),
        ("before start +10: 10 minutes late", LATE, STD, at(10), [], False),
        # Unlimited before the event, one more entry once it started.
        ("before the event: often", BEFORE_EVENT, STD, at(-60), [30, 50], True),
        ("started: one more", BEFORE_EVENT, STD, at(60), [90, 100], True),
        ("started: no second", BEFORE_EVENT, STD, at(60), [30, 100], False),
        # "not before 18:00 with 10 minutes tolerance" (docs/checkin-lists.md, Examples).
        ("18:00 -10: 17:51", FAST_OPENING, STD, at(-9), [], True),
        ("18:00 -10: 17:50", FAST_OPENING, STD, at(-10), [], False),
    ],
)  # fmt: skip
def test_documented_example(
    example: str,
    data: dict[str, Any],
    ticket: str,
    now: datetime,
    minutes_before: list[float],
    admitted: bool,
) -> None:
    assert verdict(data, ticket, now, entries(*minutes_before, now=now)) is admitted, example


def test_import_carries_products_gates_and_entry_settings_over() -> None:
    data = pretix_list(
        {"inList": [{"var": "gate"}, {"objectList": [{"lookup": ["gate", "3", "North"]}]}]},
        all_products=False,
        limit_products=[12, 13],
        gates=[3],
        allow_multiple_entries=False,
        allow_entry_after_exit=False,
    )
    request = import_pretix_list(data, MAPPING)
    assert request.ticket_type_ids == ["tt-discount", "tt-standard"]
    assert request.gates == ["North"]
    assert request.allow_reentry is False
    assert request.allow_multiple_entries is False
    assert request.rules == {
        "inList": [{"var": "gate"}, {"objectList": [{"lookup": ["gate", "North", "North"]}]}]
    }


def test_a_product_that_stands_for_several_ticket_types_expands_in_the_list() -> None:
    mapping = PretixMapping(products={"11": ["tt-a", "tt-b"]})
    request = import_pretix_list(pretix_list(product_in(11)), mapping)
    assert request.rules == {
        "inList": [
            {"var": "product"},
            {"objectList": [
                {"lookup": ["product", "tt-a", "Product 11"]},
                {"lookup": ["product", "tt-b", "Product 11"]},
            ]},
        ]
    }  # fmt: skip


def test_an_empty_pretix_rule_is_no_rule() -> None:
    assert import_pretix_list(pretix_list({}), MAPPING).rules is None


def test_unknown_ids_are_named_all_at_once() -> None:
    data = pretix_list(
        {"and": [product_in(11, 99), {"inList": [{"var": "variation"}, {"objectList": [
            {"lookup": ["variation", "77", "Red"]}]}]}]},
        all_products=False,
        limit_products=[98],
        gates=[5],
    )  # fmt: skip
    with pytest.raises(PretixImportError) as caught:
        import_pretix_list(data, MAPPING)
    message = str(caught.value)
    for named in ("product 98, 99", "variation 77", "gate 5"):
        assert named in message


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([], "JSON object"),
        ({"rules": {}}, "name"),
        (pretix_list({}, all_products="yes"), "all_products"),
        (pretix_list({}, limit_products=5, all_products=False), "limit_products"),
        (pretix_list({}, gates="North"), "gates"),
        (pretix_list({"lookup": "x"}), "rules"),
        (pretix_list({"var": "x" * 500}), "rules"),
        (pretix_list({}, name="x\ny"), "name"),
    ],
)
def test_bad_pretix_lists_are_refused_naming_the_field(data: object, field: str) -> None:
    with pytest.raises(PretixImportError, match=field):
        import_pretix_list(data, MAPPING)
