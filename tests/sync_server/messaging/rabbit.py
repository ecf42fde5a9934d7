"""The real RabbitMQ on localhost for the messaging tests: making sure it runs, stopping and
always restarting it, test queues bound to ``tickets``, and reading what arrived.

The broker is shared with whatever else runs on the machine (other test sessions, other
engineers' relays), so tests use queues with random names and count only the events of their
own tenants.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from sync_server.messaging.broker import TICKETS_EXCHANGE, declare_tickets_exchange

AMQP_URL = os.environ.get("GATEHOUSE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
START_TIMEOUT_S = 90.0


async def broker_answers(url: str = AMQP_URL) -> bool:
    try:
        connection = await aio_pika.connect(url, timeout=3)
    except Exception:  # refused, reset, timed out, not yet booted: all mean "not now"
        return False
    await connection.close()
    return True


async def _rabbitmqctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl")
    assert ctl is not None, "rabbitmqctl is not installed"
    process = await asyncio.create_subprocess_exec(
        ctl, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, f"rabbitmqctl {' '.join(args)}: {output.decode()}"


async def ensure_broker(url: str = AMQP_URL) -> None:
    """Start the broker's application if it does not answer, and wait until it does."""
    if await broker_answers(url):
        return
    await _rabbitmqctl("start_app")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not await broker_answers(url):
        assert time.monotonic() < deadline, "RabbitMQ did not answer after start_app"
        await asyncio.sleep(0.3)


@asynccontextmanager
async def broker_stopped(url: str = AMQP_URL) -> AsyncIterator[None]:
    """RabbitMQ's application stopped (``rabbitmqctl stop_app``) for the body, and started
    again afterwards whatever happens, waiting until it answers."""
    await _rabbitmqctl("stop_app")
    try:
        yield
    finally:
        await ensure_broker(url)


@asynccontextmanager
async def bound_queue(
    url: str = AMQP_URL, routing_keys: tuple[str, ...] = ("ticket.*", "scan.*")
) -> AsyncIterator[str]:
    """A durable quorum queue with a random name, bound to ``tickets``; deleted afterwards
    (the broker is restarted by then if a test stopped it)."""
    name = f"test.events.{secrets.token_hex(4)}"
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        exchange = await declare_tickets_exchange(channel)
        queue = await channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        for key in routing_keys:
            await queue.bind(exchange, routing_key=key)
    try:
        yield name
    finally:
        await ensure_broker(url)
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(name)


@dataclass(frozen=True, slots=True)
class Arrival:
    """One message as a consumer saw it."""

    message_id: str | None
    routing_key: str | None
    content_type: str | None
    persistent: bool
    envelope: dict[str, Any]


async def collect(
    queue: str,
    *,
    mine: Callable[[dict[str, Any]], bool],
    expected: int,
    timeout: float = 60.0,
    settle: float = 1.0,
    url: str = AMQP_URL,
) -> list[Arrival]:
    """Read ``queue`` (acking everything) until ``expected`` messages for which ``mine``
    holds have arrived, then ``settle`` seconds more to catch any extra; in arrival order.
    Fails when ``timeout`` passes first."""
    arrivals: list[Arrival] = []
    enough = asyncio.Event()

    async def take(message: AbstractIncomingMessage) -> None:
        try:
            envelope = json.loads(message.body)
        except ValueError:  # someone else's test message (a poison one, say)
            envelope = None
        if isinstance(envelope, dict) and mine(envelope):
            arrivals.append(
                Arrival(
                    message_id=message.message_id,
                    routing_key=message.routing_key,
                    content_type=message.content_type,
                    persistent=message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT,
                    envelope=envelope,
                )
            )
            if len(arrivals) >= expected:
                enough.set()
        await message.ack()

    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=200)
        declared = await channel.get_queue(queue)
        await declared.consume(take)
        try:
            await asyncio.wait_for(enough.wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{len(arrivals)} of {expected} events arrived in {timeout:.0f} s"
            ) from None
        await asyncio.sleep(settle)
    return arrivals


def of_tenants(*tenant_ids: uuid.UUID) -> Callable[[dict[str, Any]], bool]:
    wanted = {str(tenant_id) for tenant_id in tenant_ids}
    return lambda envelope: envelope.get("tenantid") in wanted


async def publish_raw(
    body: bytes,
    routing_key: str,
    *,
    message_id: str | None = None,
    url: str = AMQP_URL,
    exchange: str = TICKETS_EXCHANGE,
) -> None:
    """Publish ``body`` as it is (for poison and duplicate messages), with a confirm."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        target = await channel.get_exchange(exchange)
        await target.publish(
            aio_pika.Message(
                body,
                message_id=message_id,
                content_type="application/cloudevents+json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=routing_key,
            mandatory=False,
        )


async def queue_depth(queue: str, url: str = AMQP_URL) -> int:
    """Messages ready in ``queue`` (not counting ones delivered and unacked)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        assert declared.declaration_result.message_count is not None
        return declared.declaration_result.message_count


async def wait_until(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        await asyncio.sleep(0.05)
