"""Consumers of ticket events for our own workers: a queue bound to routing keys, a handler
run exactly once per event id, bounded retries with a delay, a dead-letter queue for poison
messages, and a clean shutdown.

What happens to a message (``Consumer._process``):

* **Undecodable** (not a CloudEvents JSON envelope with ``id`` and ``tenantid``): straight to
  the dead-letter queue — no retry can fix it.
* **Handled**: in one database transaction, scoped to the event's tenant, the consumer inserts
  ``(consumer, event id)`` into ``processed_events`` and runs the handler; the commit makes
  both durable together, then the message is acked. An event already recorded is acked
  without running the handler again: redeliveries and duplicate publications (the relay is
  at-least-once) have no effect.
* **Handler raised**: the transaction rolls back (no effect, no record). The message is
  re-published to the consumer's delay queue with the retry count in the ``x-gatehouse-retries``
  header, and comes back after ``retry_delay`` — so a failing message never blocks the ones
  behind it. After ``max_attempts`` failures it is published to the dead-letter queue with the
  last error in ``x-gatehouse-error``. Either way the original is acked only after the broker
  confirmed the copy, and the consumer goes on with the next message.
* **Database unavailable** (the handler failed and so does a ``SELECT 1``): not the message's
  fault, so no attempt is counted; the consumer keeps the message and tries again with backoff
  until the database answers or the consumer is stopped (then the broker redelivers it later).
* **Consumer crashed** mid-message: the broker redelivers it; the queue's delivery limit
  dead-letters a message that crashes its consumer every time.

One consumer handles one message at a time, in queue order (retries aside). Run more
``Consumer`` objects on the same name to share a queue.

Shutdown (``stop``): the broker is told to stop delivering, the messages already received
(at most ``prefetch``) are finished within ``shutdown_grace`` seconds, then the channel and the
connection close; whatever was not finished is redelivered to the next consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aio_pika
import msgspec
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    DeliveryMode,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.backoff import Backoff
from sync_server.background import BackgroundLoop, LoopState, LoopStats, describe
from sync_server.db.engine import Database
from sync_server.messaging.broker import (
    ERROR_HEADER,
    RETRY_HEADER,
    ROUTING_KEY_HEADER,
    connect,
    declare_consumer_queues,
    queue_names,
)
from sync_server.messaging.outbox import TYPE_PREFIX
from sync_server.observability import metrics

log = logging.getLogger(__name__)

_RECORD = text(
    "INSERT INTO processed_events (consumer, event_id, tenant_id) "
    "VALUES (:consumer, :event_id, :tenant_id) ON CONFLICT DO NOTHING RETURNING true"
)
_PING = text("SELECT 1")
_ERROR_TEXT_LIMIT = 1000


class TicketEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A received CloudEvents 1.0 envelope (see docs/events.md). Unknown attributes are
    ignored, so producers may add extensions."""

    id: uuid.UUID
    source: str
    type: str
    tenantid: uuid.UUID
    specversion: str = "1.0"
    time: datetime | None = None
    subject: str | None = None
    datacontenttype: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def routing_key(self) -> str:
        """``ticket.purchased`` for the type ``dev.gatehouse.ticket.purchased``."""
        return self.type.removeprefix(TYPE_PREFIX)


