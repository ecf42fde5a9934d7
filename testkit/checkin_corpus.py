"""The check-in rules corpus (tests/data/checkin_rules_corpus.json, described in
checkin_rules_corpus.md beside it) as the shared core's types, and its cases decided by
``shared.checkin_lists.decide``. The server's and the scanner's runs read the same file; this
is the reading all of them share."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from shared.checkin_lists import (
    CheckinList,
    EventDay,
    EventPlan,
    TicketKind,
    TimeWindow,
    decide,
)
from shared.domain import Direction
from shared.timeline import AdmittedScan

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "checkin_rules_corpus.json"


def load_cases(path: Path = CORPUS) -> list[dict[str, Any]]:
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["format"] == "gatehouse-checkin-corpus/1"
    cases: list[dict[str, Any]] = document["cases"]
    return cases


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _list(raw: dict[str, Any]) -> CheckinList:
    return CheckinList(
        id=raw["id"],
        name=raw["name"],
        ticket_type_ids=frozenset(raw["ticket_type_ids"]),
        gates=frozenset(raw["gates"]),
        zone=raw["zone"],
        allow_reentry=raw["allow_reentry"],
        allow_multiple_entries=raw.get("allow_multiple_entries", False),
        windows=tuple(
            TimeWindow(_time(w.get("opens_at")), _time(w.get("closes_at"))) for w in raw["windows"]
        ),
        rules=raw["rules"],
        explanation=raw.get("explanation"),
        archived=raw.get("archived", False),
    )


@dataclass(frozen=True, slots=True)
class Case:
    """One corpus case as the shared core's types."""

    id: str
    plan: EventPlan
    ticket: TicketKind
    history: tuple[AdmittedScan, ...]
    now: datetime
    gate: str
    direction: Direction
    expect: dict[str, Any]


def read_case(raw: dict[str, Any]) -> Case:
    event = raw["event"]
    tz = ZoneInfo(event["tz"])
    lists = tuple(_list(item) for item in raw["lists"])
    zones = {item.id: item.zone for item in lists}
    days = tuple(
        EventDay(
            date=date.fromisoformat(d["date"]),
            name=d.get("name", ""),
            starts_at=_time(d.get("starts_at")),
            ends_at=_time(d.get("ends_at")),
            admission_at=_time(d.get("admission_at")),
        )
        for d in event["days"]
    )
    plan = EventPlan(
        tz=tz,
        lists=lists,
        days=days,
        starts_at=_time(event["starts_at"]),
        ends_at=_time(event["ends_at"]),
        admission_at=_time(event["admission_at"]),
        allow_reentry=event["allow_reentry"],
    )
    types = {t["id"]: t for t in raw["ticket_types"]}
    kind = types[raw["ticket_type_id"]]
    ticket = TicketKind(
        id=kind["id"],
        name=kind["name"],
        days=frozenset(date.fromisoformat(d) for d in kind["days"]),
    )
    history = tuple(
        AdmittedScan(
            scan_id=uuid.UUID(int=index + 1),
            at=datetime.fromisoformat(scan["at"]),
            direction=Direction(scan["direction"]),
            gate=scan["gate"],
            list_id=scan["list_id"],
            zone=zones.get(scan["list_id"]) if scan["list_id"] is not None else None,
        )
        for index, scan in enumerate(raw["history"])
    )
    return Case(
        id=raw["id"],
        plan=plan,
        ticket=ticket,
        history=history,
        now=datetime.fromisoformat(raw["now"]),
        gate=raw["gate"],
        direction=Direction(raw["direction"]),
        expect=raw.get("expect", {}),
    )


def decide_case(case: Case) -> dict[str, Any]:
    """What ``decide`` says, in the shape of the case's ``expect`` (keys it does not set are
    left out, so compare only the keys the case names)."""
    decision = decide(
        case.plan,
        gate=case.gate,
        direction=case.direction,
        ticket=case.ticket,
        history=case.history,
        now=case.now,
    )
    if decision is None:
        # Lists do not apply: the corpus's such cases have no earlier entry, so today's rules
        # admit (tests of today's rules live elsewhere).
        return {"lists_apply": False, "result": "admitted", "reason": None}
    got: dict[str, Any] = {
        "lists_apply": True,
        "result": "admitted" if decision.admitted else "rejected",
        "reason": decision.refusal.reason.value if decision.refusal else None,
        "list_id": (
            decision.refusal.list_id
            if decision.refusal is not None
            else (decision.list.id if decision.list is not None else None)
        ),
        "leaves_zone": decision.leaves_zone,
        "enters_zone": decision.enters_zone,
    }
    if decision.refusal is not None:
        got["sentence"] = decision.refusal.sentence
    return got
