"""Random check-in cases for the property that the server and the scanner agree (issue 16):
events with check-in lists, zones, days and JSON Logic rules built from pretix's variables and
operators and ours, a ticket, its admitted history, a moment, a gate and a direction — in the
corpus's case format (tests/data/checkin_rules_corpus.md), without ``expect``: the property
compares the two sides with each other (and with ``shared.checkin_lists.decide``), not with a
verdict written down.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

TIME_ZONES = ("Europe/Berlin", "America/New_York", "UTC", "Asia/Kolkata")
GATES = ("Main", "VIP", "Back")
ZONES = (None, "arena", "backstage")
#: (id, name, days as offsets from the event's first day; empty: every day)
TICKET_TYPES = (
    ("tt-ga", "General admission", ()),
    ("tt-vip", "VIP", ()),
    ("tt-day2", "Day pass", (1,)),
    ("tt-days12", "Two-day pass", (0, 1)),
)
NUMBER_VARIABLES = (
    "entries_number",
    "entries_today",
    "entries_days",
    "minutes_since_last_entry",
    "minutes_since_first_entry",
    "now_isoweekday",
    "event_day_index",
)
COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")
FIRST_DAY = datetime(2026, 7, 3)  # a Friday: three days, over no DST change


def _build_time(tz: str) -> st.SearchStrategy[dict[str, Any]]:
    zone = ZoneInfo(tz)
    custom = st.integers(min_value=-12, max_value=72).map(
        lambda hours: {
            "buildTime": [
                "custom",
                (FIRST_DAY.replace(tzinfo=zone) + timedelta(hours=hours)).isoformat(),
            ]
        }
    )
    customtime = st.sampled_from(("00:00", "06:30", "12:00", "18:00", "23:59")).map(
        lambda hhmm: {"buildTime": ["customtime", hhmm]}
    )
    event_times = st.sampled_from(("date_from", "date_to", "date_admission")).map(
        lambda kind: {"buildTime": [kind]}
    )
    return st.one_of(custom, customtime, event_times)


def _leaf(tz: str) -> st.SearchStrategy[Any]:
    """One condition, as pretix's rule editor writes them, and ours."""
    number = st.builds(
        lambda op, var, n: {op: [{"var": var}, n]},
        st.sampled_from(COMPARISONS),
        st.sampled_from(NUMBER_VARIABLES),
        st.integers(min_value=-1, max_value=200),
    )
    counted = st.builds(
        lambda op, counter, when, n: {op: [{counter: [when]}, n]},
        st.sampled_from(COMPARISONS),
        st.sampled_from(
            ("entries_since", "entries_before", "entries_days_since", "entries_days_before")
        ),
        _build_time(tz),
        st.integers(min_value=0, max_value=3),
    )
    timed = st.builds(
        lambda op, when, tolerance: {op: [{"var": "now"}, when, tolerance]},
        st.sampled_from(("isAfter", "isBefore")),
        _build_time(tz),
        st.sampled_from((None, 0, 10, 90)),
    )
    in_list = st.builds(
        lambda var, ids: {
            "inList": [
                {"var": var},
                {"objectList": [{"lookup": ["product", i, i]} for i in ids]},
            ]
        },
        st.sampled_from(("product", "variation", "ticket_type")),
        st.lists(st.sampled_from([t[0] for t in TICKET_TYPES]), min_size=1, max_size=3),
    )
    gate = st.builds(
        lambda op, name: {op: [{"var": "gate"}, name]},
        st.sampled_from(("==", "!=")),
        st.sampled_from(GATES),
    )
    status = st.builds(
        lambda value: {"==": [{"var": "entry_status"}, value]},
        st.sampled_from(("present", "absent")),
    )
    ours = st.sampled_from(
        (
            {"==": [{"var": "inside"}, True]},
            {"==": [{"var": "inside"}, False]},
            {"==": [{"var": "zone"}, "arena"]},
            {"==": [{"var": "event_day"}, "2026-07-04"]},
            {"!=": [{"var": "event_day"}, None]},
            {"var": "no_such_variable"},  # cannot be evaluated: rule_failed
            {"frobnicate": [1]},  # an unknown operator: rule_failed
        )
    )
    return st.one_of(number, counted, timed, in_list, gate, status, ours)


