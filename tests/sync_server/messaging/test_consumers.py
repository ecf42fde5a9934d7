"""Our consumer framework against the real RabbitMQ and Postgres: a handler's effect and the
record of the event commit together, duplicates are skipped, a poison message ends in the
dead-letter queue after its retries while the next messages flow, a database outage does not
count against a message, and stopping finishes the messages in hand."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.ids import new_id
from sync_server.db.engine import Database
from sync_server.messaging.broker import ERROR_HEADER, RETRY_HEADER, queue_names
from sync_server.messaging.consumers import Consumer, RetryPolicy, TicketEvent
from sync_server.messaging.outbox import cloud_event
from sync_server.settings import DatabaseSettings, Settings
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import connect
from tests.sync_server.messaging.conftest import running
from tests.sync_server.messaging.rabbit import publish_raw, queue_depth, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

QUICK_RETRIES = RetryPolicy(max_attempts=3, retry_delay_ms=100, delivery_limit=5)


def _envelope(tenant_id: uuid.UUID, routing_key: str, **data: Any) -> tuple[str, bytes]:
    event_id = new_id()
    body = cloud_event(
        event_id=event_id,
        routing_key=routing_key,
        tenant_id=tenant_id,
        subject="tickets/test",
        time=datetime.now(UTC),
        data=data,
    )
    return str(event_id), json.dumps(body).encode()


@asynccontextmanager
async def _consumer_name(amqp_url: str) -> AsyncIterator[tuple[str, str]]:
    """A fresh consumer name and a routing key only this test publishes; the consumer's queues
    are deleted afterwards."""
    suffix = secrets.token_hex(4)
    name = f"test-{suffix}"
    try:
        yield name, f"test.{suffix}.ticket"
    finally:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            for queue in queue_names(name):
                await channel.queue_delete(queue)


async def _recorded(settings: Settings, consumer: str) -> set[str]:
    async with connect(settings.database.admin_url) as db:
        rows = await db.execute(
            text("SELECT event_id FROM processed_events WHERE consumer = :c"), {"c": consumer}
        )
        return {str(row.event_id) for row in rows}


async def _dead_letters(amqp_url: str, name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(amqp_url)
    found = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_names(name)[2])
        while (message := await queue.get(fail=False, timeout=5)) is not None:
            found.append(message)
            await message.ack()
    return found


async def test_poison_goes_to_the_dead_letter_queue_and_the_consumer_keeps_going(
    settings: Settings, tenant: TenantHandle, amqp_url: str
) -> None:
    calls: Counter[str] = Counter()

    async def handle(event: TicketEvent, session: AsyncSession) -> None:
        calls[str(event.id)] += 1
        # The handler's effect, in the transaction that also records the event.
        await session.execute(
            text(
                "INSERT INTO processed_events (consumer, event_id, tenant_id) "
                "VALUES (:consumer, :id, :tenant)"
            ),
            {"consumer": effect, "id": event.id, "tenant": event.tenantid},
        )
        if event.data.get("poison"):
            raise RuntimeError("this event cannot be handled")

    database = Database(settings.database)
    async with _consumer_name(amqp_url) as (name, key):
        effect = f"{name}-effect"
        consumer = Consumer(
            name, (key,), handle, database=database, amqp_url=amqp_url, retry=QUICK_RETRIES
        )
        good = [_envelope(tenant.id, key, n=n) for n in range(4)]
        poison = _envelope(tenant.id, key, poison=True)
        try:
            async with running(consumer):
                await wait_until(lambda: consumer.stats().connected, what="consumer up")
                for event_id, body in [good[0], poison, good[1]]:
                    await publish_raw(body, key, message_id=event_id)
                await publish_raw(b"not a cloud event {", key, message_id="garbage")
                await publish_raw(good[2][1], key, message_id=good[2][0])
                await wait_until(
                    lambda: consumer.stats().handled == 3 and consumer.stats().dead_lettered == 2,
                    what="three handled, two dead-lettered",
                )
                # The same event again (a redelivery, a duplicate publication): skipped.
                await publish_raw(good[0][1], key, message_id=good[0][0])
                await wait_until(lambda: consumer.stats().duplicates == 1, what="duplicate")
                # And the consumer still takes new work.
                await publish_raw(good[3][1], key, message_id=good[3][0])
                await wait_until(lambda: consumer.stats().handled == 4, what="fourth handled")
            dead = await _dead_letters(amqp_url, name)
            main, retry, _ = queue_names(name)
            assert await queue_depth(main, amqp_url) == await queue_depth(retry, amqp_url) == 0
        finally:
            await database.close()

    assert calls[poison[0]] == QUICK_RETRIES.max_attempts
    assert all(calls[event_id] == 1 for event_id, _ in good)
    assert consumer.stats().retried == QUICK_RETRIES.max_attempts - 1
    by_id = {message.message_id: message for message in dead}
    assert set(by_id) == {poison[0], "garbage"}
    assert by_id[poison[0]].body == poison[1]  # as published, to be inspected or replayed
    assert by_id[poison[0]].headers[RETRY_HEADER] == QUICK_RETRIES.max_attempts
    assert "this event cannot be handled" in str(by_id[poison[0]].headers[ERROR_HEADER])
    assert "undecodable" in str(by_id["garbage"].headers[ERROR_HEADER])
    # Effect and record together: once for each good event, never for the poison.
    good_ids = {event_id for event_id, _ in good}
    assert await _recorded(settings, name) == good_ids
    assert await _recorded(settings, effect) == good_ids


async def test_stop_finishes_the_messages_in_hand_and_leaves_the_rest_queued(
    settings: Settings, tenant: TenantHandle, amqp_url: str
) -> None:
    began = asyncio.Event()
    handled: list[str] = []

    async def slow(event: TicketEvent, session: AsyncSession) -> None:
        began.set()
        await asyncio.sleep(0.3)
        await session.execute(text("SELECT 1"))
        handled.append(str(event.id))

    database = Database(settings.database)
    async with _consumer_name(amqp_url) as (name, key):
        first = Consumer(name, (key,), slow, database=database, amqp_url=amqp_url, prefetch=2)
        events = [_envelope(tenant.id, key, n=n) for n in range(5)]
        try:
            async with running(first):
                await wait_until(lambda: first.stats().connected, what="consumer up")
                for event_id, body in events:
                    await publish_raw(body, key, message_id=event_id)
                await asyncio.wait_for(began.wait(), 10)
                first.stop()  # while a handler runs: it finishes, its message is acked
            assert first.stats().handled == len(handled) >= 1
            assert await queue_depth(queue_names(name)[0], amqp_url) == len(events) - len(handled)
            assert await _recorded(settings, name) == set(handled)

            second = Consumer(name, (key,), slow, database=database, amqp_url=amqp_url)
            async with running(second):
                await wait_until(lambda: len(handled) == len(events), what="the rest handled")
        finally:
            await database.close()
    assert sorted(handled) == sorted(event_id for event_id, _ in events)
    assert first.stats().duplicates == second.stats().duplicates == 0


async def test_a_database_outage_does_not_count_against_the_message(
    settings: Settings, tenant: TenantHandle, amqp_url: str
) -> None:
    calls = 0

    async def handle(event: TicketEvent, session: AsyncSession) -> None:
        nonlocal calls
        calls += 1

    # Nothing listens on port 1: every transaction fails to connect.
    unreachable = Database(
        DatabaseSettings(url="postgresql+asyncpg://gatehouse_app@127.0.0.1:1/gatehouse")
    )
    async with _consumer_name(amqp_url) as (name, key):
        consumer = Consumer(
            name, (key,), handle, database=unreachable, amqp_url=amqp_url, retry=QUICK_RETRIES
        )
        event_id, body = _envelope(tenant.id, key)
        try:
            async with running(consumer):
                await wait_until(lambda: consumer.stats().connected, what="consumer up")
                await publish_raw(body, key, message_id=event_id)
                await wait_until(lambda: consumer.stats().outages >= 3, what="outages")
            stats = consumer.stats()
            # Held, not retried or dead-lettered; back in the queue for when the database
            # returns.
            assert (stats.retried, stats.dead_lettered, calls) == (0, 0, 0)
            assert await queue_depth(queue_names(name)[0], amqp_url) == 1
        finally:
            await unreachable.close()
