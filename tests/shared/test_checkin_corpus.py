"""The check-in rules corpus (tests/data/checkin_rules_corpus.json) decided by the shared core:
every case's verdict, reason, list, zones and (where the case names it) the sentence staff read.
The server's API and the scanner's offline gate run the same file."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from shared import wire
from testkit.checkin_corpus import decide_case, load_cases, read_case

CASES = load_cases()


def test_the_corpus_is_large_enough_and_covers_every_variable_and_operator() -> None:
    assert len(CASES) >= 200
    text = " ".join(str(case["lists"]) for case in CASES)
    for name in (
        "product", "variation", "gate", "now", "now_isoweekday", "entry_status",
        "entries_number", "entries_today", "entries_days", "entries_since", "entries_before",
        "entries_days_since", "entries_days_before", "minutes_since_last_entry",
        "minutes_since_first_entry", "ticket_type", "zone", "event_day", "event_day_index",
        "inside", "inList", "objectList", "lookup", "isBefore", "isAfter", "buildTime",
        "customtime", "custom", "date_from", "date_to", "date_admission",
        "'<'", "'<='", "'>'", "'>='", "'=='", "'!='", "'and'", "'or'", "'!'", "'!!'",
        "'if'", "'in'",
    ):  # fmt: skip
        assert name in text, name
    reasons = {case["expect"]["reason"] for case in CASES}
    assert {"not_on_list", "rule_failed", "already_checked_in", None} <= reasons


@pytest.mark.parametrize("raw", CASES, ids=[case["id"] for case in CASES])
def test_case(raw: dict[str, Any]) -> None:
    case = read_case(raw)
    got = decide_case(case)
    wanted = case.expect
    assert {key: got.get(key) for key in wanted} == wanted, raw["about"]


def test_every_list_in_the_corpus_can_be_made_through_the_api() -> None:
    """The server's run creates each case's lists with POST …/checkin-lists: every one must be a
    valid create request (``id`` and ``archived`` are the server's to give and to set)."""
    fields = set(wire.CheckinListCreate.__struct_fields__)
    for case in CASES:
        for raw in case["lists"]:
            request = {key: value for key, value in raw.items() if key in fields}
            assert set(raw) - fields <= {"id", "archived"}, case["id"]
            msgspec.convert(request, wire.CheckinListCreate, strict=False)
