"""The check-in rule evaluator: time zones and DST, hostile rules, and totality (any JSON as a
rule gives an outcome, never an exception). The corpus (test_checkin_corpus.py) covers each
variable and operator case by case."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.checkin_lists import CheckinList, EventPlan, TicketKind, decide
from shared.checkin_rules import (
    MAX_RULE_DEPTH,
    MAX_RULE_NODES,
    OPERATORS,
    VARIABLES,
    EntryRecord,
    RuleError,
    RuleFacts,
    check_rule,
    evaluate_rule,
    truthy,
)
from shared.domain import Direction, VerdictReason
from shared.timeline import AdmittedScan

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def facts(now: datetime, *entries: datetime, tz: ZoneInfo = BERLIN, **more: Any) -> RuleFacts:
    history = tuple(EntryRecord(at=at, entry=True) for at in sorted(entries))
    return RuleFacts(now=now, tz=tz, ticket_type="tt-ga", gate="Main", history=history, **more)


def allowed(rule: object, f: RuleFacts) -> bool:
    outcome = evaluate_rule(rule, f)
    assert outcome.error is None, outcome.error
    return outcome.allowed


def value_is(variable: str, expected: object, f: RuleFacts) -> bool:
    return allowed({"==": [{"var": variable}, expected]}, f)


# --- time zones and DST --------------------------------------------------------------------------


def test_minutes_since_last_entry_counts_real_minutes_across_the_spring_change() -> None:
    # Berlin, 29 March 2026: 02:00 becomes 03:00. 01:30 to 03:30 on the wall is one real hour.
    entry = datetime(2026, 3, 29, 1, 30, tzinfo=BERLIN)
    now = datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN)
    assert value_is("minutes_since_last_entry", 60, facts(now, entry))


def test_minutes_since_first_entry_counts_real_minutes_across_the_autumn_change() -> None:
    # Berlin, 25 October 2026: 03:00 becomes 02:00. 01:30 to 03:30 on the wall is three hours.
    entry = datetime(2026, 10, 25, 1, 30, tzinfo=BERLIN)
    now = datetime(2026, 10, 25, 3, 30, tzinfo=BERLIN)
    assert value_is("minutes_since_first_entry", 180, facts(now, entry))


def test_customtime_on_a_time_the_clocks_skip_reads_with_the_offset_before_the_change() -> None:
    # 02:30 does not exist on 29 March in Berlin; read as 02:30+01:00 = 01:30 UTC.
    rule = {"isAfter": [{"var": "now"}, {"buildTime": ["customtime", "02:30"]}]}
    assert allowed(rule, facts(datetime(2026, 3, 29, 1, 31, tzinfo=UTC)))
    assert not allowed(rule, facts(datetime(2026, 3, 29, 1, 30, tzinfo=UTC)))


def test_customtime_on_a_time_the_clocks_pass_twice_is_the_first_of_the_two() -> None:
    # 02:30 happens twice on 25 October in Berlin: first at 00:30 UTC (+02:00).
    rule = {"isAfter": [{"var": "now"}, {"buildTime": ["customtime", "02:30"]}]}
    assert allowed(rule, facts(datetime(2026, 10, 25, 0, 31, tzinfo=UTC)))
    assert not allowed(rule, facts(datetime(2026, 10, 25, 0, 30, tzinfo=UTC)))


def test_customtime_is_in_the_events_zone_on_the_day_of_now() -> None:
    # 21:00 in New York (EDT, -04:00) on 6 June is 01:00 UTC on 7 June.
    rule = {"isBefore": [{"var": "now"}, {"buildTime": ["customtime", "21:00"]}]}
    assert allowed(rule, facts(datetime(2026, 6, 7, 0, 59, tzinfo=UTC), tz=NEW_YORK))
    assert not allowed(rule, facts(datetime(2026, 6, 7, 1, 0, tzinfo=UTC), tz=NEW_YORK))


def test_entries_today_counts_the_events_day_not_the_utc_day() -> None:
    now = datetime(2026, 6, 7, 1, 0, tzinfo=UTC)  # 21:00 on 6 June in New York
    earlier = datetime(2026, 6, 6, 23, 0, tzinfo=UTC)  # 19:00 on 6 June in New York
    assert value_is("entries_today", 1, facts(now, earlier, tz=NEW_YORK))
    assert value_is("entries_today", 0, facts(now, earlier, tz=ZoneInfo("UTC")))


def test_entries_days_on_a_23_hour_day() -> None:
    day = [
        datetime(2026, 3, 29, 0, 30, tzinfo=BERLIN),
        datetime(2026, 3, 29, 23, 30, tzinfo=BERLIN),
    ]
    now = datetime(2026, 3, 30, 0, 30, tzinfo=BERLIN)
    assert value_is("entries_days", 1, facts(now, *day))
    assert value_is("entries_today", 0, facts(now, *day))


def test_now_isoweekday_in_the_events_zone() -> None:
    sunday_in_auckland = datetime(2026, 6, 6, 13, 0, tzinfo=UTC)  # Sunday 01:00 NZST
    assert value_is("now_isoweekday", 7, facts(sunday_in_auckland, tz=ZoneInfo("Pacific/Auckland")))
    assert value_is("now_isoweekday", 6, facts(sunday_in_auckland, tz=BERLIN))


def test_times_compare_as_instants_whatever_their_offsets() -> None:
    now = datetime(2026, 6, 6, 20, 0, tzinfo=BERLIN)
    rule = {"<": [{"buildTime": ["custom", "2026-06-06T17:59:00Z"]}, {"var": "now"}]}
    assert allowed(rule, facts(now))
    rule = {"==": [{"buildTime": ["custom", "2026-06-06T18:00:00Z"]}, {"var": "now"}]}
    assert allowed(rule, facts(now))


# --- hostile and broken rules ------------------------------------------------------------------


def test_a_rule_too_deep_is_refused_with_an_error_not_a_crash() -> None:
    rule: object = True
    for _ in range(MAX_RULE_DEPTH * 20):
        rule = {"!!": [rule]}
    outcome = evaluate_rule(rule, facts(datetime(2026, 6, 6, tzinfo=UTC)))
    assert not outcome.allowed
    assert outcome.error is not None
    assert "deep" in outcome.error


def test_a_rule_too_large_is_refused() -> None:
    rule = {"and": [True] * (MAX_RULE_NODES + 1)}
    with pytest.raises(RuleError, match="too large"):
        check_rule(rule)
    outcome = evaluate_rule(rule, facts(datetime(2026, 6, 6, tzinfo=UTC)))
    assert outcome.error is not None


def test_unknown_variable_fails_closed_and_says_which() -> None:
    outcome = evaluate_rule({"var": "entries_tomorrow"}, facts(datetime(2026, 6, 6, tzinfo=UTC)))
    assert not outcome.allowed
    assert outcome.error is not None
    assert "entries_tomorrow" in outcome.error


def test_a_variable_with_a_default_reads_the_default() -> None:
    f = facts(datetime(2026, 6, 6, tzinfo=UTC))
    assert allowed({"==": [{"var": ["nothing_here", 3]}, 3]}, f)
    assert not allowed({"==": [{"var": ["nothing_here", 3]}, 4]}, f)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        (False, False),
        (0, False),
        (0.0, False),
        ("", False),
        ([], False),
        (True, True),
        (1, True),
        ("0", True),
        ([0], True),
        ({}, True),
    ],
)
def test_truthiness_is_json_logics(value: object, expected: bool) -> None:
    assert truthy(value) is expected


def test_every_documented_variable_reads() -> None:
    f = facts(datetime(2026, 6, 6, 20, tzinfo=BERLIN), datetime(2026, 6, 6, 18, tzinfo=BERLIN))
    for name in VARIABLES:
        outcome = evaluate_rule({"!!": [{"!!": [{"var": name}]}]}, f)
        assert outcome.error is None, name


def test_operators_named_in_the_docs_are_known() -> None:
    assert {
        "inList",
        "objectList",
        "lookup",
        "isBefore",
        "isAfter",
        "buildTime",
        "<",
        "<=",
        ">",
        ">=",
        "==",
        "!=",
        "and",
        "or",
        "!",
        "!!",
        "if",
        "in",
        "entries_since",
        "entries_before",
        "entries_days_since",
        "entries_days_before",
    } <= OPERATORS


# --- totality ----------------------------------------------------------------------------------

_names = st.sampled_from(sorted(OPERATORS | VARIABLES | {"x", "buildTime", "custom"}))
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    _names,
    st.sampled_from(["customtime", "date_from", "18:00", "2026-06-06T18:00:00+02:00", "now"]),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(_names, inner, min_size=1, max_size=2),
        st.builds(lambda k, v: {k: v}, _names, st.lists(inner, max_size=4)),
    ),
    max_leaves=40,
)


@given(
    rule=_json,
    minutes=st.lists(st.integers(min_value=0, max_value=60 * 24 * 5), max_size=5),
)
def test_any_json_as_a_rule_gives_an_outcome(rule: object, minutes: list[int]) -> None:
    now = datetime(2026, 6, 8, 12, tzinfo=UTC)
    entries = [now - timedelta(minutes=m) for m in minutes]
    f = facts(
        now,
        *entries,
        date_from=now - timedelta(days=2),
        date_to=now + timedelta(days=1),
        event_day="2026-06-08",
        event_day_index=2,
    )
    outcome = evaluate_rule(rule, f)
    assert isinstance(outcome.allowed, bool)
    assert outcome.error is None or not outcome.allowed
    # Deterministic: the same facts give the same outcome (what makes online and offline agree).
    assert evaluate_rule(rule, f) == outcome


@given(rule=_json, minutes=st.lists(st.integers(min_value=0, max_value=60 * 24 * 5), max_size=5))
def test_any_json_as_a_lists_rule_gives_a_verdict_through_decide(
    rule: object, minutes: list[int]
) -> None:
    now = datetime(2026, 6, 8, 12, tzinfo=UTC)
    history = [
        AdmittedScan(
            scan_id=uuid.UUID(int=i + 1),
            at=now - timedelta(minutes=m),
            direction=Direction.ENTRY if i % 2 == 0 else Direction.EXIT,
            list_id="l-main",
        )
        for i, m in enumerate(sorted(minutes, reverse=True))
    ]
    plan = EventPlan(
        tz=BERLIN,
        lists=(CheckinList(id="l-main", name="Main", rules=rule, allow_multiple_entries=True),),
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=1),
    )
    for direction in Direction:
        decision = decide(
            plan,
            gate="Main",
            direction=direction,
            ticket=TicketKind(id="tt-ga", name="General admission"),
            history=history,
            now=now,
        )
        assert decision is not None
        if direction is Direction.EXIT or decision.refusal is None:
            assert decision.admitted
        else:
            assert decision.refusal.reason is VerdictReason.RULE_FAILED
            assert decision.refusal.list_id == "l-main"
            assert decision.refusal.sentence
