"""The server's one Redis connection pool, and what happens when Redis is away.

Redis only makes the server faster and fairer (rate limits, the ticket cache, shared circuit
breakers); nothing that admits people depends on it. So every command goes through
``RedisLink.run``, which never raises: it answers ``UNAVAILABLE`` when Redis does not answer
within a short timeout, and callers fall back (limits open or local, cache skipped, breakers
local). The first failure marks Redis down and logs once; from then on requests skip Redis
entirely (no timeout per request) while a background task pings it every second, and the
first answer marks it up again, logged once, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import MaxConnectionsError, RedisError

from sync_server.settings import RedisSettings

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: How often a down Redis is asked whether it is back.
RECOVERY_INTERVAL_SECONDS: Final = 1.0
#: The least time a new connection gets (commands get ``GATEHOUSE_REDIS_TIMEOUT``).
CONNECT_TIMEOUT_SECONDS: Final = 1.0
#: Connections per process at most (one per command in flight). redis-py's default of 100
#: raised "Too many connections" at 3,000 concurrent commands; past this limit a request goes
#: without Redis, but Redis is not marked down for it.
MAX_CONNECTIONS: Final = 1000


class Unavailable(enum.Enum):
    """The answer of a command that Redis did not (or was not asked to) answer."""

    UNAVAILABLE = "unavailable"


UNAVAILABLE: Final = Unavailable.UNAVAILABLE

#: What callers hear after Redis is back, to redo what they skipped (ticket invalidations).
RecoveryListener = Callable[[], Awaitable[object]]


class RedisLink:
    """The Redis client with health tracking. Constructing it connects nothing."""

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.prefix = settings.key_prefix
        # redis-py retries a refused connection three times with backoff by default: measured
        # 3.4 s per command against a stopped Redis. No retries and short timeouts make a
        # stopped Redis cost ~1 ms and a hung one one timeout, once.
        # Not redis-py's BlockingConnectionPool: its asyncio.Condition binds to the first event
        # loop that waits on it, and tests (and any embedding) may run the app in another.
        pool = ConnectionPool.from_url(
            settings.url,
            socket_timeout=settings.timeout_seconds,
            # Opening a hundred connections at once in a busy process took longer than a
            # command's timeout (measured: "Timeout connecting" at 120 at once, 0.25 s, on this
            # 2-core machine under load). A stopped Redis refuses within a millisecond anyway;
            # only an unreachable host costs this, once.
            socket_connect_timeout=max(settings.timeout_seconds, CONNECT_TIMEOUT_SECONDS),
            retry=Retry(NoBackoff(), 0),
            max_connections=MAX_CONNECTIONS,
        )
        self.client: Redis = Redis(connection_pool=pool)
        self._down_since: float | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._listeners: list[RecoveryListener] = []

    # --- state ------------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        """False from the first failed command until Redis answers again."""
        return self._down_since is None

    def key(self, name: str) -> str:
        """``name`` with the configured prefix (empty in production; per test run in tests)."""
        return self.prefix + name

    def on_recovery(self, listener: RecoveryListener) -> None:
        """Call ``listener`` each time Redis answers again after being down."""
        self._listeners.append(listener)

    # --- commands ---------------------------------------------------------------------------

    async def run(self, command: Callable[[Redis], Awaitable[_T]]) -> _T | Unavailable:
        """``command(client)``'s answer, or ``UNAVAILABLE`` when Redis is down or fails now.
        Never raises for Redis's sake (errors in ``command``'s own logic still propagate)."""
        if not self.up:
            return UNAVAILABLE
        try:
            return await command(self.client)
        except (RedisError, OSError, TimeoutError) as error:
            if _pool_busy(error):
                return UNAVAILABLE  # this process is busy, Redis is fine: skip it this once
            self.mark_down(error)
            return UNAVAILABLE

    async def ping(self) -> bool:
        """Ask Redis now, even while it is marked down (for readiness). Never raises."""
        try:
            await self.client.ping()
        except (RedisError, OSError, TimeoutError) as error:
            self.mark_down(error)
            return False
        await self._mark_up()
        return True

    def mark_down(self, error: BaseException) -> None:
        """Note a failure: log it once, skip Redis from now on, and start asking whether it is
        back."""
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "Redis at %s is not answering (%s: %s): rate limits fall back to this "
                "process, the ticket cache is skipped, circuit breakers are local until it "
                "is back",
                self._where(),
                type(error).__name__,
                error,
            )
        if self._recovery is None or self._recovery.done():
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to schedule
                self._recovery = asyncio.get_running_loop().create_task(self._recover())

    async def _mark_up(self) -> None:
        if self._down_since is None:
            return
        # Connections pooled before the outage are dead (a restarted Redis closed them); each
        # would fail once and mark Redis down again. Nothing else runs commands while it is
        # marked down, so they can all go now.
        with contextlib.suppress(RedisError, OSError):
            await self.client.connection_pool.disconnect()
        away = time.monotonic() - self._down_since
        self._down_since = None
        log.info("Redis at %s answers again after %.1f s", self._where(), away)
        for listener in self._listeners:
            try:
                await listener()
            except Exception:  # a listener's bug must not stop the others
                log.exception("Redis recovery listener failed")

    async def _recover(self) -> None:
        while not self.up:
            await asyncio.sleep(RECOVERY_INTERVAL_SECONDS)
            try:
                await self.client.ping()
            except (RedisError, OSError, TimeoutError):
                continue
            await self._mark_up()

    def _where(self) -> str:
        kwargs = self.client.connection_pool.connection_kwargs
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
        await self.client.aclose()


def _pool_busy(error: BaseException) -> bool:
    """No free connection in this process's pool (rather than Redis failing)."""
    return isinstance(error, MaxConnectionsError)
