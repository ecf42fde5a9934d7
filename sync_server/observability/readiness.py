"""Readiness: can this instance do its job? One probe per dependency, run together, each with
a short timeout, the answer kept for ``CACHE_SECONDS`` so ``/ready`` and ``/metrics`` cannot be
used to hammer Postgres, Redis or RabbitMQ.

Only Postgres is required: check-in, uploads and purchases need it and nothing else (the spec:
"Redis being down must not stop check-in"; events wait in the outbox while RabbitMQ is away).
So the instance is *ready* with everything up, *degraded* (still HTTP 200, still routable) when
Redis or RabbitMQ is down, and *not ready* (HTTP 503) only without Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal, Protocol

import aio_pika
import msgspec
from aio_pika.abc import AbstractConnection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

#: Set while the AMQP probe connects: aiormq logs every failed connection attempt at ERROR, and
#: a probe every few seconds while RabbitMQ is away would repeat it; the probe reports the
#: outage once itself. Other aiormq users (the worker's relay) keep their log lines.
_probing_amqp: ContextVar[bool] = ContextVar("gatehouse_probing_amqp", default=False)


class _NotWhileProbing(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _probing_amqp.get()


_AMQP_QUIET = _NotWhileProbing()

#: How long one answer is reused. Load balancers probe every few seconds per instance; this
#: bounds the dependency traffic per worker process at one round of probes per period.
CACHE_SECONDS = 2.0

Status = Literal["up", "down"]
Overall = Literal["ready", "degraded", "not_ready"]


class DependencyReport(msgspec.Struct, kw_only=True, frozen=True):
    status: Status
    #: Whether this instance is not ready without it (only Postgres is).
    required: bool
    #: How long the probe took, including a failure's time-out.
    latency_ms: float
    #: Why it is down, in a few words; never an address or a password.
    error: str | None = None


class ReadinessReport(msgspec.Struct, kw_only=True, frozen=True):
    status: Overall
    checks: dict[str, DependencyReport]
    checked_at: datetime

    @property
    def http_status(self) -> int:
        return 503 if self.status == "not_ready" else 200


class NotUsable(Exception):
    """A dependency answers but this server cannot work with it; the message is a sentence for
    the operator and is reported as it is."""


class Probe(Protocol):
    """Asks one dependency whether it answers. ``check`` raises (or returns False) when not;
    the caller bounds it with a timeout. ``reset`` forgets a connection that may be broken."""

    name: str
    required: bool

    async def check(self) -> bool | None: ...

    async def reset(self) -> None: ...

    async def close(self) -> None: ...


class PostgresProbe:
    """``SELECT 1`` through the application's pool: the same path every request takes; then
    ``schema_problem`` (``sync_server.db.migrate``), so a schema the migrations have not
    reached makes the instance not ready, with the sentence that says what to do."""

    name = "postgres"
    required = True

    def __init__(
        self,
        engine: AsyncEngine,
        schema_problem: Callable[[AsyncConnection], Awaitable[str | None]] | None = None,
    ) -> None:
        self._engine = engine
        self._schema_problem = schema_problem

    async def check(self) -> bool | None:
        async with self._engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")
            if self._schema_problem is not None:
                problem = await self._schema_problem(connection)
                if problem is not None:
                    raise NotUsable(problem)
        return True

    async def reset(self) -> None:
        """Nothing to do: the pool's pre-ping discards dead connections."""

    async def close(self) -> None:
        """The pool belongs to the app's database."""


class RedisProbe:
    """``PING`` through the server's shared Redis link (``RedisLink.ping``, which never
    raises): a probe that gets an answer also tells the link that Redis is back."""

    name = "redis"
    required = False

    def __init__(self, ping: Callable[[], Awaitable[bool]]) -> None:
        self._ping = ping

    async def check(self) -> bool | None:
        return await self._ping()

    async def reset(self) -> None:
        """The link drops a connection whose command failed."""

    async def close(self) -> None:
        """Nothing to close: the app factory owns the link and closes it at shutdown."""


