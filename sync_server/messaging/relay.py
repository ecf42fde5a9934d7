"""The outbox relay: publishes committed outbox rows to the ``tickets`` exchange, each exactly
when its transaction committed and never for one that rolled back (the rows are written in the
same transaction as the change they report; see ``outbox.py``).

How one batch goes, in one database transaction:

1. claim up to ``batch_size`` unsent rows with ``FOR UPDATE SKIP LOCKED``, so several relays
   (one per worker process) share the work without waiting on each other;
2. publish each (persistent, ``message_id`` = event id) and wait for the broker's publisher
   confirm;
3. set ``sent_at`` on the confirmed rows, still holding their locks, and commit.

A crash or a lost broker between 2 and 3 rolls the transaction back, and the rows are published
again later: delivery is *at least once*, and consumers deduplicate by event id.

**Order per ticket.** A row is claimed only when no earlier unsent row of its ticket exists
(earlier = smaller ``seq``, drawn under the ticket's row lock, so it is the order in which the
changes committed). While one relay holds a ticket's oldest row, that row still looks unsent to
every other relay, so none of them can take the ticket's next event; it becomes claimable only
after the earlier one is confirmed and marked sent. A batch therefore holds at most one event
per ticket, and may publish its rows concurrently. The cost: a ticket with *n* waiting events
needs *n* batches to catch up — many tickets catch up in parallel, one ticket's burst does not.
A row the broker keeps refusing holds back the later events of its ticket (and only those); its
``attempts`` count grows and the relay logs it.

**Who reads the outbox.** The relay connects as ``gatehouse_relay`` (migration 0005): a
non-superuser role without ``BYPASSRLS``, whose only rights are to read the outbox of every
tenant (a row-level-security policy for that role alone) and to set ``sent_at``/``attempts``.
The application role's view stays one tenant wide.

**Waking up.** An insert into the outbox sends ``NOTIFY gatehouse_outbox`` at commit; the relay
``LISTEN``s on its own connection and claims at once. It also polls every ``poll_interval``
seconds, so a lost notification or listener connection only delays, never strands, a row.

**Outages.** When the broker (or the database) is away the relay backs off exponentially with
jitter, up to ``backoff_max`` seconds between attempts, and catches up once it answers: rows
simply wait in the outbox meanwhile. ``stats()`` tells how far behind it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from aio_pika.abc import AbstractExchange
from aio_pika.exceptions import DeliveryError
from sqlalchemy import Row, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.backoff import Backoff
from sync_server.background import BackgroundLoop, LoopState, LoopStats, describe
from sync_server.messaging.broker import connect, declare_tickets_exchange, event_message
from sync_server.messaging.outbox import OutboxBacklog, outbox_backlog

log = logging.getLogger(__name__)

#: The channel migration 0005's trigger notifies on every insert into the outbox.
NOTIFY_CHANNEL = "gatehouse_outbox"

_CLAIM = text(
    """
    SELECT o.id, o.routing_key, o.payload::text AS body, o.payload->>'type' AS event_type,
           o.created_at
    FROM outbox AS o
    WHERE o.sent_at IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM outbox AS earlier
          WHERE earlier.sent_at IS NULL
            AND earlier.ticket_id = o.ticket_id
            AND earlier.seq < o.seq
      )
    ORDER BY o.seq
    LIMIT :batch
    FOR UPDATE OF o SKIP LOCKED
    """
)
_MARK_SENT = text("UPDATE outbox SET sent_at = now(), attempts = attempts + 1 WHERE id = ANY(:ids)")
_COUNT_FAILURE = text("UPDATE outbox SET attempts = attempts + 1 WHERE id = ANY(:ids)")


@dataclass(frozen=True, slots=True)
class RelayConfig:
    #: Rows per transaction. Larger batches publish faster; each holds its rows' locks for the
    #: time the broker takes to confirm them all.
    batch_size: int = 100
    #: Seconds between polls when no notification arrives.
    poll_interval: float = 1.0
    #: Seconds to wait for the broker's confirms of a batch before giving the batch up.
    publish_timeout: float = 10.0
    backoff_initial: float = 0.2
    backoff_max: float = 10.0


def _ignore(_: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class RelayHooks:
    """Callbacks for metrics (``stats()`` holds the same numbers as totals)."""

    #: Called with the routing key of each event the broker confirmed and the outbox marked.
    published: Callable[[str], None] = _ignore
    #: Called once per failure with its stage: ``connect`` (broker unreachable), ``publish``
    #: (not confirmed in time, or the broker went away), ``nack`` (the broker refused the
    #: message) or ``database`` (claiming or marking rows failed).
    failed: Callable[[str], None] = _ignore


@dataclass(frozen=True, slots=True)
class RelayStats(LoopStats):
    """A snapshot of one relay, for metrics and logs (``state`` ``running``: connected to the
    broker)."""

    #: Events published and marked sent since start.
    published: int = 0
    #: Publications that failed (not confirmed, refused, or the broker went away mid-batch).
    publish_failures: int = 0
    #: Times the relay lost (or could not reach) the broker or the database and backed off.
    outages: int = 0
    #: Whether the LISTEN connection is up (without it the relay still polls).
    listening: bool = False
    #: The outbox backlog when last measured (every poll interval, also during outages).
    backlog: OutboxBacklog | None = None
    #: ``time.monotonic()`` of that measurement.
    backlog_measured_at: float | None = None

    @property
    def broker_connected(self) -> bool:
        return self.state is LoopState.RUNNING


class _BatchFailed(Exception):
    """Some rows of a batch were not confirmed; the ones that were are marked sent."""


class OutboxRelay(BackgroundLoop[RelayStats]):
    """Relays the outbox to RabbitMQ until ``stop()``. Run several for throughput or
    availability: they never publish a row twice between them, nor a ticket's events out of
    order.

    ``database_url`` is the relay role's connection (``DatabaseSettings.relay_connection_url``).
    """

    def __init__(
        self,
        database_url: str,
        amqp_url: str,
        config: RelayConfig | None = None,
        *,
        name: str = "relay",
        hooks: RelayHooks | None = None,
    ) -> None:
        config = config or RelayConfig()
        super().__init__(name, RelayStats(), Backoff(config.backoff_initial, config.backoff_max))
        self._database_url = database_url
        self._amqp_url = amqp_url
        self._config = config
        self._name = name
        self._hooks = hooks or RelayHooks()
        self._wake = asyncio.Event()
        self._engine: AsyncEngine | None = None
        self._listener: asyncio.Task[None] | None = None

    def stop(self) -> None:
        """Ask ``run`` to return: a batch being published is finished (or rolled back) first."""
        super().stop()
        self._wake.set()

    async def _start(self) -> None:
        self._engine = create_async_engine(
            self._database_url, pool_size=2, max_overflow=0, pool_pre_ping=True
        )
        self._listener = asyncio.create_task(self._listen(), name=f"{self._name}-listen")

    async def _finish(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._engine is not None:
            await self._engine.dispose()

    async def _failed(self, error: Exception) -> None:
        self._outage(error)
        assert self._engine is not None
        await self._measure_backlog(self._engine)

    # --- one broker connection ------------------------------------------------------------

    async def _attempt(self) -> None:
        assert self._engine is not None
        engine = self._engine
        try:
            connection = await connect(self._amqp_url)
        except Exception:
            self._hooks.failed("connect")
            raise
        lost = asyncio.Event()
        connection.close_callbacks.add(lambda *_: lost.set())
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await declare_tickets_exchange(channel)
            self._mark_up()
            log.info("%s connected to the broker", self._name)
            while not self._stopping.is_set():
                # Cleared before the claim: a commit notified during the claim wakes us again.
                self._wake.clear()
                claimed = await self._relay_batch(engine, exchange)
                self._backoff.reset()
                if claimed < self._config.batch_size:
                    await self._measure_backlog(engine)
                    await self._wait_for_work(lost)
        finally:
            self._mark_disconnected()
            with contextlib.suppress(Exception):
                await connection.close()

    async def _relay_batch(self, engine: AsyncEngine, exchange: AbstractExchange) -> int:
        """Claim, publish, confirm, mark: one transaction. Returns how many rows it claimed.

        Raises ``_BatchFailed`` (after committing the confirmed rows) when some were not
        confirmed, and anything the database raises (the transaction then rolls back and every
        claimed row stays unsent).
        """
        try:
            async with engine.begin() as db:
                rows = (await db.execute(_CLAIM, {"batch": self._config.batch_size})).all()
                if not rows:
                    return 0
                # At most one row per ticket in a claim, so publishing them concurrently keeps
                # every ticket's order.
                results = await asyncio.gather(
                    *(self._publish(exchange, row) for row in rows), return_exceptions=True
                )
                sent = [row for row, result in zip(rows, results, strict=True) if result is None]
                failed = [
                    (row.id, result)
                    for row, result in zip(rows, results, strict=True)
                    if isinstance(result, BaseException)
                ]
                if sent:
                    await db.execute(_MARK_SENT, {"ids": [row.id for row in sent]})
                if failed:
                    await db.execute(_COUNT_FAILURE, {"ids": [row_id for row_id, _ in failed]})
        except (DBAPIError, OSError):  # publishing errors are in ``results``, not raised
            self._hooks.failed("database")
            raise
        self._set(
            published=self._stats.published + len(sent),
            publish_failures=self._stats.publish_failures + len(failed),
        )
        for row in sent:
            self._hooks.published(row.routing_key)
        for _, error in failed:
            self._hooks.failed("nack" if isinstance(error, DeliveryError) else "publish")
        if failed:
            first_id, first_error = failed[0]
            raise _BatchFailed(
                f"{len(failed)} of {len(rows)} events not confirmed (first {first_id}: "
                f"{describe(first_error)})"
            )
        log.debug("%s published %d events", self._name, len(sent))
        return len(rows)

    async def _publish(self, exchange: AbstractExchange, row: Row[Any]) -> None:
        event_id: uuid.UUID = row.id
        created_at: datetime = row.created_at
        message = event_message(
            row.body.encode(),
            event_id=str(event_id),
            event_type=row.event_type,
            created_at=created_at,
        )
        # mandatory=False: an event no queue is bound for yet is not an error of the relay.
        await exchange.publish(
            message,
            routing_key=row.routing_key,
            mandatory=False,
            timeout=self._config.publish_timeout,
        )

    # --- waiting ----------------------------------------------------------------------------

    async def _wait_for_work(self, lost: asyncio.Event) -> None:
        """Until a notification, ``stop()`` or the poll interval. Raises ``ConnectionError``
        as soon as the broker connection closes, so the relay reconnects (and reports itself
        disconnected) before it claims rows it could not publish."""
        woken = asyncio.ensure_future(self._wake.wait())
        closed = asyncio.ensure_future(lost.wait())
        try:
            await asyncio.wait(
                {woken, closed},
                timeout=self._config.poll_interval,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            woken.cancel()
            closed.cancel()
        if lost.is_set():
            raise ConnectionError("the broker closed the connection")

    async def _listen(self) -> None:
        """Keep a LISTEN connection open, reconnecting with backoff; polling covers the gaps."""
        backoff = Backoff(0.5, 10.0)
        dsn = (
            make_url(self._database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        while not self._stopping.is_set():
            lost = asyncio.Event()
            try:
                listener = await asyncpg.connect(dsn, timeout=10)
            except Exception as error:  # the database may be away: wait, retry
                log.debug("%s cannot listen for outbox commits: %s", self._name, error)
                await self._sleep(backoff.next_delay())
                continue
            try:
                listener.add_termination_listener(_setter(lost))
                await listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
                backoff.reset()
                self._set(listening=True)
                self._wake.set()  # commits made while nobody listened
                stop = asyncio.create_task(self._stopping.wait())
                gone = asyncio.create_task(lost.wait())
                try:
                    await asyncio.wait({stop, gone}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                    gone.cancel()
            except Exception as error:
                log.debug("%s lost its LISTEN connection: %s", self._name, error)
            finally:
                self._set(listening=False)
                with contextlib.suppress(Exception):
                    await listener.close(timeout=2)
            if not self._stopping.is_set():
                await self._sleep(backoff.next_delay())

    def _on_notify(self, *_args: object) -> None:
        self._wake.set()

    # --- bookkeeping ------------------------------------------------------------------------

    async def _measure_backlog(self, engine: AsyncEngine) -> None:
        measured = self._stats.backlog_measured_at
        now = time.monotonic()
        if measured is not None and now - measured < self._config.poll_interval:
            return
        try:
            async with engine.connect() as db:
                backlog = await outbox_backlog(db)
        except Exception as error:  # a metric must not stop the relay
            log.debug("%s cannot measure the outbox backlog: %s", self._name, error)
            return
        self._set(backlog=backlog, backlog_measured_at=now)

    def _outage(self, error: BaseException) -> None:
        self._mark_down(error)
        self._set(outages=self._stats.outages + 1)
        delay_note = f"retrying with backoff (attempt {self._backoff.failures + 1})"
        if isinstance(error, _BatchFailed | OSError | ConnectionError | TimeoutError) or (
            type(error).__module__.startswith(("aiormq", "aio_pika", "sqlalchemy", "asyncpg"))
        ):
            log.warning("%s: %s; %s", self._name, describe(error), delay_note)
        else:
            log.exception("%s failed unexpectedly; %s", self._name, delay_note)


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _connection: event.set()
