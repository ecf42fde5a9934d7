"""Which event ``/console/dashboard`` shows, and the dashboard's wording of counts: plain
functions, no server."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import UTC, datetime, timedelta

from sync_server.console.dashboard import _chart, _current, gate_order, reason_label
from sync_server.db.models import Event

NOW = datetime(2030, 6, 1, 20, 0, tzinfo=UTC)


def event(name: str, starts: float, ends: float, opens: float | None = None) -> Event:
    """An event starting and ending ``starts``/``ends`` hours from NOW."""
    return Event(
        id=uuid.uuid4(),
        name=name,
        venue="Hall",
        starts_at=NOW + timedelta(hours=starts),
        ends_at=NOW + timedelta(hours=ends),
        admission_opens_at=None if opens is None else NOW + timedelta(hours=opens),
        time_zone="UTC",
    )


def test_the_event_on_now_is_shown() -> None:
    on = event("On", -1, 2)
    chosen, choices = _current([event("Past", -30, -27), on, event("Next", 20, 23)], NOW)
    assert chosen is on
    assert choices == []


def test_doors_open_count_as_on() -> None:
    doors = event("Doors open", 0.5, 3, opens=-0.5)
    assert _current([doors], NOW)[0] is doors


def test_with_none_on_the_next_one_is_shown() -> None:
    soon, later = event("Soon", 2, 4), event("Later", 30, 33)
    assert _current([later, event("Past", -30, -27), soon], NOW)[0] is soon


def test_several_on_at_once_are_listed_to_choose_from_the_running_ones_first() -> None:
    a, b, past = event("A", -1, 2), event("B", -2, 1), event("Past", -30, -27)
    chosen, choices = _current([past, a, b], NOW)
    assert chosen is None
    assert choices == [a, b, past]


def test_only_past_events_are_listed_and_no_events_is_an_empty_list() -> None:
    past = event("Past", -30, -27)
    assert _current([past], NOW) == (None, [past])
    assert _current([], NOW) == (None, [])


def test_gates_in_the_order_people_count_them_and_reasons_in_words() -> None:
    names = ["Gate 10", "VIP 1", "Gate 2", "gate 1", "Stage door"]
    assert sorted(names, key=gate_order) == ["gate 1", "Gate 2", "Gate 10", "Stage door", "VIP 1"]
    assert reason_label("already_checked_in") == "Already checked in"
    assert reason_label("some_new_reason") == "Some new reason"


def test_the_chart_sentence_says_what_the_chart_shows() -> None:
    start = NOW - timedelta(minutes=9)
    minutes = [
        (start + timedelta(minutes=2), "North", 4, 1),
        (start + timedelta(minutes=2), "South", 6, 0),
        (start + timedelta(minutes=9), "North", 3, 0),
    ]
    chart, caption = _chart(minutes, start, NOW, zoneinfo.ZoneInfo("Europe/Berlin"))
    assert chart["gates"] == ["North", "South"]
    assert chart["count"] == 10
    assert chart["series"] == [[0, 0, 4, 0, 0, 0, 0, 0, 0, 3], [0, 0, 6, 0, 0, 0, 0, 0, 0, 0]]
    assert caption == (
        "13 entries from 21:51 to 22:00 at 2 gates; the busiest minute was 21:53 with 10; "
        "the last five minutes averaged 1 a minute; North admitted the most (7)."
    )
    empty, sentence = _chart([], start, NOW, zoneinfo.ZoneInfo("UTC"))
    assert empty["series"] == []
    assert sentence == "No entries from 19:51 to 20:00."