class AmqpProbe:
    """Opens and closes a channel on a connection it keeps, so a probe is one round trip and
    RabbitMQ's log is not filled with a connection per probe. A failed probe drops the
    connection (it may be half dead) and the next one connects afresh."""

    name = "rabbitmq"
    required = False

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        self._url = url
        self._timeout = timeout
        self._connection: AbstractConnection | None = None
        self._closing: set[asyncio.Task[None]] = set()
        aiormq_log = logging.getLogger("aiormq.connection")
        if _AMQP_QUIET not in aiormq_log.filters:
            aiormq_log.addFilter(_AMQP_QUIET)

    async def check(self) -> bool | None:
        if self._connection is None or self._connection.is_closed:
            token = _probing_amqp.set(True)
            try:
                self._connection = await aio_pika.connect(
                    self._url,
                    timeout=self._timeout,
                    client_properties={"connection_name": "gatehouse readiness probe"},
                )
            finally:
                _probing_amqp.reset(token)
        channel = await self._connection.channel(publisher_confirms=False)
        await channel.close()
        return True

    async def reset(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # Closed in the background: closing a half-dead connection can itself hang.
            task = asyncio.get_running_loop().create_task(self._close(connection))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _close(self, connection: AbstractConnection) -> None:
        with contextlib.suppress(Exception, asyncio.TimeoutError):
            async with asyncio.timeout(self._timeout):
                await connection.close()

    async def close(self) -> None:
        await self.reset()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class Readiness:
    """Runs the probes together and keeps the answer for ``cache_seconds``. Concurrent callers
    share one round of probes."""

    def __init__(
        self,
        probes: Sequence[Probe],
        *,
        timeout: float = 2.0,
        cache_seconds: float = CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.probes = list(probes)
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._lock = asyncio.Lock()
        self._last: ReadinessReport | None = None
        self._last_at = 0.0
        self._was_up: dict[str, bool] = {}

    async def report(self) -> ReadinessReport:
        """The current report (probing at most once per ``cache_seconds``). Never raises."""
        async with self._lock:
            if self._last is not None and self._monotonic() - self._last_at < self._cache_seconds:
                return self._last
            results = await asyncio.gather(*(self._probe(p) for p in self.probes))
            checks = dict(zip((p.name for p in self.probes), results, strict=True))
            if any(r.required and r.status == "down" for r in checks.values()):
                overall: Overall = "not_ready"
            elif any(r.status == "down" for r in checks.values()):
                overall = "degraded"
            else:
                overall = "ready"
            self._last = ReadinessReport(
                status=overall, checks=checks, checked_at=datetime.now(UTC)
            )
            self._last_at = self._monotonic()
            return self._last

    async def _probe(self, probe: Probe) -> DependencyReport:
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            async with asyncio.timeout(self._timeout):
                answered = await probe.check()
        except Exception as raised:  # any failure means "down"; the reason is reported
            error = raised
        else:
            if answered is False:
                error = ConnectionError("did not answer")
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        up = error is None
        if not up:
            await probe.reset()
        self._log_change(probe, up, error)
        return DependencyReport(
            status="up" if up else "down",
            required=probe.required,
            latency_ms=latency_ms,
            error=None if error is None else self._why(error),
        )

    def _log_change(self, probe: Probe, up: bool, error: BaseException | None) -> None:
        """Log when a dependency goes down or comes back, not on every probe."""
        was = self._was_up.get(probe.name)
        self._was_up[probe.name] = up
        if up and was is False:
            log.info("readiness: %s answers again", probe.name)
        elif not up and was is not False:
            log.warning(
                "readiness: %s is down (%s: %s)",
                probe.name,
                type(error).__name__,
                error,
            )

    def _why(self, error: BaseException) -> str:
        if isinstance(error, DBAPIError) and error.orig is not None:
            error = error.orig
        if isinstance(error, TimeoutError):
            return f"no answer within {self._timeout:g} s"
        if _refused(error):
            return "connection refused"
        if isinstance(error, ConnectionError) and str(error) == "did not answer":
            return "did not answer"
        if isinstance(error, NotUsable):
            return str(error)
        return type(error).__name__

    async def close(self) -> None:
        for probe in self.probes:
            with contextlib.suppress(Exception):
                await probe.close()


def _refused(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is a refused connection. The drivers wrap it in
    their own errors, some keeping the cause, some only its text."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError) or (
            isinstance(seen, OSError) and seen.errno == errno.ECONNREFUSED
        ):
            return True
        text = str(seen).lower()
        if "refused" in text or "connect call failed" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
