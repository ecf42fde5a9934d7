"""Exponential backoff with jitter, for loops that wait out a dependency (the broker, the
database, a scanner's server) and must not hammer it — nor wake in lockstep with their siblings
— when it returns.

A library (tenacity, backoff) retries one *call*; the relay, the consumers and the scanner's
sync engine are long-lived loops that keep the backoff's state across iterations (the scanner
even across restarts, in its store) and reset it when work succeeds, which these few lines say
more plainly than a decorator would.
"""

from __future__ import annotations

import random


def backoff_delay(failures_before: int, initial: float, maximum: float) -> float:
    """The wait after one more failure when ``failures_before`` came before it in a row:
    ``initial`` × 2ⁿ capped at ``maximum``, scaled by a random 50-100 %."""
    ceiling: float = min(maximum, initial * 2.0 ** min(failures_before, 30))
    jitter: float = random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret
    return ceiling * jitter


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
        delay = backoff_delay(self._failures, self._initial, self._maximum)
        self._failures += 1
        return delay

    def reset(self) -> None:
        """Back to ``initial``: the dependency answered."""
        self._failures = 0

    @property
    def failures(self) -> int:
        return self._failures
