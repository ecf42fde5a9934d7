from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared import wire
from shared.domain import Direction
from shared.timeline import AdmittedScan, prior_scan, replay

T0 = datetime(2030, 5, 1, 19, 0, tzinfo=UTC)


def _scan(minute: int, direction: Direction = Direction.ENTRY, gate: str = "") -> AdmittedScan:
    return AdmittedScan(uuid.uuid4(), T0 + timedelta(minutes=minute), direction, gate=gate)


def test_the_earliest_entry_wins_whatever_order_scans_arrive_in() -> None:
    early, late = _scan(1), _scan(5)
    for order in ([early, late], [late, early]):
        timeline = replay(order, allow_reentry=False)
        assert timeline.conflicts == {late.scan_id: early.scan_id}
        assert timeline.inside_on == early.scan_id


def test_reentry_after_an_exit_depends_on_the_event() -> None:
    entry, out, back = _scan(1), _scan(2, Direction.EXIT), _scan(3)
    allowed = replay([entry, out, back], allow_reentry=True)
    assert allowed.conflicts == {}
    assert allowed.inside_on == back.scan_id
    refused = replay([entry, out, back], allow_reentry=False)
    assert refused.conflicts == {back.scan_id: entry.scan_id}
    assert not refused.inside


def test_a_new_entry_is_told_what_it_collides_with() -> None:
    entry = _scan(1)
    assert replay([], allow_reentry=False).entry_collides_with(False) is None
    assert replay([entry], allow_reentry=True).entry_collides_with(True) == entry.scan_id
    gone = replay([entry, _scan(2, Direction.EXIT)], allow_reentry=False)
    assert gone.entry_collides_with(False) == entry.scan_id
    assert gone.entry_collides_with(True) is None


def test_a_refused_entry_names_the_admission_it_collides_with_as_prior() -> None:
    device = uuid.uuid4()
    entry = AdmittedScan(uuid.uuid4(), T0, Direction.ENTRY, gate="North 1", device_id=device)
    double = _scan(1, gate="South 2")  # a conflict of ``entry``: it never names itself
    prior = prior_scan([double, entry], allow_reentry=False)
    assert prior == wire.PriorScan(
        scan_id=entry.scan_id, scanned_at=T0, gate="North 1", device_id=device
    )
    assert prior_scan([], allow_reentry=False) is None
    out = _scan(2, Direction.EXIT)
    # After an exit: the first admission still bars a re-entry, unless the event allows it.
    assert prior_scan([entry, double, out], allow_reentry=False) == prior
    assert prior_scan([entry, double, out], allow_reentry=True) is None
    back = _scan(3, gate="East 3")
    again = prior_scan([entry, out, back], allow_reentry=True)
    assert again is not None
    assert (again.scan_id, again.gate) == (back.scan_id, "East 3")


@given(st.lists(st.tuples(st.integers(0, 600), st.booleans()), max_size=30), st.booleans())
def test_replay_does_not_depend_on_arrival_order(
    points: list[tuple[int, bool]], allow_reentry: bool
) -> None:
    scans = [_scan(m, Direction.ENTRY if e else Direction.EXIT) for m, e in points]
    forward = replay(scans, allow_reentry=allow_reentry)
    backward = replay(list(reversed(scans)), allow_reentry=allow_reentry)
    assert forward == backward
    # Never two admissions inside at once: every entry while inside is a conflict.
    entries = [s for s in scans if s.direction is Direction.ENTRY]
    assert len(entries) - len(forward.conflicts) >= (1 if entries else 0)


def _online(minute: int) -> AdmittedScan:
    return AdmittedScan(uuid.uuid4(), T0 + timedelta(minutes=minute), Direction.ENTRY, online=True)


def test_an_offline_claim_dated_before_an_online_admission_is_the_conflict() -> None:
    claim, echo, admitted = _scan(1), _scan(2), _online(5)
    for order in ([claim, echo, admitted], [admitted, echo, claim]):
        timeline = replay(order, allow_reentry=False)
        # The claim and the entry that collided with it both give way to the online admission.
        assert timeline.conflicts == {
            claim.scan_id: admitted.scan_id,
            echo.scan_id: admitted.scan_id,
        }
        assert timeline.inside_on == timeline.first_entry == admitted.scan_id


def test_an_online_admission_still_yields_to_an_earlier_online_one() -> None:
    first, second = _online(1), _online(2)
    timeline = replay([second, first], allow_reentry=False)
    assert timeline.conflicts == {second.scan_id: first.scan_id}


def test_an_offline_admission_after_an_exit_is_still_a_reentry() -> None:
    admitted, out, back = _online(1), _scan(2, Direction.EXIT), _scan(3)
    timeline = replay([admitted, out, back], allow_reentry=True)
    assert timeline.conflicts == {}
    assert timeline.inside_on == back.scan_id
    # Without re-entry, an online admission displaces an offline first entry behind an exit.
    claim, out, admitted = _scan(1), _scan(2, Direction.EXIT), _online(3)
    timeline = replay([claim, out, admitted], allow_reentry=False)
    assert timeline.conflicts == {claim.scan_id: admitted.scan_id}
    assert timeline.first_entry == admitted.scan_id


@given(
    st.lists(st.tuples(st.integers(0, 600), st.sampled_from(["in", "online", "out"])), max_size=30),
    st.booleans(),
)
def test_no_offline_claim_makes_an_online_admission_a_conflict(
    points: list[tuple[int, str]], allow_reentry: bool
) -> None:
    scans = [
        _online(m)
        if kind == "online"
        else _scan(m, Direction.EXIT if kind == "out" else Direction.ENTRY)
        for m, kind in points
    ]
    online = {s.scan_id for s in scans if s.online}
    timeline = replay(scans, allow_reentry=allow_reentry)
    assert timeline == replay(list(reversed(scans)), allow_reentry=allow_reentry)
    for loser, winner in timeline.conflicts.items():
        assert winner not in timeline.conflicts  # a conflict names an admission that stands
        assert not (loser in online and winner not in online)
    # The online admissions fare exactly as among themselves and the exits: offline entries
    # change nothing for them.
    alone = replay(
        [s for s in scans if s.online or s.direction is Direction.EXIT], allow_reentry=allow_reentry
    )
    assert {s for s in timeline.conflicts if s in online} == set(alone.conflicts)
