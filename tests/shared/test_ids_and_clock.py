from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.clock import ManualClock, SystemClock
from shared.ids import id_time, new_id


def test_new_ids_are_uuid7_and_sort_by_creation() -> None:
    ids = [new_id() for _ in range(1000)]
    assert all(isinstance(i, uuid.UUID) and i.version == 7 for i in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_id_time_is_when_the_id_was_minted() -> None:
    before = datetime.now(UTC)
    minted = id_time(new_id())
    after = datetime.now(UTC)
    assert before - timedelta(milliseconds=1) <= minted <= after


def test_id_time_refuses_other_uuid_versions() -> None:
    with pytest.raises(ValueError, match="version 4"):
        id_time(uuid.uuid4())


def test_system_clock_is_utc_aware() -> None:
    now = SystemClock().now()
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(datetime(2026, 5, 1, 19, 0, tzinfo=UTC))
    assert clock.now() == clock.now() == datetime(2026, 5, 1, 19, 0, tzinfo=UTC)
    clock.advance(90)
    assert clock.now() == datetime(2026, 5, 1, 19, 1, 30, tzinfo=UTC)
    assert clock.monotonic() == 90
    clock.set(datetime(2026, 5, 1, 18, 0, tzinfo=UTC))  # wall clock jumps back (NTP)...
    assert clock.monotonic() == 90  # ...the monotonic clock does not
    with pytest.raises(ValueError, match="forwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2026, 5, 1))
