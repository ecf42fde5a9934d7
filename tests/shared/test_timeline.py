from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared.domain import Direction
from shared.timeline import AdmittedScan, replay

T0 = datetime(2030, 5, 1, 19, 0, tzinfo=UTC)


def _scan(minute: int, direction: Direction = Direction.ENTRY) -> AdmittedScan:
    return AdmittedScan(uuid.uuid4(), T0 + timedelta(minutes=minute), direction)


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