def rules(tz: str) -> st.SearchStrategy[Any]:
    """A rule: a leaf, or and/or/! over rules, a few levels deep."""
    return st.recursive(
        _leaf(tz),
        lambda inner: st.one_of(
            st.builds(lambda parts: {"and": parts}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda parts: {"or": parts}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda part: {"!": [part]}, inner),
        ),
        max_leaves=6,
    )


@st.composite
def _lists(draw: st.DrawFn, tz: str) -> list[dict[str, Any]]:
    zone = ZoneInfo(tz)
    count = draw(st.sampled_from((0, 1, 1, 2, 2, 3)))  # mostly some lists
    made = []
    for index in range(count):
        windows = []
        if draw(st.booleans()) and draw(st.booleans()):
            opens = draw(st.integers(min_value=-6, max_value=60))
            hours = draw(st.integers(min_value=1, max_value=30))
            start = FIRST_DAY.replace(tzinfo=zone) + timedelta(hours=opens)
            windows.append(
                {
                    "opens_at": start.isoformat(),
                    "closes_at": (start + timedelta(hours=hours)).isoformat(),
                }
            )
        made.append(
            {
                "id": f"l-{index}",
                "name": f"List {index}",
                "ticket_type_ids": sorted(
                    set(draw(st.lists(st.sampled_from([t[0] for t in TICKET_TYPES]), max_size=2)))
                ),
                "gates": sorted(set(draw(st.lists(st.sampled_from(GATES), max_size=2)))),
                "zone": draw(st.sampled_from(ZONES)),
                "allow_reentry": draw(st.sampled_from((None, True, False))),
                "allow_multiple_entries": draw(st.booleans()),
                "windows": windows,
                "rules": draw(st.one_of(st.none(), rules(tz))),
                "explanation": None,
            }
        )
    return made


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    """One random case in the corpus's format (no ``expect``)."""
    tz = draw(st.sampled_from(TIME_ZONES))
    zone = ZoneInfo(tz)
    first = FIRST_DAY.replace(tzinfo=zone)
    admission = first + timedelta(hours=16)
    ends = first + timedelta(days=2, hours=26)  # the third day's night, until 02:00
    lists = draw(_lists(tz))
    list_ids = [None, *(item["id"] for item in lists)]
    # The history: admitted scans at increasing minutes after admission opens, then `now`.
    steps = draw(
        st.lists(
            st.tuples(
                st.integers(min_value=1, max_value=900),
                st.sampled_from(("entry", "exit")),
                st.sampled_from(list_ids),
                st.sampled_from(GATES),
            ),
            max_size=5,
        )
    )
    at = admission
    history = []
    for minutes, direction, list_id, gate in steps:
        at += timedelta(minutes=minutes)
        history.append(
            {"at": at.isoformat(), "direction": direction, "list_id": list_id, "gate": gate}
        )
    now = at + timedelta(minutes=draw(st.integers(min_value=1, max_value=1500)))
    if now >= ends:
        now = ends - timedelta(minutes=1)
        history = [scan for scan in history if datetime.fromisoformat(scan["at"]) < now]
    kind = draw(st.sampled_from(TICKET_TYPES))
    return {
        "id": "random",
        "event": {
            "tz": tz,
            "admission_at": admission.isoformat(),
            "starts_at": (first + timedelta(hours=18)).isoformat(),
            "ends_at": ends.isoformat(),
            "allow_reentry": draw(st.booleans()),
            "days": [
                {"date": (FIRST_DAY + timedelta(days=n)).date().isoformat(), "name": f"Day {n}"}
                for n in range(3)
            ],
        },
        "ticket_types": [
            {
                "id": type_id,
                "name": name,
                "days": [(FIRST_DAY + timedelta(days=n)).date().isoformat() for n in days],
            }
            for type_id, name, days in TICKET_TYPES
        ],
        "lists": lists,
        "ticket_type_id": kind[0],
        "history": history,
        "now": now.isoformat(),
        "gate": draw(st.sampled_from(GATES)),
        "direction": draw(st.sampled_from(("entry", "entry", "entry", "exit"))),
    }
