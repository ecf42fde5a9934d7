"""Exponential backoff with jitter, for loops that wait out a dependency (the broker, the
database) and must not hammer it — nor wake in lockstep with their siblings — when it returns.

A library (tenacity, backoff) retries one *call*; the relay and the consumers are long-lived
loops that keep the backoff's state across iterations and reset it when work succeeds, which
these few lines say more plainly than a decorator would.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays of ``initial`` × 2ⁿ, capped at ``maximum``, each scaled by a random 50-100 %."""

    def __init__(self, initial: float = 0.2, maximum: float = 10.0) -> None:
        if not 0 < initial <= maximum:
            raise ValueError("backoff needs 0 < initial <= maximum")
        self._initial = initial
        self._maximum = maximum
        self._failures = 0

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one more failure."""
        ceiling: float = min(self._maximum, self._initial * 2.0 ** min(self._failures, 30))
        self._failures += 1
        jitter: float = random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret
        return ceiling * jitter

    def reset(self) -> None:
        """Back to ``initial``: the dependency answered."""
        self._failures = 0

    @property
    def failures(self) -> int:
        return self._failures
