"""Check-in rules: µs per evaluation of pretix's example rules with our evaluator
(``shared.checkin_rules``) and, where it is installed, with datalogic-py (the kept JSON Logic
library we measured against); and ``decide()`` with a rule on, p50 / p99.

    ./dev bench checkin_rules      (or: python -m benchmarks.checkin_rules [--quick])

datalogic-py is not a dependency: ``pip install datalogic-py`` to include it. Its rules get the
variables pre-computed in a dict (it has no lazy variables) and pretix's own operators
(``buildTime``, ``isAfter``, ``inList``, ``objectList``, ``lookup``) as Python callbacks, the only
way it takes custom operators (arguments in as JSON text, the result out as JSON text).
``entries_since(t)`` cannot be bridged at all: a callback does not see the data.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from benchmarks.environment import header
from shared.checkin_lists import CheckinList, EventPlan, TicketKind, decide
from shared.checkin_rules import EntryRecord, RuleFacts, _Run, evaluate_rule
from shared.domain import Direction
from shared.timeline import AdmittedScan

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 6, 6, 18, 5, tzinfo=BERLIN)


def _var(name: str) -> dict[str, str]:
    return {"var": name}


#: pretix's documented example shapes (docs/checkin-lists.md, tests/shared/test_pretix_import).
RULES: dict[str, Any] = {
    "product in list": {
        "inList": [
            _var("product"),
            {
                "objectList": [
                    {"lookup": ["product", "tt-day", "Day pass"]},
                    {"lookup": ["product", "tt-weekend", "Weekend"]},
                ]
            },
        ]
    },
    "once a day": {"<": [_var("entries_today"), 1]},
    "after 18:00 -10 min": {"isAfter": [_var("now"), {"buildTime": ["customtime", "18:00"]}, 10]},
    "re-entry after 2 h": {
        "or": [
            {"==": [_var("entries_number"), 0]},
            {">": [_var("minutes_since_last_entry"), 120]},
        ]
    },
    "weekdays only": {"<=": [_var("now_isoweekday"), 5]},
    "two days": {
        "and": [
            {
                "inList": [
                    _var("product"),
                    {"objectList": [{"lookup": ["product", "tt-day", "Day pass"]}]},
                ]
            },
            {"or": [{"<": [_var("entries_days"), 2]}, {">=": [_var("entries_today"), 1]}]},
        ]
    },
}
HISTORY = tuple(EntryRecord(at=NOW - timedelta(hours=hours), entry=True) for hours in (50, 26, 3))


def _per_call_us(call: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            call()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best * 1e6


def _ours(rule: Any) -> Callable[[], object]:
    facts = RuleFacts(
        now=NOW,
        tz=BERLIN,
        ticket_type="tt-day",
        gate="Main",
        history=HISTORY,
        date_from=NOW - timedelta(days=1),
    )
    return lambda: evaluate_rule(rule, facts)


def _datalogic() -> tuple[Any, dict[str, Any]] | None:
    try:
        import datalogic_py  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
    except ImportError:
        return None

    def build_time(args_json: str) -> str:
        kind, *rest = json.loads(args_json)
        if kind == "customtime":
            clock = datetime.strptime(rest[0], "%H:%M").time()
            local = datetime.combine(NOW.astimezone(BERLIN).date(), clock, tzinfo=BERLIN)
            return json.dumps(local.timestamp())
        return json.dumps(None)

    def is_after(args_json: str) -> str:
        first, second, *tolerance = json.loads(args_json)
        minutes = tolerance[0] if tolerance and tolerance[0] else 0
        return json.dumps(first + minutes * 60 > second)

    def in_list(args_json: str) -> str:
        needle, haystack = json.loads(args_json)
        return json.dumps(needle in haystack)

    engine = datalogic_py.Engine(
        custom_operators={
            "buildTime": build_time,
            "isAfter": is_after,
            "inList": in_list,
            "objectList": lambda args_json: args_json,
            "lookup": lambda args_json: json.dumps(json.loads(args_json)[1]),
        }
    )
    # Everything pre-computed, as a bridge to it would have to.
    data = {
        "product": "tt-day",
        "now": NOW.timestamp(),
        "now_isoweekday": 6,
        "entries_number": 3,
        "entries_today": 1,
        "entries_days": 3,
        "minutes_since_last_entry": 180,
    }
    return engine, data


def _given(compiled: Any, data: dict[str, Any]) -> Callable[[], object]:
    return lambda: compiled.evaluate(data)


def _bridged(compiled: Any) -> Callable[[], object]:
    """datalogic-py as a bridge would use it: every variable computed (there are no lazy ones),
    then the rule evaluated."""
    facts = RuleFacts(now=NOW, tz=BERLIN, ticket_type="tt-day", gate="Main", history=HISTORY)
    names = (
        "product",
        "now_isoweekday",
        "entries_number",
        "entries_today",
        "entries_days",
        "minutes_since_last_entry",
        "minutes_since_first_entry",
        "entry_status",
    )

    def call() -> object:
        run = _Run(facts)
        data: dict[str, Any] = {name: run.variable(name, None, False) for name in names}
        data["now"] = NOW.timestamp()
        return compiled.evaluate(data)

    return call


def _decide_times(count: int) -> list[float]:
    lists = (
        CheckinList(
            id="l-main",
            name="Main",
            rules=RULES["re-entry after 2 h"],
            allow_multiple_entries=True,
        ),
        CheckinList(id="l-vip", name="VIP", gates=frozenset({"VIP"})),
    )
    plan = EventPlan(tz=BERLIN, lists=lists)
    history = [
        AdmittedScan(
            scan_id=uuid.UUID(int=i + 1),
            at=NOW - timedelta(hours=5 - i),
            direction=Direction.ENTRY if i % 2 == 0 else Direction.EXIT,
            list_id="l-main",
        )
        for i in range(4)
    ]
    ticket = TicketKind(id="tt-day", name="Day pass")
    times = []
    for i in range(count):
        now = NOW + timedelta(seconds=i)
        start = time.perf_counter()
        decide(
            plan, gate="Main", direction=Direction.ENTRY, ticket=ticket, history=history, now=now
        )
        times.append((time.perf_counter() - start) * 1e6)
    return times


def run(quick: bool = False) -> str:
    repeat = 2_000 if quick else 20_000
    dl = _datalogic()
    lines = [
        "## Check-in rules (issue 16)",
        "",
        header("./dev bench checkin_rules", "datalogic-py"),
        "",
        "µs per evaluation of pretix's example rule shapes (best of 5 runs of "
        f"{repeat:,}; history of 3 entries):",
        "",
        "| rule | ours (`evaluate_rule`) | datalogic-py, given the variables |"
        " datalogic-py, computing them too |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, rule in RULES.items():
        ours = _per_call_us(_ours(rule), repeat)
        given = computing = "—"
        if dl is not None:
            engine, data = dl
            compiled = engine.compile(rule)
            given = f"{_per_call_us(_given(compiled, data), repeat):.1f}"
            bridged = _bridged(compiled)
            computing = f"{_per_call_us(bridged, repeat):.1f}"
        lines.append(f"| {name} | {ours:.1f} | {given} | {computing} |")
    if dl is None:
        lines.append("")
        lines.append("(datalogic-py not installed: its column is empty.)")
    times = sorted(_decide_times(2_000 if quick else 20_000))
    p50 = statistics.median(times)
    p99 = times[int(len(times) * 0.99)]
    lines += [
        "",
        f"`decide()` with a rule on (2 lists, 4 scans of history): p50 {p50:.1f} µs, "
        f"p99 {p99:.1f} µs over {len(times):,} calls.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv[1:]))
