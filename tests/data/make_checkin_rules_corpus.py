"""Writes checkin_rules_corpus.json: the check-in rules corpus (issue 16), every expected
verdict written down by hand below, case by case, from what the rule says — never from running
the evaluator. Run it after editing: ``python tests/data/make_checkin_rules_corpus.py``.

The case format is described in checkin_rules_corpus.md beside this file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Json = dict[str, Any]

# A festival in Berlin (summer time, +02:00): Friday 5 June 2026 18:00 to Monday 02:00; doors
# at 16:00. Days: Fri 5, Sat 6, Sun 7 June.
FEST: Json = {
    "tz": "Europe/Berlin",
    "admission_at": "2026-06-05T16:00:00+02:00",
    "starts_at": "2026-06-05T18:00:00+02:00",
    "ends_at": "2026-06-08T02:00:00+02:00",
    "allow_reentry": False,
    "days": [
        {"date": "2026-06-05", "name": "Friday"},
        {"date": "2026-06-06", "name": "Saturday"},
        {"date": "2026-06-07", "name": "Sunday"},
    ],
}
TYPES: list[Json] = [
    {"id": "tt-ga", "name": "General admission", "days": []},
    {"id": "tt-vip", "name": "VIP", "days": []},
    {"id": "tt-sat", "name": "Day pass", "days": ["2026-06-06"]},
    {"id": "tt-sun", "name": "Day pass", "days": ["2026-06-07"]},
    {"id": "tt-frisat", "name": "Two-day pass", "days": ["2026-06-05", "2026-06-06"]},
    {"id": "tt-weekend", "name": "Weekend pass", "days": []},
    {"id": "tt-staff", "name": "Staff pass", "days": []},
    {"id": "tt-ws", "name": "Workshop ticket", "days": []},
]
CASES: list[Json] = []


def t(local: str) -> str:
    """'06 20:00' → 2026-06-06T20:00:00+02:00 (the festival's days, Berlin summer time)."""
    day, clock = local.split()
    return f"2026-06-{day}T{clock}:00+02:00"


def lst(list_id: str = "l-main", **fields: Any) -> Json:
    base: Json = {
        "id": list_id,
        "name": fields.pop("name", list_id.removeprefix("l-").title()),
        "ticket_type_ids": [],
        "gates": [],
        "zone": None,
        "allow_reentry": None,
        "allow_multiple_entries": False,
        "windows": [],
        "rules": None,
        "explanation": None,
    }
    base.update(fields)
    return base


def h(
    at: str, list_id: str | None = "l-main", direction: str = "entry", gate: str = "Main"
) -> Json:
    return {"at": at, "direction": direction, "list_id": list_id, "gate": gate}


def case(
    case_id: str,
    about: str,
    *,
    lists: list[Json],
    result: str,
    reason: str | None = None,
    list_id: str | None = None,
    ticket: str = "tt-ga",
    now: str = "2026-06-06T20:00:00+02:00",
    gate: str = "Main",
    direction: str = "entry",
    history: list[Json] | None = None,
    sentence: str | None = None,
    enters_zone: str | None = None,
    leaves_zone: str | None = None,
    lists_apply: bool = True,
    event: Json | None = None,
    covers: list[str] | None = None,
) -> None:
    expect: Json = {"lists_apply": lists_apply, "result": result, "reason": reason}
    if lists_apply:
        expect["list_id"] = list_id
        expect["leaves_zone"] = leaves_zone
        if result == "admitted" and direction == "entry":
            expect["enters_zone"] = enters_zone
    if sentence is not None:
        expect["sentence"] = sentence
    CASES.append(
        {
            "id": case_id,
            "about": about,
            "covers": covers or [],
            "event": event or FEST,
            "ticket_types": TYPES,
            "lists": lists,
            "ticket_type_id": ticket,
            "history": history or [],
            "now": now,
            "gate": gate,
            "direction": direction,
            "expect": expect,
        }
    )


def ruled(
    case_id: str,
    rule: Any,
    admitted: bool,
    about: str,
    covers: list[str],
    **more: Any,
) -> None:
    """A case on one list at every gate with ``rule``, multiple entries allowed (so only the
    rule decides), admitted or refused ``rule_failed``."""
    list_fields = more.pop("list_fields", {})
    case(
        case_id,
        about,
        lists=[lst("l-main", rules=rule, allow_multiple_entries=True, **list_fields)],
        result="admitted" if admitted else "rejected",
        reason=None if admitted else "rule_failed",
        list_id="l-main",
        enters_zone=list_fields.get("zone", None) or "" if admitted else None,
        covers=covers,
        **more,
    )


def var(name: str) -> Json:
    return {"var": name}


def bt(kind: str, value: str | None = None) -> Json:
    return {"buildTime": [kind] if value is None else [kind, value]}


# --- A. which list applies -------------------------------------------------------------------

VIP = lst("l-vip", name="VIP", ticket_type_ids=["tt-vip"], gates=["VIP"])
MAIN = lst(
    "l-main",
    name="Main",
    ticket_type_ids=["tt-ga", "tt-weekend", "tt-sat", "tt-sun"],
    gates=["Main", "North"],
)
case(
    "list-01",
    "A VIP ticket at its own gate enters on the VIP list.",
    lists=[VIP, MAIN],
    ticket="tt-vip",
    gate="VIP",
    result="admitted",
    list_id="l-vip",
    enters_zone="",
    covers=["list", "gate"],
)
case(
    "list-02",
    "A VIP ticket at the main gate: the main list does not name VIP tickets, and the "
    "only list that does is scanned at the VIP gate.",
    lists=[VIP, MAIN],
    ticket="tt-vip",
    gate="Main",
    result="rejected",
    reason="not_on_list",
    sentence="VIP tickets enter at the VIP gate.",
    covers=["list", "not_on_list"],
)
case(
    "list-03",
    "A general ticket at the VIP gate is not on the VIP list; it enters at Main or North.",
    lists=[VIP, MAIN],
    ticket="tt-ga",
    gate="VIP",
    result="rejected",
    reason="not_on_list",
    sentence="General admission tickets enter at the Main or North gate.",
    covers=["not_on_list"],
)
case(
    "list-04",
    "A gate no list scans behaves as before lists: lists do not apply.",
    lists=[VIP, MAIN],
    ticket="tt-ga",
    gate="Side door",
    result="admitted",
    lists_apply=False,
    covers=["no_list_at_gate"],
)
case(
    "list-05",
    "An event without lists behaves as before lists.",
    lists=[],
    ticket="tt-vip",
    gate="Main",
    result="admitted",
    lists_apply=False,
    covers=["no_lists"],
)
case(
    "list-06",
    "Archived lists do not count: with only an archived list the event has no lists.",
    lists=[lst("l-old", archived=True, ticket_type_ids=["tt-vip"])],
    ticket="tt-ga",
    result="admitted",
    lists_apply=False,
    covers=["archived"],
)
case(
    "list-07",
    "A list with no ticket types admits every type.",
    lists=[lst("l-all")],
    ticket="tt-staff",
    result="admitted",
    list_id="l-all",
    enters_zone="",
    covers=["list"],
)
case(
    "list-08",
    "A list with no gates is scanned at every gate.",
    lists=[lst("l-all")],
    gate="Any gate at all",
    result="admitted",
    list_id="l-all",
    enters_zone="",
    covers=["gate"],
)
case(
    "list-09",
    "A staff ticket on no list anywhere: no gate to name.",
    lists=[VIP, MAIN],
    ticket="tt-staff",
    gate="Main",
    result="rejected",
    reason="not_on_list",
    sentence="Staff passes do not enter at this gate.",
    covers=["not_on_list"],
)
case(
    "list-10",
    "Two lists at the gate admit the type: tried by id, the first that admits wins. "
    "l-a refuses by rule, l-b admits.",
    lists=[lst("l-b", name="B"), lst("l-a", name="A", rules=False)],
    result="admitted",
    list_id="l-b",
    enters_zone="",
    covers=["list", "order"],
)
case(
    "list-11",
    "Two lists both refuse: the first by id (l-a) gives the refusal.",
    lists=[lst("l-b", name="B", rules=False), lst("l-a", name="A", rules=False)],
    result="rejected",
    reason="rule_failed",
    list_id="l-a",
    covers=["order"],
)
case(
    "list-12",
    "Two lists both admit: the first by id records the scan.",
    lists=[lst("l-z", name="Z"), lst("l-m", name="M")],
    result="admitted",
    list_id="l-m",
    enters_zone="",
    covers=["order"],
)
case(
    "list-13",
    "The VIP gate scans only the VIP list, even though the main list admits VIP tickets elsewhere.",
    lists=[VIP, lst("l-main", gates=["Main"])],
    ticket="tt-vip",
    gate="VIP",
    result="admitted",
    list_id="l-vip",
    enters_zone="",
    covers=["gate"],
)
case(
    "list-14",
    "Several gates named for the type: all are named.",
    lists=[lst("l-ws", ticket_type_ids=["tt-ws"], gates=["Room 2", "Room 1"]), MAIN],
    ticket="tt-ws",
    gate="Main",
    result="rejected",
    reason="not_on_list",
    sentence="Workshop tickets enter at the Room 1 or Room 2 gate.",
    covers=["not_on_list"],
)
case(
    "list-15",
    "A gate whose name says gate is named as it is.",
    lists=[lst("l-vip", ticket_type_ids=["tt-vip"], gates=["East Gate"]), MAIN],
    ticket="tt-vip",
    gate="Main",
    result="rejected",
    reason="not_on_list",
    sentence="VIP tickets enter at East Gate.",
    covers=["not_on_list"],
)
case(
    "list-16",
    "The gate name must match exactly: 'main' is not 'Main', and no list is scanned "
    "at 'main', so lists do not apply.",
    lists=[MAIN],
    gate="main",
    result="admitted",
    lists_apply=False,
    covers=["gate"],
)
case(
    "list-17",
    "An archived list at the gate is skipped; the live list at the gate refuses the type.",
    lists=[lst("l-a", archived=True), lst("l-b", ticket_type_ids=["tt-vip"])],
    ticket="tt-ga",
    result="rejected",
    reason="not_on_list",
    sentence="General admission tickets do not enter at this gate.",
    covers=["archived"],
)
case(
    "list-18",
    "An archived list's gate does not count as lists at that gate.",
    lists=[lst("l-a", archived=True, gates=["Back"]), MAIN],
    gate="Back",
    result="admitted",
    lists_apply=False,
    covers=["archived", "no_list_at_gate"],
)

# --- B. event days ----------------------------------------------------------------------------

for n, (ticket, now, ok, today) in enumerate(
    [
        ("tt-sat", t("06 20:00"), True, None),
        ("tt-sat", t("07 12:00"), False, "Sunday"),
        ("tt-sat", t("05 19:00"), False, "Friday"),
        ("tt-sun", t("07 12:00"), True, None),
        ("tt-sun", t("06 23:59"), False, "Saturday"),
        ("tt-sun", t("07 00:00"), True, None),
        ("tt-frisat", t("05 19:00"), True, None),
        ("tt-frisat", t("06 19:00"), True, None),
        ("tt-frisat", t("07 19:00"), False, "Sunday"),
        ("tt-weekend", t("07 19:00"), True, None),
    ],
    start=1,
):
    names = {
        "tt-sat": "Day pass for Saturday",
        "tt-sun": "Day pass for Sunday",
        "tt-frisat": "Two-day pass for Friday and Saturday",
    }
    case(
        f"day-{n:02d}",
        f"{ticket} at {now}: {'admitted' if ok else 'not its day'}.",
        lists=[lst("l-main")],
        ticket=ticket,
        now=now,
        result="admitted" if ok else "rejected",
        reason=None if ok else "rule_failed",
        list_id="l-main",
        enters_zone="" if ok else None,
        sentence=None if ok else f"{names[ticket]} — today is {today}.",
        covers=["event_day_check", "tz_day_boundary"],
    )

SESSIONS: Json = dict(
    FEST,
    days=[
        {
            "date": "2026-06-06",
            "name": "Saturday night",
            "starts_at": t("06 20:00"),
            "ends_at": "2026-06-07T04:00:00+02:00",
            "admission_at": t("06 19:00"),
        },
        {
            "date": "2026-06-07",
            "name": "Sunday night",
            "starts_at": t("07 20:00"),
            "ends_at": "2026-06-08T02:00:00+02:00",
        },
    ],
)
case(
    "day-11",
    "A session past midnight: at 01:30 on Sunday it is still Saturday night.",
    event=SESSIONS,
    lists=[lst("l-main")],
    ticket="tt-sat",
    now=t("07 01:30"),
    result="admitted",
    list_id="l-main",
    enters_zone="",
    covers=["session"],
)
case(
    "day-12",
    "Between sessions no day is today: a Saturday ticket at Sunday noon is refused.",
    event=SESSIONS,
    lists=[lst("l-main")],
    ticket="tt-sat",
    now=t("07 12:00"),
    result="rejected",
    reason="rule_failed",
    list_id="l-main",
    sentence="Day pass for Saturday night — today is Sunday.",
    covers=["session"],
)
case(
    "day-13",
    "The session's doors (19:00) open before its start (20:00).",
    event=SESSIONS,
    lists=[lst("l-main")],
    ticket="tt-sat",
    now=t("06 19:00"),
    result="admitted",
    list_id="l-main",
    enters_zone="",
    covers=["session"],
)
case(
    "day-14",
    "Before the session's doors (18:59) Saturday night has not begun.",
    event=SESSIONS,
    lists=[lst("l-main")],
    ticket="tt-sat",
    now=t("06 18:59"),
    result="rejected",
    reason="rule_failed",
    list_id="l-main",
    covers=["session"],
)
case(
    "day-15",
    "The day check applies to every list: the VIP list refuses a Sunday pass on Saturday too.",
    lists=[lst("l-vip", gates=["VIP"])],
    ticket="tt-sun",
    gate="VIP",
    now=t("06 21:00"),
    result="rejected",
    reason="rule_failed",
    list_id="l-vip",
    covers=["event_day_check"],
)
case(
    "day-16",
    "Exits are never refused for the day.",
    lists=[lst("l-main")],
    ticket="tt-sat",
    now=t("07 12:00"),
    direction="exit",
    history=[h(t("06 20:00"))],
    result="admitted",
    list_id="l-main",
    leaves_zone="",
    covers=["exit"],
)

# --- C. time windows -----------------------------------------------------------------------

WINDOWS = [
    {"opens_at": t("05 18:00"), "closes_at": t("06 02:00")},
    {"opens_at": t("06 18:00"), "closes_at": t("07 02:00")},
]
for n, (now, ok, reason, sentence) in enumerate(
    [
        (t("05 18:00"), True, None, None),
        (t("05 17:59"), False, "not_yet_valid", "This entrance opens at 18:00."),
        (t("06 01:59"), True, None, None),
        (t("06 02:00"), False, "not_yet_valid", "This entrance opens at 18:00."),
        (t("06 12:00"), False, "not_yet_valid", "This entrance opens at 18:00."),
        (t("06 18:30"), True, None, None),
        (t("07 02:00"), False, "no_longer_valid", "This entrance closed at 02:00."),
        (t("07 09:00"), False, "no_longer_valid", "This entrance closed at 02:00."),
    ],
    start=1,
):
    case(
        f"window-{n:02d}",
        f"Windows Fri 18–02 and Sat 18–02; now {now}.",
        lists=[lst("l-main", windows=WINDOWS)],
        now=now,
        result="admitted" if ok else "rejected",
        reason=reason,
        list_id="l-main",
        enters_zone="" if ok else None,
        sentence=sentence,
        covers=["window"],
    )
case(
    "window-09",
    "Open-ended window: from Saturday 10:00 on.",
    lists=[lst("l-main", windows=[{"opens_at": t("06 10:00"), "closes_at": None}])],
    now=t("07 23:00"),
    result="admitted",
    list_id="l-main",
    enters_zone="",
    covers=["window"],
)
case(
    "window-10",
    "Exits pass a closed window.",
    lists=[lst("l-main", windows=WINDOWS)],
    now=t("06 12:00"),
    direction="exit",
    history=[h(t("06 01:00"))],
    result="admitted",
    list_id="l-main",
    leaves_zone="",
    covers=["window", "exit"],
)

# --- D. pretix variables ----------------------------------------------------------------------

PRODUCTS = {
    "inList": [
        var("product"),
        {
            "objectList": [
                {"lookup": ["product", "tt-sat", "Day pass"]},
                {"lookup": ["product", "tt-weekend", "Weekend"]},
            ]
        },
    ]
}
ruled(
    "var-product-1",
    PRODUCTS,
    True,
    "product is one of the listed (weekend)",
    ["product", "inList", "objectList", "lookup"],
    ticket="tt-weekend",
)
ruled(
    "var-product-2",
    PRODUCTS,
    False,
    "product not listed (VIP)",
    ["product", "inList"],
    ticket="tt-vip",
)
ruled(
    "var-product-3",
    {"==": [var("product"), "tt-vip"]},
    True,
    "product == our id",
    ["product", "=="],
    ticket="tt-vip",
)
VARIATIONS = {
    "inList": [var("variation"), {"objectList": [{"lookup": ["variation", "tt-vip", "VIP"]}]}]
}
ruled(
    "var-variation-1",
    VARIATIONS,
    True,
    "variation: our ticket types stand in for variations",
    ["variation"],
    ticket="tt-vip",
)
ruled("var-variation-2", VARIATIONS, False, "variation not listed", ["variation"], ticket="tt-ga")
GATES = {"inList": [var("gate"), {"objectList": [{"lookup": ["gate", "North", "North"]}]}]}
ruled("var-gate-1", GATES, True, "gate is North", ["gate", "inList"], gate="North")
ruled("var-gate-2", GATES, False, "gate is Main, not North", ["gate"], gate="Main")
ruled("var-gate-3", {"==": [var("gate"), "Main"]}, True, "gate == Main", ["gate", "=="])

# now with isAfter / isBefore (now is Saturday 20:00 unless said)
for n, (rule, ok, note) in enumerate(
    [
        ({"isAfter": [var("now"), bt("customtime", "18:00"), None]}, True, "after 18:00"),
        (
            {"isAfter": [var("now"), bt("customtime", "20:00"), None]},
            False,
            "at exactly 20:00 is not after 20:00",
        ),
        (
            {"isAfter": [var("now"), bt("customtime", "20:10"), 10]},
            False,
            "20:00 + 10 min is not after 20:10 (strict)",
        ),
        (
            {"isAfter": [var("now"), bt("customtime", "20:09"), 10]},
            True,
            "20:00 + 10 min is after 20:09",
        ),
        ({"isAfter": [var("now"), bt("customtime", "20:05"), 0]}, False, "tolerance 0 is none"),
        (
            {"isAfter": [var("now"), bt("customtime", "21:00")]},
            False,
            "two arguments, no tolerance",
        ),
        ({"isBefore": [var("now"), bt("customtime", "22:00"), None]}, True, "before 22:00"),
        (
            {"isBefore": [var("now"), bt("customtime", "20:00"), None]},
            False,
            "at exactly 20:00 is not before 20:00",
        ),
        (
            {"isBefore": [var("now"), bt("customtime", "19:50"), 15]},
            True,
            "20:00 - 15 min is before 19:50",
        ),
        (
            {"isBefore": [var("now"), bt("customtime", "19:45"), 15]},
            False,
            "20:00 - 15 min = 19:45 is not before 19:45",
        ),
        (
            {"isBefore": [var("now"), bt("custom", "2026-06-06T18:30:00Z")]},
            True,
            "custom with an offset: 20:00+02:00 = 18:00Z, before 18:30Z",
        ),
        (
            {"isAfter": [var("now"), bt("custom", "2026-06-06T18:30:00Z")]},
            False,
            "custom: 18:00Z is not after 18:30Z",
        ),
        (
            {"isAfter": [var("now"), bt("custom", "2026-06-06T19:00:00")]},
            True,
            "custom without an offset reads in the event's zone: after 19:00 Berlin",
        ),
        ({"isAfter": [var("now"), bt("date_from")]}, True, "after the event's start (Fri 18:00)"),
        ({"isBefore": [var("now"), bt("date_from")]}, False, "not before the event's start"),
        ({"isBefore": [var("now"), bt("date_to")]}, True, "before the event's end (Mon 02:00)"),
        ({"isAfter": [var("now"), bt("date_admission")]}, True, "after the doors (Fri 16:00)"),
        (
            {"isAfter": [var("now"), bt("date_to"), 2000]},
            True,
            "tolerance 2000 min: Sat 20:00 + 33 h 20 = Mon 05:20, after the end (Mon 02:00)",
        ),
    ],
    start=1,
):
    kinds = [
        k
        for k in ("customtime", "custom", "date_from", "date_to", "date_admission")
        if k in json.dumps(rule)
    ]
    ops = [k for k in ("isAfter", "isBefore") if k in json.dumps(rule)]
    ruled(f"var-now-{n:02d}", rule, ok, note, ["now", "buildTime", *ops, *kinds, "tolerance"])

SESSION_TIMES: Json = dict(
    FEST,
    days=[
        {
            "date": "2026-06-06",
            "name": "Saturday",
            "starts_at": t("06 20:00"),
            "ends_at": "2026-06-07T03:00:00+02:00",
            "admission_at": t("06 19:30"),
        },
    ],
)
ruled(
    "var-now-19",
    {"isBefore": [var("now"), bt("date_admission"), 30]},
    True,
    "today's session's doors 19:30 (not the event's Fri 16:00): 19:45 - 30 min before 19:30",
    ["date_admission", "session"],
    event=SESSION_TIMES,
    now=t("06 19:45"),
)
ruled(
    "var-now-20",
    {"isAfter": [var("now"), bt("date_from")]},
    False,
    "today's session starts 20:00: 19:45 is not after it",
    ["date_from", "session"],
    event=SESSION_TIMES,
    now=t("06 19:45"),
)
ruled(
    "var-now-21",
    {"isBefore": [var("now"), bt("date_to"), None]},
    True,
    "today's session ends Sun 03:00: 01:00 Sunday is before it",
    ["date_to", "session"],
    event=SESSION_TIMES,
    now=t("07 01:00"),
)
ruled(
    "var-now-22",
    {"isAfter": [var("now"), bt("customtime", "23:00")]},
    False,
    "customtime is on the day of now: at 01:00 Sunday, 23:00 means Sunday 23:00",
    ["customtime", "tz_day_boundary"],
    now=t("07 01:00"),
)

# now_isoweekday: Fri 5, Sat 6, Sun 7
ruled(
    "var-weekday-1",
    {"<=": [var("now_isoweekday"), 5]},
    True,
    "Friday is a weekday",
    ["now_isoweekday", "<="],
    now=t("05 20:00"),
)
ruled(
    "var-weekday-2",
    {"<=": [var("now_isoweekday"), 5]},
    False,
    "Saturday is not",
    ["now_isoweekday"],
)
ruled(
    "var-weekday-3",
    {"==": [var("now_isoweekday"), 7]},
    True,
    "Sunday is 7",
    ["now_isoweekday", "=="],
    now=t("07 10:00"),
)
ruled(
    "var-weekday-4",
    {"==": [var("now_isoweekday"), 6]},
    True,
    "Saturday 23:30 in Berlin is Saturday though it is 21:30Z",
    ["now_isoweekday", "tz_day_boundary"],
    now="2026-06-06T21:30:00Z",
)
ruled(
    "var-weekday-5",
    {"==": [var("now_isoweekday"), 7]},
    True,
    "22:30Z on Saturday is 00:30 Sunday in Berlin",
    ["now_isoweekday", "tz_day_boundary"],
    now="2026-06-06T22:30:00Z",
)

# entry_status: last scan on this list
ruled(
    "var-status-1",
    {"==": [var("entry_status"), "absent"]},
    True,
    "no scans: absent",
    ["entry_status"],
)
ruled(
    "var-status-2",
    {"==": [var("entry_status"), "absent"]},
    False,
    "entered: present",
    ["entry_status"],
    history=[h(t("06 18:00"))],
)
ruled(
    "var-status-3",
    {"==": [var("entry_status"), "absent"]},
    True,
    "entered then left",
    ["entry_status"],
    history=[h(t("06 18:00")), h(t("06 19:00"), direction="exit")],
)
ruled(
    "var-status-4",
    {"==": [var("entry_status"), "present"]},
    False,
    "entered on another list only: absent on this one",
    ["entry_status", "per_list"],
    history=[h(t("06 18:00"), list_id="l-other")],
)
ruled(
    "var-status-5",
    {"!=": [var("entry_status"), "present"]},
    False,
    "present, != fails",
    ["entry_status", "!="],
    history=[h(t("06 18:00"))],
)

# entries_number / entries_today / entries_days
THREE_DAYS = [
    h(t("05 19:00")),
    h(t("05 21:00"), direction="exit"),
    h(t("06 12:00")),
    h(t("06 13:00"), direction="exit"),
    h(t("06 18:00")),
]
ruled(
    "var-number-1",
    {"<": [var("entries_number"), 3]},
    False,
    "three entries is not < 3",
    ["entries_number", "<"],
    history=THREE_DAYS,
)
ruled(
    "var-number-2",
    {"<=": [var("entries_number"), 3]},
    True,
    "three entries <= 3",
    ["entries_number", "<="],
    history=THREE_DAYS,
)
ruled(
    "var-number-3",
    {"==": [var("entries_number"), 0]},
    True,
    "no entries yet",
    ["entries_number", "=="],
)
ruled(
    "var-number-4",
    {"==": [var("entries_number"), 0]},
    True,
    "entries on another list do not count (pretix counts per list)",
    ["entries_number", "per_list"],
    history=[h(t("06 18:00"), list_id="l-other")],
)
ruled(
    "var-number-5",
    {">": [var("entries_number"), 1]},
    True,
    "exits are not entries: 3 > 1",
    ["entries_number", ">"],
    history=THREE_DAYS,
)
ruled(
    "var-number-6",
    {">=": [var("entries_number"), 4]},
    False,
    "3 >= 4 is false",
    ["entries_number", ">="],
    history=THREE_DAYS,
)
ruled(
    "var-today-1",
    {"<": [var("entries_today"), 1]},
    False,
    "two entries today (12:00, 18:00)",
    ["entries_today"],
    history=THREE_DAYS,
)
ruled(
    "var-today-2",
    {"<": [var("entries_today"), 3]},
    True,
    "2 < 3",
    ["entries_today"],
    history=THREE_DAYS,
)
ruled(
    "var-today-3",
    {"<": [var("entries_today"), 1]},
    True,
    "yesterday's entries do not count today",
    ["entries_today"],
    now=t("07 10:00"),
    history=THREE_DAYS,
)
ruled(
    "var-today-4",
    {"<": [var("entries_today"), 1]},
    True,
    "an entry at 23:30 Friday Berlin (21:30Z) is Friday's, not Saturday's",
    ["entries_today", "tz_day_boundary"],
    now=t("06 00:30"),
    history=[h("2026-06-05T21:30:00Z"), h("2026-06-05T21:45:00Z", direction="exit")],
)
ruled(
    "var-today-5",
    {"<": [var("entries_today"), 1]},
    False,
    "an entry at 22:10Z Friday is 00:10 Saturday in Berlin: today's",
    ["entries_today", "tz_day_boundary"],
    now=t("06 00:30"),
    history=[h("2026-06-05T22:10:00Z"), h("2026-06-05T22:15:00Z", direction="exit")],
)
ruled(
    "var-days-1",
    {"<=": [var("entries_days"), 1]},
    False,
    "entries on Fri and Sat: 2 days",
    ["entries_days"],
    history=THREE_DAYS,
)
ruled(
    "var-days-2",
    {"==": [var("entries_days"), 2]},
    True,
    "2 distinct days",
    ["entries_days"],
    history=THREE_DAYS,
)
ruled("var-days-3", {"==": [var("entries_days"), 0]}, True, "no entries: 0 days", ["entries_days"])

# entries_since / before / days_since / days_before with a buildTime argument
SAT_NOON = bt("custom", "2026-06-06T12:00:00+02:00")
for n, (op, rule_value, ok, note) in enumerate(
    [
        (
            "entries_since",
            {"==": [{"entries_since": [SAT_NOON]}, 2]},
            True,
            "12:00 (at the cutoff, counted) and 18:00",
        ),
        ("entries_since", {"<": [{"entries_since": [SAT_NOON]}, 2]}, False, "2 is not < 2"),
        (
            "entries_before",
            {"==": [{"entries_before": [SAT_NOON]}, 1]},
            True,
            "only Friday 19:00 is before 12:00 (12:00 itself is not)",
        ),
        ("entries_before", {">": [{"entries_before": [SAT_NOON]}, 1]}, False, "1 is not > 1"),
        (
            "entries_days_since",
            {"==": [{"entries_days_since": [SAT_NOON]}, 1]},
            True,
            "both since-entries are on Saturday: one day",
        ),
        (
            "entries_days_since",
            {"<=": [{"entries_days_since": [bt("date_from")]}, 1]},
            False,
            "since the event's start: Fri and Sat, 2 days",
        ),
        (
            "entries_days_before",
            {"==": [{"entries_days_before": [SAT_NOON]}, 1]},
            True,
            "before Saturday noon: Friday only",
        ),
        (
            "entries_days_before",
            {"==": [{"entries_days_before": [bt("date_from")]}, 0]},
            True,
            "nothing before the event's start",
        ),
        (
            "entries_since",
            {"==": [{"entries_since": [bt("customtime", "17:00")]}, 1]},
            True,
            "customtime 17:00 today: only 18:00",
        ),
    ],
    start=1,
):
    ruled(f"var-since-{n:02d}", rule_value, ok, note, [op, "buildTime"], history=THREE_DAYS)

# minutes since last / first entry (now Sat 20:00; THREE_DAYS: first Fri 19:00, last Sat 18:00)
for n, (rule, ok, note, hist) in enumerate(
    [
        (
            {">": [var("minutes_since_last_entry"), 120]},
            False,
            "120 minutes is not > 120",
            THREE_DAYS,
        ),
        ({">=": [var("minutes_since_last_entry"), 120]}, True, "120 >= 120", THREE_DAYS),
        ({"==": [var("minutes_since_last_entry"), -1]}, True, "no entry: -1", []),
        (
            {"==": [var("minutes_since_first_entry"), 1500]},
            True,
            "Fri 19:00 to Sat 20:00 is 25 h = 1500 min",
            THREE_DAYS,
        ),
        ({"==": [var("minutes_since_first_entry"), -1]}, True, "no entry: -1", []),
        (
            {"==": [var("minutes_since_last_entry"), 0]},
            True,
            "59 seconds ago: whole minutes, 0",
            [h("2026-06-06T19:59:01+02:00")],
        ),
        (
            {"==": [var("minutes_since_last_entry"), 1]},
            True,
            "exactly 60 s ago: 1",
            [h(t("06 19:59"))],
        ),
        (
            {
                "or": [
                    {"==": [var("entries_number"), 0]},
                    {">": [var("minutes_since_last_entry"), 120]},
                ]
            },
            True,
            "re-entry after 2 hours: last entry 17:59, 121 minutes",
            [h(t("06 17:59"))],
        ),
        (
            {"<": [var("minutes_since_first_entry"), 60]},
            False,
            "within an hour of the first entry only: 1500 is not < 60",
            THREE_DAYS,
        ),
    ],
    start=1,
):
    variables = [
        v
        for v in ("minutes_since_last_entry", "minutes_since_first_entry")
        if v in json.dumps(rule)
    ]
    ruled(f"var-minutes-{n:02d}", rule, ok, note, variables, history=hist)

# --- D2. our variables ------------------------------------------------------------------------

ruled(
    "var-ticket-type-1",
    {"==": [var("ticket_type"), "tt-staff"]},
    True,
    "ticket_type",
    ["ticket_type"],
    ticket="tt-staff",
)
ruled(
    "var-ticket-type-2",
    {"in": [var("ticket_type"), ["tt-staff", "tt-vip"]]},
    False,
    "ticket_type not in the list",
    ["ticket_type", "in"],
)
ruled(
    "var-zone-1",
    {"==": [var("zone"), "backstage"]},
    True,
    "the list's zone",
    ["zone"],
    list_fields={"zone": "backstage"},
)
ruled("var-zone-2", {"==": [var("zone"), None]}, True, "a list without a zone: null", ["zone"])
ruled(
    "var-event-day-1",
    {"==": [var("event_day"), "2026-06-06"]},
    True,
    "today is Saturday",
    ["event_day"],
)
ruled(
    "var-event-day-2",
    {"==": [var("event_day"), "2026-06-06"]},
    False,
    "00:30 Sunday Berlin is Sunday's event day",
    ["event_day", "tz_day_boundary"],
    now="2026-06-06T22:30:00Z",
)
ruled(
    "var-event-day-3",
    {"==": [var("event_day_index"), 1]},
    True,
    "Friday is day 1",
    ["event_day_index"],
    now=t("05 20:00"),
)
ruled(
    "var-event-day-4",
    {">=": [var("event_day_index"), 2]},
    False,
    "day 1 is not >= 2",
    ["event_day_index"],
    now=t("05 20:00"),
)
ruled(
    "var-event-day-5",
    {"==": [var("event_day_index"), 0]},
    True,
    "Monday 01:00 is on no event day: 0",
    ["event_day_index"],
    now=t("08 01:00"),
)
ruled("var-inside-1", {"!": [var("inside")]}, True, "not inside anywhere", ["inside", "!"])
ruled(
    "var-inside-2",
    {"!": [var("inside")]},
    False,
    "inside the arena (another list) counts as inside",
    ["inside"],
    history=[h(t("06 18:00"), list_id="l-arena")],
)
ruled(
    "var-inside-3",
    {"==": [var("inside"), False]},
    True,
    "entered and left: outside",
    ["inside"],
    history=[h(t("06 18:00")), h(t("06 19:00"), direction="exit")],
)

# --- E. operators -----------------------------------------------------------------------------

for n, (rule, ok, ops) in enumerate(
    [
        ({"<": [1, 2]}, True, ["<"]),
        ({"<": [2, 2]}, False, ["<"]),
        ({"<=": [2, 2]}, True, ["<="]),
        ({">": [3, 2]}, True, [">"]),
        ({">=": [1, 2]}, False, [">="]),
        ({"==": [1, 1.0]}, True, ["=="]),
        ({"==": ["1", 1]}, True, ["=="]),
        ({"==": ["a", "b"]}, False, ["=="]),
        ({"!=": [1, 2]}, True, ["!="]),
        ({"!=": ["a", "a"]}, False, ["!="]),
        ({"===": ["1", 1]}, False, ["==="]),
        ({"!==": ["1", 1]}, True, ["!=="]),
        ({"and": [True, {"<": [1, 2]}]}, True, ["and"]),
        ({"and": [True, False]}, False, ["and"]),
        ({"or": [False, {"<": [1, 2]}]}, True, ["or"]),
        ({"or": [False, 0, ""]}, False, ["or"]),
        ({"and": [{"or": [False, True]}, {"or": [True]}]}, True, ["and", "or"]),
        ({"!": [False]}, True, ["!"]),
        ({"!!": [[]]}, False, ["!!"]),
        ({"!!": ["x"]}, True, ["!!"]),
        ({"if": [{"<": [1, 2]}, True, False]}, True, ["if"]),
        ({"if": [False, True, {"==": [1, 2]}]}, False, ["if"]),
        ({"if": [False, False, False, False, True]}, True, ["if"]),
        ({"in": ["b", ["a", "b"]]}, True, ["in"]),
        ({"in": ["c", ["a", "b"]]}, False, ["in"]),
        ({"in": ["ck", "check"]}, True, ["in"]),
        ({"<": [1, 2, 3]}, True, ["<", "between"]),
        ({"<": [1, 3, 3]}, False, ["<", "between"]),
        ({"<=": [1, 3, 3]}, True, ["<=", "between"]),
        ({"==": [{"+": [1, 2]}, 3]}, True, ["+"]),
        ({"==": [{"-": [5, 2]}, 3]}, True, ["-"]),
        ({"==": [{"*": [2, 3]}, 6]}, True, ["*"]),
        ({"==": [{"/": [6, 3]}, 2]}, True, ["/"]),
        ({"==": [{"%": [7, 3]}, 1]}, True, ["%"]),
        ({"==": [{"max": [1, 5, 3]}, 5]}, True, ["max"]),
        ({"==": [{"min": [1, 5, 3]}, 1]}, True, ["min"]),
        ({"==": [{"cat": ["a", 1]}, "a1"]}, True, ["cat"]),
        (True, True, ["literal"]),
        (False, False, ["literal"]),
        ({"var": ["no_such_variable", 5]}, True, ["var", "default"]),
    ],
    start=1,
):
    ruled(f"op-{n:02d}", rule, ok, json.dumps(rule), ["operator", *ops])

# --- E2. rules that cannot be evaluated: rule_failed naming the rule -------------------------

for n, (rule, note) in enumerate(
    [
        ({"var": "entries_tomorrow"}, "unknown variable"),
        ({"frobnicate": [1]}, "unknown operator"),
        ({"<": [var("now"), 5]}, "a time compared with a number"),
        ({"<": ["abc", 1]}, "text that is no number, ordered"),
        ({"isAfter": [var("now"), bt("yesterday")]}, "unknown buildTime kind"),
        ({"isAfter": [var("now"), bt("custom", "not a date")]}, "custom time that does not parse"),
        ({"isAfter": [var("now"), bt("customtime", "25:00")]}, "customtime that is no time"),
        ({"isAfter": [var("now"), "2026-06-06T18:00:00+02:00"]}, "a time as plain text"),
        ({"/": [1, 0]}, "division by zero"),
        ({"and": []}, "and without conditions"),
        ({"<": [1]}, "comparison with one value"),
        ({"entries_since": ["yesterday"]}, "entries_since without a time"),
        ({"inList": [var("product"), "tt-ga"]}, "inList without a list"),
        ({"a": 1, "b": 2}, "an object with two operators"),
        ({"isAfter": [var("now"), bt("custom", "2026-13-01T00:00:00")]}, "a month 13"),
        ({"buildTime": []}, "buildTime without a kind"),
    ],
    start=1,
):
    case(
        f"fail-{n:02d}",
        f"A rule that cannot be evaluated ({note}) refuses as rule_failed.",
        lists=[lst("l-main", name="Main", rules=rule)],
        result="rejected",
        reason="rule_failed",
        list_id="l-main",
        sentence="The rule of “Main” could not be checked: entry refused.",
        covers=["rule_failed", "totality"],
    )
case(
    "fail-17",
    "An exit is never refused, not even by a rule that cannot be evaluated.",
    lists=[lst("l-main", rules={"frobnicate": []})],
    direction="exit",
    history=[h(t("06 18:00"))],
    result="admitted",
    list_id="l-main",
    leaves_zone="",
    covers=["exit", "rule_failed"],
)
case(
    "fail-18",
    "pretix's empty rule {} is no rule.",
    lists=[lst("l-main", rules={})],
    result="admitted",
    list_id="l-main",
    enters_zone="",
    covers=["empty_rule"],
)

# --- F. exits ----------------------------------------------------------------------------------

case(
    "exit-01",
    "An exit with a rule that refuses every entry: let out.",
    lists=[lst("l-main", rules=False)],
    direction="exit",
    history=[h(t("06 18:00"))],
    result="admitted",
    list_id="l-main",
    leaves_zone="",
    covers=["exit"],
)
case(
    "exit-02",
    "An exit at a gate whose lists do not admit the type: let out, on no list.",
    lists=[VIP, MAIN],
    ticket="tt-ga",
    gate="VIP",
    direction="exit",
    history=[h(t("06 18:00"))],
    result="admitted",
    list_id=None,
    leaves_zone="",
    covers=["exit", "not_on_list"],
)
case(
    "exit-03",
    "An exit by someone not inside: let out, leaving no zone.",
    lists=[lst("l-main")],
    direction="exit",
    result="admitted",
    list_id="l-main",
    leaves_zone=None,
    covers=["exit"],
)
case(
    "exit-04",
    "An exit from backstage leaves backstage.",
    lists=[lst("l-arena", zone="arena"), lst("l-back", zone="backstage", gates=["Back"])],
    gate="Back",
    direction="exit",
    history=[h(t("06 18:00"), list_id="l-arena"), h(t("06 19:00"), list_id="l-back")],
    result="admitted",
    list_id="l-back",
    leaves_zone="backstage",
    covers=["exit", "zone"],
)

# --- G. zones ----------------------------------------------------------------------------------

ARENA = lst("l-arena", name="Arena", zone="arena", gates=["Main"], allow_reentry=True)
BACK = lst(
    "l-back",
    name="Backstage",
    zone="backstage",
    gates=["Back"],
    ticket_type_ids=["tt-staff", "tt-vip"],
    allow_reentry=True,
)
LOUNGE = lst(
    "l-lounge",
    name="Lounge",
    zone="lounge",
    gates=["Lounge"],
    ticket_type_ids=["tt-vip"],
    allow_reentry=False,
)
ZONES = [ARENA, BACK, LOUNGE]
case(
    "zone-01",
    "Entering the arena from outside: enters arena, leaves nothing.",
    lists=ZONES,
    result="admitted",
    list_id="l-arena",
    enters_zone="arena",
    covers=["zone"],
)
case(
    "zone-02",
    "From the arena into backstage: leaves the arena.",
    lists=ZONES,
    ticket="tt-staff",
    gate="Back",
    history=[h(t("06 18:00"), list_id="l-arena")],
    result="admitted",
    list_id="l-back",
    enters_zone="backstage",
    leaves_zone="arena",
    covers=["zone", "auto_checkout"],
)
case(
    "zone-03",
    "Back from backstage into the arena: a re-entry the arena allows; leaves backstage.",
    lists=ZONES,
    ticket="tt-staff",
    history=[h(t("06 18:00"), list_id="l-arena"), h(t("06 19:00"), list_id="l-back", gate="Back")],
    result="admitted",
    list_id="l-arena",
    enters_zone="arena",
    leaves_zone="backstage",
    covers=["zone", "auto_checkout"],
)
case(
    "zone-04",
    "A second arena entry while in the arena is a double entry.",
    lists=ZONES,
    history=[h(t("06 18:00"), list_id="l-arena")],
    result="rejected",
    reason="already_checked_in",
    list_id="l-arena",
    covers=["zone", "double_entry"],
)
case(
    "zone-05",
    "The lounge allows no re-entry: in, moved to the arena, back to the lounge is refused.",
    lists=ZONES,
    ticket="tt-vip",
    gate="Lounge",
    history=[
        h(t("06 18:00"), list_id="l-lounge", gate="Lounge"),
        h(t("06 19:00"), list_id="l-arena"),
    ],
    result="rejected",
    reason="already_checked_in",
    list_id="l-lounge",
    covers=["zone"],
)
case(
    "zone-06",
    "A general ticket at the backstage gate: not on its list.",
    lists=ZONES,
    gate="Back",
    history=[h(t("06 18:00"), list_id="l-arena")],
    result="rejected",
    reason="not_on_list",
    sentence="General admission tickets enter at the Main gate.",
    covers=["zone", "not_on_list"],
)
case(
    "zone-07",
    "From the lounge straight into backstage: leaves the lounge.",
    lists=ZONES,
    ticket="tt-vip",
    gate="Back",
    history=[h(t("06 18:00"), list_id="l-lounge", gate="Lounge")],
    result="admitted",
    list_id="l-back",
    enters_zone="backstage",
    leaves_zone="lounge",
    covers=["zone", "auto_checkout"],
)
case(
    "zone-08",
    "Out of the event, then into backstage: leaves nothing.",
    lists=ZONES,
    ticket="tt-staff",
    gate="Back",
    history=[
        h(t("06 18:00"), list_id="l-arena"),
        h(t("06 18:30"), list_id="l-arena", direction="exit"),
    ],
    result="admitted",
    list_id="l-back",
    enters_zone="backstage",
    covers=["zone"],
)
case(
    "zone-09",
    "Scans before lists existed (no list) count as the general area: entering the arena leaves it.",
    lists=ZONES,
    history=[h(t("06 17:00"), list_id=None)],
    result="admitted",
    list_id="l-arena",
    enters_zone="arena",
    leaves_zone="",
    covers=["zone", "general_area"],
)
case(
    "zone-10",
    "Scans after now do not count: the backstage entry at 21:00 is in the future.",
    lists=ZONES,
    ticket="tt-staff",
    history=[h(t("06 18:00"), list_id="l-arena"), h(t("06 21:00"), list_id="l-back", gate="Back")],
    result="rejected",
    reason="already_checked_in",
    list_id="l-arena",
    covers=["zone", "now"],
)

# --- H. re-entry policy --------------------------------------------------------------------------

LEFT = [h(t("06 18:00")), h(t("06 19:00"), direction="exit")]
case(
    "reentry-01",
    "The list follows the event (no re-entry): refused after an exit.",
    lists=[lst("l-main")],
    history=LEFT,
    result="rejected",
    reason="already_checked_in",
    list_id="l-main",
    covers=["reentry"],
)
case(
    "reentry-02",
    "The event allows re-entry and the list follows it.",
    lists=[lst("l-main")],
    history=LEFT,
    event=dict(FEST, allow_reentry=True),
    result="admitted",
    list_id="l-main",
    enters_zone="",
    covers=["reentry"],
)
case(
    "reentry-03",
    "The list allows re-entry though the event does not.",
    lists=[lst("l-main", allow_reentry=True)],
    history=LEFT,
    result="admitted",
    list_id="l-main",
    enters_zone="",
    covers=["reentry"],
)
case(
    "reentry-04",
    "The list forbids re-entry though the event allows it.",
    lists=[lst("l-main", allow_reentry=False)],
    history=LEFT,
    event=dict(FEST, allow_reentry=True),
    result="rejected",
    reason="already_checked_in",
    list_id="l-main",
    covers=["reentry"],
)
case(
    "reentry-05",
    "Multiple entries allowed: a second entry while inside is admitted.",
    lists=[lst("l-main", allow_multiple_entries=True)],
    history=[h(t("06 18:00"))],
    result="admitted",
    list_id="l-main",
    enters_zone="",
    covers=["multiple_entries"],
)
case(
    "reentry-06",
    "Without multiple entries a second entry while inside is a double entry.",
    lists=[lst("l-main", allow_reentry=True)],
    history=[h(t("06 18:00"))],
    result="rejected",
    reason="already_checked_in",
    list_id="l-main",
    covers=["double_entry"],
)
case(
    "reentry-07",
    "The rule is checked before double entry: a rule refusal wins.",
    lists=[lst("l-main", rules=False)],
    history=[h(t("06 18:00"))],
    result="rejected",
    reason="rule_failed",
    list_id="l-main",
    covers=["order"],
)
case(
    "reentry-08",
    "Entered on another list in the same (general) area: a double entry here.",
    lists=[lst("l-main"), lst("l-side", gates=["Side"])],
    history=[h(t("06 18:00"), list_id="l-side", gate="Side")],
    result="rejected",
    reason="already_checked_in",
    list_id="l-main",
    covers=["double_entry", "zone"],
)

# --- I. pretix's documented examples, as imported (product 1 → tt-sat, 2 → tt-weekend) --------

ONCE_A_DAY = {"<": [var("entries_today"), 1]}
AFTER_18 = {"isAfter": [var("now"), bt("customtime", "18:00"), 10]}
REENTRY_2H = {
    "or": [{"==": [var("entries_number"), 0]}, {">": [var("minutes_since_last_entry"), 120]}]
}
WEEKDAYS = {"<=": [var("now_isoweekday"), 5]}
for n, (rule, ok, note, more) in enumerate(
    [
        (PRODUCTS, True, "only product 1 or 2: the day pass (1)", {"ticket": "tt-sat"}),
        (PRODUCTS, False, "only product 1 or 2: VIP is neither", {"ticket": "tt-vip"}),
        (ONCE_A_DAY, True, "once per day: first today", {}),
        (ONCE_A_DAY, False, "once per day: again today", {"history": [h(t("06 10:00"))]}),
        (
            ONCE_A_DAY,
            True,
            "once per day: yesterday's does not count",
            {"history": [h(t("05 20:00"))]},
        ),
        (
            AFTER_18,
            True,
            "not before 18:00 with 10 minutes' tolerance: 17:51",
            {"now": t("06 17:51")},
        ),
        (
            AFTER_18,
            False,
            "not before 18:00 with 10 minutes' tolerance: 17:50 is not after",
            {"now": t("06 17:50")},
        ),
        (REENTRY_2H, True, "re-entry after 2 h: first entry", {}),
        (
            REENTRY_2H,
            False,
            "re-entry after 2 h: 90 minutes since",
            {"history": [h(t("06 18:30"))]},
        ),
        (
            REENTRY_2H,
            True,
            "re-entry after 2 h: 150 minutes since",
            {"history": [h(t("06 17:30"))]},
        ),
        (WEEKDAYS, False, "weekdays only: Saturday", {}),
        (WEEKDAYS, True, "weekdays only: Friday", {"now": t("05 19:00")}),
        (
            {"and": [PRODUCTS, ONCE_A_DAY]},
            False,
            "day pass or weekend, once a day: weekend again today",
            {"ticket": "tt-weekend", "history": [h(t("06 10:00"))]},
        ),
        (
            {
                "or": [
                    {
                        "inList": [
                            var("product"),
                            {"objectList": [{"lookup": ["product", "tt-staff", "Staff"]}]},
                        ]
                    },
                    ONCE_A_DAY,
                ]
            },
            True,
            "staff any time, others once a day: staff again",
            {"ticket": "tt-staff", "history": [h(t("06 10:00"))]},
        ),
    ],
    start=1,
):
    extra: dict[str, Any] = dict(more)  # type: ignore[call-overload]
    ruled(f"pretix-{n:02d}", rule, ok, f"pretix example: {note}", ["pretix_example"], **extra)


# --- J. what staff read when a rule refuses ---------------------------------------------------

case(
    "explain-01",
    "The list's own explanation is what staff read.",
    lists=[lst("l-back", rules=False, explanation="Backstage opens after the show.")],
    result="rejected",
    reason="rule_failed",
    list_id="l-back",
    sentence="Backstage opens after the show.",
    covers=["explanation"],
)
for n, (rule, now, hist, ticket, sentence) in enumerate(
    [
        (ONCE_A_DAY, t("06 20:00"), [h(t("06 10:00"))], "tt-ga", "Already entered today."),
        (AFTER_18, t("06 17:40"), [], "tt-ga", "Entry from 17:50."),
        (
            {"isBefore": [var("now"), bt("customtime", "22:00"), 15]},
            t("06 22:30"),
            [],
            "tt-ga",
            "Entry only until 22:15.",
        ),
        (WEEKDAYS, t("06 20:00"), [], "tt-ga", "Not valid on Saturday."),
        (PRODUCTS, t("06 20:00"), [], "tt-vip", "VIP tickets may not enter here."),
        (
            {
                "and": [
                    {"<": [var("entries_number"), 5]},
                    {"isAfter": [var("now"), bt("customtime", "21:00")]},
                ]
            },
            t("06 20:00"),
            [],
            "tt-ga",
            "Entry from 21:00.",
        ),
        (
            # Of an "or", the way in easiest for the holder (pretix's weights): not entering
            # again today is easier to meet than the clock.
            {"or": [{"isAfter": [var("now"), bt("customtime", "21:00")]}, ONCE_A_DAY]},
            t("06 20:00"),
            [h(t("06 19:00"))],
            "tt-ga",
            "Already entered today.",
        ),
        (
            {"isAfter": [var("now"), bt("custom", "2026-06-07T12:00:00+02:00")]},
            t("06 20:00"),
            [],
            "tt-ga",
            "Entry from Sunday 07 Jun 12:00.",
        ),
        # "entries_number == 0" or "minutes since last > 120": the minutes are the easier way.
        (REENTRY_2H, t("06 20:00"), [h(t("06 19:00"))], "tt-ga", "Too soon after the last entry."),
        # Of an "and", the hardest obstacle: the ticket type, not the count.
        (
            {"and": [PRODUCTS, ONCE_A_DAY]},
            t("06 20:00"),
            [h(t("06 19:00"))],
            "tt-vip",
            "VIP tickets may not enter here.",
        ),
    ],
    start=2,
):
    ruled(
        f"explain-{n:02d}",
        rule,
        False,
        f"the sentence for a refusal: {sentence}",
        ["explanation"],
        now=now,
        history=hist,
        ticket=ticket,
        sentence=sentence,
    )


def main() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    document = {
        "format": "gatehouse-checkin-corpus/1",
        "about": (
            "Check-in rule cases (issue 16): lists, rule, ticket, history, now, gate, direction "
            "→ expected verdict and reason. See checkin_rules_corpus.md; written by "
            "make_checkin_rules_corpus.py."
        ),
        "cases": CASES,
    }
    path = Path(__file__).with_name("checkin_rules_corpus.json")
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(CASES)} cases → {path}")


if __name__ == "__main__":
    main()