#: What a consumer does with an event: its effect goes through ``session``, a transaction scoped
#: to the event's tenant that commits only if the handler returns. Raising means "failed, retry".
EventHandler = Callable[[TicketEvent, AsyncSession], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    #: Handler runs before a message goes to the dead-letter queue.
    max_attempts: int = 5
    #: How long a failed message waits in the delay queue (fixed: the queue's message TTL).
    retry_delay_ms: int = 10_000
    #: Broker-side cap on redeliveries of one message (crashes, lost connections).
    delivery_limit: int = 20


def _ignore(_: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class _Link:
    """Where the current connection sends retries (``channel``'s default exchange) and poison."""

    channel: AbstractChannel
    dead_letters: AbstractExchange


@dataclass(frozen=True, slots=True)
class ConsumerStats(LoopStats):
    """A snapshot of one consumer (``state`` ``running``: consuming from the broker)."""

    handled: int = 0
    duplicates: int = 0
    retried: int = 0
    dead_lettered: int = 0
    #: Failures waited out: lost (or unreachable) broker connections, and database outages
    #: while handling a message (one per failed try).
    outages: int = 0

    @property
    def connected(self) -> bool:
        return self.state is LoopState.RUNNING


class Consumer(BackgroundLoop[ConsumerStats]):
    """Runs ``handler`` for the ticket events with ``routing_keys`` (topic patterns such as
    ``ticket.*``) from the queue ``gatehouse.<name>``, until ``stop()`` (then it finishes the
    messages it holds and returns).

    ``name`` identifies the consumer for good: it names its queues and keys its record of
    processed events, so renaming it means processing everything again from a new queue.
    """

    def __init__(
        self,
        name: str,
        routing_keys: tuple[str, ...],
        handler: EventHandler,
        *,
        database: Database,
        amqp_url: str,
        retry: RetryPolicy | None = None,
        prefetch: int = 10,
        shutdown_grace: float = 10.0,
        backoff: Backoff | None = None,
        on_outcome: Callable[[str], None] = _ignore,
    ) -> None:
        """``on_outcome`` (for metrics) is called once per message with ``ack`` (handled),
        ``duplicate`` (already processed, skipped), ``retry`` or ``dead_letter``."""
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"consumer name {name!r}: letters, digits, '-', '_' and '.' only")
        super().__init__(f"consumer {name}", ConsumerStats(), backoff or Backoff(0.2, 10.0))
        self.name = name
        self.routing_keys = routing_keys
        self._handler = handler
        self._database = database
        self._amqp_url = amqp_url
        self._retry = retry or RetryPolicy()
        self._prefetch = prefetch
        self._shutdown_grace = shutdown_grace
        self._on_outcome = on_outcome
        self._main_queue, self._retry_queue, _ = queue_names(name)

    async def _failed(self, error: Exception) -> None:
        """A broker (or database) outage: counted, logged, waited out with backoff."""
        self._mark_down(error)
        self._set(outages=self._stats.outages + 1)
        log.warning("consumer %s: %s; reconnecting with backoff", self.name, describe(error))

    # --- one broker connection ------------------------------------------------------------

    async def _attempt(self) -> None:
        connection = await connect(self._amqp_url)
        closed = asyncio.Event()
        connection.close_callbacks.add(lambda *_: closed.set())
        try:
            channel = await connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=self._prefetch)
            queues = await declare_consumer_queues(
                channel,
                self.name,
                self.routing_keys,
                retry_delay_ms=self._retry.retry_delay_ms,
                delivery_limit=self._retry.delivery_limit,
            )
            link = _Link(channel, queues.dead_letters)
            inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

            async def receive(message: AbstractIncomingMessage) -> None:
                inbox.put_nowait(message)

            tag = await queues.main.consume(receive)
            self._mark_up()
            log.info("consumer %s listening on %s", self.name, self._main_queue)
            while not self._stopping.is_set():
                message = await self._next(inbox, closed)
                if message is not None:
                    await self._process(message, link)
                    self._backoff.reset()
            await self._drain(queues.main, tag, inbox, link)
        finally:
            self._mark_disconnected()
            with contextlib.suppress(Exception):
                await connection.close()

    async def _next(
        self, inbox: asyncio.Queue[AbstractIncomingMessage], closed: asyncio.Event
    ) -> AbstractIncomingMessage | None:
        """The next message, or None when stopping. Raises ``ConnectionError`` when the broker
        connection closed under us."""
        get = asyncio.ensure_future(inbox.get())
        stop = asyncio.ensure_future(self._stopping.wait())
        lost = asyncio.ensure_future(closed.wait())
        try:
            await asyncio.wait({get, stop, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            lost.cancel()
            if not get.done():
                get.cancel()
        if get.done() and not get.cancelled():
            return get.result()
        if closed.is_set():
            raise ConnectionError("the broker closed the connection")
        return None

    async def _drain(
        self,
        queue: aio_pika.abc.AbstractQueue,
        tag: str,
        inbox: asyncio.Queue[AbstractIncomingMessage],
        link: _Link,
    ) -> None:
        """Stop deliveries, then finish what was already delivered (within the grace time)."""
        await queue.cancel(tag)
        await asyncio.sleep(0)  # deliveries received before cancel-ok are still being queued
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._shutdown_grace
        while not inbox.empty() and loop.time() < deadline:
            await self._process(inbox.get_nowait(), link)
        if not inbox.empty():
            log.warning(
                "consumer %s: %d messages left for redelivery at shutdown",
                self.name,
                inbox.qsize(),
            )

    # --- one message ------------------------------------------------------------------------

    async def _process(self, message: AbstractIncomingMessage, link: _Link) -> None:
        try:
            event = msgspec.json.decode(message.body, type=TicketEvent)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            log.warning(
                "consumer %s: undecodable message %s dead-lettered: %s",
                self.name,
                message.message_id,
                error,
            )
            await self._dead_letter(message, link, f"undecodable event: {error}", 0)
            return
        retries = _retries(message)
        outage = Backoff(0.2, 5.0)
        while True:
            try:
                fresh = await self._handle_once(event)
            except Exception as error:
                if await self._database_down():
                    if self._stopping.is_set():
                        return  # unacked: the broker redelivers it to the next consumer
                    self._set(outages=self._stats.outages + 1, last_error=describe(error))
                    delay = outage.next_delay()
                    log.warning(
                        "consumer %s: database unavailable (%s); event %s waits %.1f s",
                        self.name,
                        describe(error),
                        event.id,
                        delay,
                    )
                    await self._sleep(delay)
                    continue
                await self._event_failed(message, link, event, retries, error)
                return
            break
        await message.ack()
        self._on_outcome("ack" if fresh else "duplicate")
        if fresh:
            self._set(handled=self._stats.handled + 1)
        else:
            self._set(duplicates=self._stats.duplicates + 1)
            log.info("consumer %s: event %s already processed; skipped", self.name, event.id)

    async def _handle_once(self, event: TicketEvent) -> bool:
        """Record and handle ``event`` in one transaction; False when it was already recorded
        (nothing is run then). Raises whatever the handler or the database raises."""
        async with self._database.tenant(event.tenantid) as session:
            fresh = await session.scalar(
                _RECORD,
                {"consumer": self.name, "event_id": event.id, "tenant_id": event.tenantid},
            )
            if not fresh:
                return False
            await self._handler(event, session)
        return True

    async def _event_failed(
        self,
        message: AbstractIncomingMessage,
        link: _Link,
        event: TicketEvent,
        retries: int,
        error: Exception,
    ) -> None:
        attempts = retries + 1
        reason = describe(error)
        self._set(last_error=reason)
        if attempts >= self._retry.max_attempts:
            log.error(
                "consumer %s: event %s failed %d times, dead-lettered: %s",
                self.name,
                event.id,
                attempts,
                reason,
                exc_info=error,
            )
            await self._dead_letter(message, link, reason, attempts)
            return
        log.warning(
            "consumer %s: event %s failed (attempt %d of %d), retrying in %.1f s: %s",
            self.name,
            event.id,
            attempts,
            self._retry.max_attempts,
            self._retry.retry_delay_ms / 1000,
            reason,
        )
        await link.channel.default_exchange.publish(
            _copy(message, {RETRY_HEADER: attempts, ERROR_HEADER: reason[:_ERROR_TEXT_LIMIT]}),
            routing_key=self._retry_queue,
            mandatory=False,
        )
        await message.ack()  # only now: the broker has confirmed the copy
        self._set(retried=self._stats.retried + 1)
        self._on_outcome("retry")

    async def _dead_letter(
        self, message: AbstractIncomingMessage, link: _Link, reason: str, attempts: int
    ) -> None:
        await link.dead_letters.publish(
            _copy(message, {RETRY_HEADER: attempts, ERROR_HEADER: reason[:_ERROR_TEXT_LIMIT]}),
            routing_key=self._main_queue,
            mandatory=False,
        )
        await message.ack()
        self._set(dead_lettered=self._stats.dead_lettered + 1)
        self._on_outcome("dead_letter")

    async def _database_down(self) -> bool:
        """Whether the database fails a trivial query: then a failure was the outage's, not
        the event's, and must not count against the event."""
        try:
            async with self._database.untenanted() as session:
                await session.execute(_PING)
        except Exception:  # anything at all: the database cannot serve the handler
            return True
        return False


def consumer_metrics(name: str) -> Callable[[str], None]:
    """The ``on_outcome`` hook that counts consumer ``name``'s messages by outcome
    (``gatehouse_consumer_messages_total``, labelled with its queue)."""
    queue, _, _ = queue_names(name)
    return lambda outcome: metrics.CONSUMER_MESSAGES.labels(queue=queue, outcome=outcome).inc()


def _retries(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get(RETRY_HEADER, 0)
    return value if isinstance(value, int) and value >= 0 else 0


def _copy(message: AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
    """The message again, persistent, with its first routing key kept in a header."""
    kept = {
        key: value
        for key, value in (message.headers or {}).items()
        # The broker's own bookkeeping from earlier trips through the delay queue.
        if not key.startswith(("x-death", "x-first-death", "x-last-death", "x-delivery"))
    }
    original_key = kept.get(ROUTING_KEY_HEADER, message.routing_key)
    return aio_pika.Message(
        message.body,
        headers={**kept, ROUTING_KEY_HEADER: original_key, **headers},
        content_type=message.content_type,
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        type=message.type,
        timestamp=message.timestamp,
        app_id=message.app_id,
    )
