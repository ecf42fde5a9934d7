"""One base for the server's long-lived background loops: the outbox relay
(:mod:`sync_server.messaging.relay`), the consumers (:mod:`sync_server.messaging.consumers`),
the chain listener (:mod:`sync_server.domain.chain.listener`) and the chain tracker
(:mod:`sync_server.domain.chain.tracker`).

Each of them works against a dependency that may go away (the broker, the database, the Solana
node) and must wait it out rather than fail. What they share lives here, once:

* :meth:`BackgroundLoop.run` calls the loop's :meth:`~BackgroundLoop._attempt` (one connection,
  or one poll) until :meth:`~BackgroundLoop.stop`; whatever an attempt raises is handed to
  :meth:`~BackgroundLoop._failed` and waited out with exponential backoff with jitter, capped
  (:class:`shared.backoff.Backoff`), so siblings do not reconnect in lockstep. Only cancellation
  ends ``run`` otherwise.
* :class:`LoopStats` is the typed snapshot every loop extends with its own counters; its
  :class:`LoopState` says whether the loop is working, waiting out an outage or stopped.
* :func:`describe` is how an error is named in stats and logs: its type and the first line of
  its message, with credentials in URLs masked (a broker URL carries a password, an RPC
  provider's URL often an API key).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from shared.backoff import Backoff
from sync_server.observability.redaction import redact

log = logging.getLogger(__name__)


class LoopState(enum.StrEnum):
    """Where a background loop is."""

    #: Not working yet: starting, connecting, or connected and catching up (a backfill).
    STARTING = "starting"
    #: Working: connected to its dependency (or its last poll succeeded).
    RUNNING = "running"
    #: In an outage: the last attempt failed, and the loop waits with backoff to try again.
    #: It stays so until an attempt gets back to ``RUNNING``.
    BACKING_OFF = "backing_off"
    #: ``run`` has returned.
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class LoopStats:
    """What every loop's stats say; each loop's own stats extend it with its counters."""

    state: LoopState = LoopState.STARTING
    #: The last failure, as :func:`describe` names it.
    last_error: str | None = None


StatsT = TypeVar("StatsT", bound=LoopStats)


def describe(error: BaseException) -> str:
    """``Type: first line of the message`` (just ``Type`` when it has none), with the secrets
    of URLs masked (``redact``): the one way background loops name an error in their stats and
    logs, so a dependency's URL never leaks a password or an API key there."""
    lines = str(error).strip().splitlines()
    if not lines:
        return type(error).__name__
    return f"{type(error).__name__}: {redact(lines[0])}"


class BackgroundLoop(ABC, Generic[StatsT]):
    """A loop that works until :meth:`stop`, waiting out outages of its dependencies.

    A subclass implements :meth:`_attempt` (one connection, or one poll: it returns when the
    loop is stopping, or raises) and usually :meth:`_failed` (count and log a failure); it may
    acquire what its attempts share in :meth:`_start` and release it in :meth:`_finish`.
    ``label`` names the loop in its log lines.
    """

    def __init__(self, label: str, stats: StatsT, backoff: Backoff) -> None:
        self.label = label
        self._stats = stats
        self._backoff = backoff
        self._stopping = asyncio.Event()

    def stats(self) -> StatsT:
        """Counters and state; cheap, safe to call from any coroutine."""
        return self._stats

    def stop(self) -> None:
        """Ask ``run`` to return once what it holds is finished (or rolled back)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        """Work until ``stop()``. Outages are waited out with backoff, never raised; only
        cancellation ends it otherwise."""
        try:
            await self._start()
            while not self._stopping.is_set():
                try:
                    await self._attempt()
                except Exception as error:  # whatever broke, keep going
                    await self._failed(error)
                    await self._sleep(self._backoff.next_delay())
        finally:
            try:
                await self._finish()
            finally:
                self._set(state=LoopState.STOPPED)
                log.info("%s stopped", self.label)

    # --- what a loop implements -----------------------------------------------------------

    async def _start(self) -> None:
        """Before the first attempt: acquire what every attempt uses."""

    @abstractmethod
    async def _attempt(self) -> None:
        """One connection (or one poll): return when stopping, raise when it breaks."""

    async def _failed(self, error: Exception) -> None:
        """An attempt raised ``error``: by default the loop is marked down and it is logged."""
        if self._mark_down(error):
            log.warning("%s: %s; retrying with backoff", self.label, describe(error))

    async def _finish(self) -> None:
        """After the last attempt (also when cancelled): release what ``_start`` acquired."""

    # --- helpers for loops ----------------------------------------------------------------

    def _mark_down(self, error: BaseException) -> bool:
        """Record a failure: state ``BACKING_OFF`` and ``last_error``. True when it is the
        first failure of an outage (the loop was not backing off already)."""
        first = self._stats.state is not LoopState.BACKING_OFF
        self._set(state=LoopState.BACKING_OFF, last_error=describe(error))
        return first

    def _mark_up(self) -> bool:
        """Record that the loop works (again): state ``RUNNING``. True when it ends an outage.
        The backoff is each loop's to reset (``self._backoff.reset()``) once work succeeded:
        a connection that opens but cannot work must not reset it."""
        recovered = self._stats.state is LoopState.BACKING_OFF
        self._set(state=LoopState.RUNNING)
        return recovered

    def _mark_disconnected(self) -> None:
        """A connection closed: no longer ``RUNNING`` (an outage stays an outage)."""
        if self._stats.state is LoopState.RUNNING:
            self._set(state=LoopState.STARTING)

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less when ``stop()`` is called meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _set(self, **changes: Any) -> None:
        self._stats = replace(self._stats, **changes)
