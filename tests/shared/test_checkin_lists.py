"""Check-in lists: presence per zone, the decision's properties (any rule and any history give a
decision; the order scans arrive in does not matter), and the wire forms' validation."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import wire
from shared.checkin_lists import (
    GENERAL_AREA,
    CheckinList,
    EventDay,
    EventPlan,
    TicketKind,
    checkin_list_from_wire,
    decide,
    event_day_from_wire,
    event_zone,
    holders,
    inside_by_zone,
    where_inside,
    zone_conflicts,
)
from shared.domain import Direction, VerdictReason
from shared.timeline import AdmittedScan

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 6, 6, 18, 0, tzinfo=UTC)


def scan(minute: int, zone: str | None, direction: Direction = Direction.ENTRY) -> AdmittedScan:
    return AdmittedScan(
        scan_id=uuid.UUID(int=minute + 1),
        at=T0 + timedelta(minutes=minute),
        direction=direction,
        zone=zone,
        list_id=f"l-{zone}" if zone else "l-main",
    )


# --- presence ------------------------------------------------------------------------------------


def test_an_entry_into_another_zone_moves_the_person_there() -> None:
    assert where_inside([scan(0, "arena"), scan(5, "backstage")]) == "backstage"


def test_an_exit_takes_the_person_out_of_the_event() -> None:
    assert where_inside([scan(0, "arena"), scan(5, "backstage", Direction.EXIT)]) is None


def test_presence_follows_time_not_the_order_scans_arrive_in() -> None:
    assert where_inside([scan(5, "backstage"), scan(0, "arena")]) == "backstage"


def test_lists_without_a_zone_lead_into_the_general_area() -> None:
    assert where_inside([scan(0, None)]) == GENERAL_AREA


def test_inside_by_zone_counts_each_person_once_where_they_are_now() -> None:
    people = [
        [scan(0, "arena"), scan(5, "backstage")],
        [scan(0, "arena")],
        [scan(0, "arena"), scan(9, "arena", Direction.EXIT)],
        [scan(1, None)],
        [],
    ]
    assert inside_by_zone(people) == {"backstage": 1, "arena": 1, GENERAL_AREA: 1}


# --- decisions -----------------------------------------------------------------------------------

ARENA = CheckinList(id="l-arena", name="Arena", zone="arena", allow_reentry=True)
BACK = CheckinList(
    id="l-backstage",
    name="Backstage",
    zone="backstage",
    gates=frozenset({"Back"}),
    ticket_type_ids=frozenset({"tt-staff"}),
    allow_reentry=True,
)
STAFF = TicketKind(id="tt-staff", name="Staff pass")


def plan(*lists: CheckinList, **more: object) -> EventPlan:
    return EventPlan(tz=BERLIN, lists=lists, **more)  # type: ignore[arg-type]


def test_an_event_without_lists_has_no_list_decision() -> None:
    assert (
        decide(plan(), gate="Main", direction=Direction.ENTRY, ticket=STAFF, history=[], now=T0)
        is None
    )


def test_entering_backstage_from_the_arena_leaves_the_arena() -> None:
    decision = decide(
        plan(ARENA, BACK),
        gate="Back",
        direction=Direction.ENTRY,
        ticket=STAFF,
        history=[scan(0, "arena")],
        now=T0 + timedelta(minutes=10),
    )
    assert decision is not None
    assert decision.admitted
    assert (decision.enters_zone, decision.leaves_zone) == ("backstage", "arena")
    assert decision.list == BACK


def test_a_rule_refusal_names_the_list_and_says_the_lists_own_sentence() -> None:
    strict = CheckinList(
        id="l-vip",
        name="VIP lounge",
        rules={"<": [{"var": "entries_today"}, 1]},
        explanation="The lounge admits once a day.",
        allow_multiple_entries=True,
    )
    decision = decide(
        plan(strict),
        gate="Main",
        direction=Direction.ENTRY,
        ticket=STAFF,
        history=[AdmittedScan(uuid.UUID(int=1), T0, Direction.ENTRY, list_id="l-vip")],
        now=T0 + timedelta(hours=1),
    )
    assert decision is not None
    assert decision.refusal is not None
    assert decision.refusal.reason is VerdictReason.RULE_FAILED
    assert decision.refusal.sentence == "The lounge admits once a day."
    assert (decision.refusal.list_id, decision.refusal.list_name) == ("l-vip", "VIP lounge")


def test_a_double_entry_names_the_admission_it_collides_with() -> None:
    first = scan(0, "arena")
    decision = decide(
        plan(ARENA),
        gate="Main",
        direction=Direction.ENTRY,
        ticket=STAFF,
        history=[first],
        now=T0 + timedelta(minutes=1),
    )
    assert decision is not None
    assert decision.refusal is not None
    assert decision.refusal.reason is VerdictReason.ALREADY_CHECKED_IN
    assert decision.prior is not None
    assert decision.prior.scan_id == first.scan_id


def test_a_day_pass_on_the_wrong_day_says_which_day_it_is_for() -> None:
    days = (EventDay(date(2026, 6, 6), "Saturday"), EventDay(date(2026, 6, 7), "Sunday"))
    ticket = TicketKind(id="tt-sat", name="Day pass", days=frozenset({date(2026, 6, 6)}))
    decision = decide(
        plan(ARENA, days=days),
        gate="Main",
        direction=Direction.ENTRY,
        ticket=ticket,
        history=[],
        now=datetime(2026, 6, 7, 12, tzinfo=BERLIN),
    )
    assert decision is not None
    assert decision.refusal is not None
    assert decision.refusal.sentence == "Day pass for Saturday — today is Sunday."


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("VIP", "VIP tickets"),
        ("Day pass", "Day passes"),
        ("Workshop ticket", "Workshop tickets"),
        ("Staff passes", "Staff passes"),
    ],
)
def test_holders(name: str, expected: str) -> None:
    assert holders(name) == expected


_rules = st.recursive(
    st.one_of(
        st.booleans(),
        st.integers(-3, 200),
        st.sampled_from(
            [
                {"var": "entries_number"},
                {"var": "entries_today"},
                {"var": "minutes_since_last_entry"},
                {"var": "entry_status"},
                {"var": "inside"},
                {"var": "zone"},
                "present",
                {"entries_since": [{"buildTime": ["customtime", "19:00"]}]},
            ]
        ),
    ),
    lambda inner: st.builds(
        lambda op, args: {op: args},
        st.sampled_from(["and", "or", "<", ">", "==", "!=", "!", "if"]),
        st.lists(inner, min_size=1, max_size=3),
    ),
    max_leaves=10,
)
_history = st.lists(
    st.tuples(
        st.integers(0, 600),
        st.sampled_from([None, "arena", "backstage"]),
        st.sampled_from(list(Direction)),
    ),
    max_size=8,
    unique_by=lambda item: item[0],
)


@given(rule=_rules, history=_history, data=st.data())
def test_any_rule_and_history_give_one_decision_whatever_order_the_scans_come_in(
    rule: object, history: list[tuple[int, str | None, Direction]], data: st.DataObject
) -> None:
    lists = (
        CheckinList(id="l-arena", name="Arena", zone="arena", rules=rule, allow_reentry=True),
        CheckinList(id="l-backstage", name="Backstage", zone="backstage", gates=frozenset({"B"})),
    )
    scans = [scan(minute, zone, direction) for minute, zone, direction in history]
    shuffled = data.draw(st.permutations(scans))
    now = T0 + timedelta(minutes=601)
    results = [
        decide(
            plan(*lists),
            gate=gate,
            direction=direction,
            ticket=STAFF,
            history=order,
            now=now,
        )
        for gate in ("Main", "B")
        for direction in Direction
        for order in (scans, shuffled)
    ]
    for first, second in zip(results[::2], results[1::2], strict=True):
        assert first == second
    for decision in results:
        assert decision is not None
        if decision.refusal is not None:
            assert decision.refusal.reason in {
                VerdictReason.RULE_FAILED,
                VerdictReason.ALREADY_CHECKED_IN,
            }
    exits = results[2:4] + results[6:8]
    assert all(decision is not None and decision.admitted for decision in exits)


# --- wire ----------------------------------------------------------------------------------------


def decode(body: bytes) -> wire.CheckinListCreate:
    return msgspec.json.decode(body, type=wire.CheckinListCreate)


def test_a_list_create_request_reads() -> None:
    request = decode(
        b'{"name": "VIP", "ticket_type_ids": ["tt-vip"], "gates": ["VIP"], "zone": "lounge",'
        b' "rules": {"<": [{"var": "entries_today"}, 1]}}'
    )
    assert request.rules == {"<": [{"var": "entries_today"}, 1]}
    assert request.allow_reentry is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"name": ""}', "$.name"),
        (b'{"name": "a\\nb"}', "$.name"),
        (b'{"name": "a", "gates": [""]}', "$.gates[0]"),
        (b'{"name": "a", "zone": 5}', "$.zone"),
        (b'{"name": "a", "rules": ' + b"[" * 40 + b"]" * 40 + b"}", "$.rules"),
        (b'{"name": "a", "rules": {"var": "' + b"x" * 300 + b'"}}', "$.rules"),
        (b'{"name": "a", "windows": [{"opens_at": "2026-06-06T10:00:00"}]}', "opens_at"),
        (
            b'{"name": "a", "windows": [{"opens_at": "2026-06-06T10:00:00Z",'
            b' "closes_at": "2026-06-06T09:00:00Z"}]}',
            "closes_at",
        ),
    ],
)
def test_a_bad_list_is_refused_naming_the_field(body: bytes, field: str) -> None:
    with pytest.raises(
        msgspec.ValidationError, match=field.replace("$", r"\$").replace("[", r"\[")
    ):
        decode(body)


def test_a_list_from_the_wire_decides_as_given() -> None:
    out = wire.CheckinListOut(
        id=uuid.UUID(int=1),
        event_id=uuid.UUID(int=2),
        name="VIP",
        ticket_type_ids=["tt-vip"],
        gates=["VIP"],
        windows=[wire.CheckinWindow(opens_at=T0, closes_at=T0 + timedelta(hours=1))],
        rules={"<": [{"var": "entries_today"}, 1]},
    )
    decoded = msgspec.json.decode(msgspec.json.encode(out), type=wire.CheckinListOut)
    checkin_list = checkin_list_from_wire(decoded)
    assert checkin_list.gates == frozenset({"VIP"})
    assert checkin_list.windows[0].contains(T0)
    assert not checkin_list.windows[0].contains(T0 + timedelta(hours=1))
    assert checkin_list.rules == {"<": [{"var": "entries_today"}, 1]}


def test_an_event_day_session_needs_both_ends() -> None:
    with pytest.raises(msgspec.ValidationError, match="both"):
        msgspec.json.decode(
            b'{"date": "2026-06-06", "starts_at": "2026-06-06T20:00:00Z"}', type=wire.EventDayIn
        )
    day = msgspec.json.decode(b'{"date": "2026-06-06", "name": "Sat"}', type=wire.EventDayIn)
    assert event_day_from_wire(day).label == "Sat"


def test_the_zone_scans_are_kept_in_does_not_change_the_decision_even_in_a_dst_fold() -> None:
    # Berlin, 25 October 2026: 00:30 UTC is 02:30 CEST, 01:10 UTC is 02:10 CET — the wall clock
    # runs backwards, so times of that zone compared as they are would put the exit first.
    arena = CheckinList(id="l-arena", name="Arena", zone="arena", allow_reentry=True)
    history_utc = [
        AdmittedScan(uuid.UUID(int=1), datetime(2026, 10, 25, 0, 30, tzinfo=UTC), Direction.ENTRY,
                     list_id="l-arena", zone="arena"),
        AdmittedScan(uuid.UUID(int=2), datetime(2026, 10, 25, 1, 10, tzinfo=UTC), Direction.EXIT,
                     list_id="l-arena", zone="arena"),
    ]  # fmt: skip
    history_berlin = [dataclasses.replace(s, at=s.at.astimezone(BERLIN)) for s in history_utc]
    now = datetime(2026, 10, 25, 1, 20, tzinfo=UTC)
    decisions = [
        decide(
            plan(arena),
            gate="Main",
            direction=Direction.ENTRY,
            ticket=STAFF,
            history=history,
            now=when,
        )
        for history, when in ((history_utc, now), (history_berlin, now.astimezone(BERLIN)))
    ]
    assert decisions[0] == decisions[1]
    assert decisions[0] is not None
    assert decisions[0].admitted  # entered, left, re-entry allowed
    assert where_inside(history_berlin) is None


@pytest.mark.parametrize(
    "shape", [wire.CheckinListCreate, wire.CheckinListOut, wire.CheckinWindow, wire.EventDayIn]
)
def test_the_wire_forms_have_a_json_schema_for_the_api_docs(shape: type) -> None:
    schema = msgspec.json.schema(shape)
    assert shape.__name__ in schema["$defs"]


@pytest.mark.parametrize(
    "name",
    ["", "Mars/Olympus", "../../etc/passwd", "/etc/localtime", "Europe/Berlin\x00", "x" * 300],
)
def test_a_time_zone_that_is_none_is_a_clear_error(name: str) -> None:
    with pytest.raises(ValueError, match="IANA"):
        event_zone(name)


def test_a_time_zone_by_its_iana_name() -> None:
    assert event_zone("Europe/Berlin") == BERLIN


@pytest.mark.parametrize(
    ("gates", "phrase"),
    [
        (["VIP"], "the VIP gate"),
        (["East Gate"], "East Gate"),
        (["Gate A", "Gate B", "Gate C"], "Gate A, Gate B or Gate C"),
        (["Main", "North"], "the Main or North gate"),
    ],
)
def test_not_on_list_names_the_gates_as_staff_say_them(gates: list[str], phrase: str) -> None:
    ga = TicketKind(id="tt-ga", name="General admission")
    event = EventPlan(
        tz=BERLIN,
        lists=(
            CheckinList(
                id="l-vip",
                name="VIP",
                ticket_type_ids=frozenset({"tt-vip"}),
                gates=frozenset({"VIP gate"}),
            ),
            CheckinList(
                id="l-ga", name="GA", ticket_type_ids=frozenset({"tt-ga"}), gates=frozenset(gates)
            ),
        ),
    )
    decision = decide(
        event, gate="VIP gate", direction=Direction.ENTRY, ticket=ga, history=[], now=T0
    )
    assert decision is not None
    assert decision.refusal is not None
    assert decision.refusal.sentence == f"General admission tickets enter at {phrase}."


# --- double entries per zone (the server's conflicts on upload and annul) ---------------------


def _zone_scan(n: int, minute: int, direction: Direction, list_id: str, zone: str) -> AdmittedScan:
    return AdmittedScan(
        scan_id=uuid.UUID(int=n),
        at=datetime(2026, 6, 6, 20, minute, tzinfo=UTC),
        direction=direction,
        list_id=list_id,
        zone=zone,
    )


def _zones_plan(*, arena_reentry: bool, arena_multiple: bool = False) -> EventPlan:
    return EventPlan(
        tz=ZoneInfo("UTC"),
        lists=(
            CheckinList(
                id="l-arena",
                name="Arena",
                zone="arena",
                allow_reentry=arena_reentry,
                allow_multiple_entries=arena_multiple,
            ),
            CheckinList(id="l-back", name="Backstage", zone="backstage", allow_reentry=True),
        ),
    )


def test_a_move_between_zones_is_no_double_entry() -> None:
    scans = [
        _zone_scan(1, 0, Direction.ENTRY, "l-arena", "arena"),
        _zone_scan(2, 10, Direction.ENTRY, "l-back", "backstage"),
        _zone_scan(3, 20, Direction.ENTRY, "l-arena", "arena"),  # back into the arena: a re-entry
    ]
    plan = _zones_plan(arena_reentry=True)
    assert zone_conflicts(scans, plan, allow_reentry=False) == {}
    # Without re-entry into the arena, coming back from backstage is a second entry there.
    no_reentry = _zones_plan(arena_reentry=False)
    assert zone_conflicts(scans, no_reentry, allow_reentry=False) == {
        uuid.UUID(int=3): uuid.UUID(int=1)
    }


def test_two_entries_into_one_zone_collide_unless_the_list_allows_many() -> None:
    scans = [
        _zone_scan(1, 0, Direction.ENTRY, "l-arena", "arena"),
        _zone_scan(2, 5, Direction.ENTRY, "l-arena", "arena"),
    ]
    assert zone_conflicts(scans, _zones_plan(arena_reentry=True), allow_reentry=True) == {
        uuid.UUID(int=2): uuid.UUID(int=1)
    }
    many = _zones_plan(arena_reentry=True, arena_multiple=True)
    assert zone_conflicts(scans, many, allow_reentry=True) == {}
