"""Times in the store are integers: microseconds since the Unix epoch, UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(when: datetime) -> int:
    """Raises ``ValueError`` for a naive datetime (its zone would be a guess)."""
    if when.tzinfo is None:
        raise ValueError("store times must be timezone-aware")
    return (when - _EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def opt_micros(when: datetime | None) -> int | None:
    return None if when is None else to_micros(when)


def opt_datetime(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)
