"""RabbitMQ topology: the ``tickets`` exchange every ticket event goes to, and the queues a
consumer of ours declares (its queue, a delay queue for retries, a dead-letter queue).

Queues are quorum queues (RabbitMQ ≥ 3.8; 3.10 here, which added message TTL and at-least-once
dead-lettering for them): replicated when the broker is a cluster, durable, and with a
broker-side delivery limit that stops a message which crashes its consumer from looping
forever. A queue's arguments are fixed when it is first declared; declaring it again with
other arguments fails with ``PRECONDITION_FAILED`` — change them by deleting the queue (or
through a policy), not by editing the numbers here.

Nothing here connects at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    DeliveryMode,
    ExchangeType,
)

#: The topic exchange of ticket events; routing keys like ``ticket.purchased`` (docs/events.md).
TICKETS_EXCHANGE = "tickets"
#: Where our consumers' poison messages go, by their queue's name as routing key.
DEAD_LETTER_EXCHANGE = "gatehouse.dead-letter"
#: Structured-mode CloudEvents over AMQP: the body is the whole JSON envelope.
CONTENT_TYPE = "application/cloudevents+json"
#: How many times a consumer's handler has failed for this copy of a message.
RETRY_HEADER = "x-gatehouse-retries"
#: Why a message was dead-lettered (the last error), for whoever inspects the dead letters.
ERROR_HEADER = "x-gatehouse-error"
#: The routing key a message was first published with (retries travel under the queue's name).
ROUTING_KEY_HEADER = "x-gatehouse-routing-key"

CONNECT_TIMEOUT_S = 10.0


async def connect(url: str) -> aio_pika.abc.AbstractConnection:
    """A plain (not self-healing) connection: the relay and the consumers reconnect themselves,
    with backoff, because each must also decide what happens to its work in flight.

    Raises ``aio_pika.exceptions.AMQPConnectionError`` or ``OSError`` when the broker is away
    or refuses the credentials, ``TimeoutError`` when it does not answer in time.
    """
    return await aio_pika.connect(url, timeout=CONNECT_TIMEOUT_S)


async def declare_tickets_exchange(channel: AbstractChannel) -> AbstractExchange:
    """The durable topic exchange ``tickets`` (declaring it again is harmless)."""
    return await channel.declare_exchange(TICKETS_EXCHANGE, ExchangeType.TOPIC, durable=True)


def event_message(
    body: bytes,
    *,
    event_id: str,
    event_type: str | None = None,
    created_at: datetime | None = None,
) -> aio_pika.Message:
    """A ticket event as an AMQP message: persistent, ``message_id`` = the CloudEvents id (the
    key consumers deduplicate on), the envelope as the body."""
    return aio_pika.Message(
        body,
        content_type=CONTENT_TYPE,
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=event_id,
        type=event_type,
        timestamp=created_at,
        app_id="gatehouse",
    )


@dataclass(frozen=True, slots=True)
class ConsumerQueues:
    """The three queues of one consumer, declared by ``declare_consumer_queues``."""

    main: AbstractQueue
    retry: AbstractQueue
    dead: AbstractQueue
    #: The exchange ``dead`` is bound to (by ``main``'s name).
    dead_letters: AbstractExchange


def queue_names(consumer: str) -> tuple[str, str, str]:
    """``gatehouse.<consumer>``, its ``.retry`` delay queue and its ``.dead`` letter queue."""
    main = f"gatehouse.{consumer}"
    return main, f"{main}.retry", f"{main}.dead"


async def declare_consumer_queues(
    channel: AbstractChannel,
    consumer: str,
    routing_keys: tuple[str, ...],
    *,
    retry_delay_ms: int,
    delivery_limit: int,
) -> ConsumerQueues:
    """Declare (idempotently) and bind a consumer's queues:

    * ``gatehouse.<consumer>`` bound to ``tickets`` with ``routing_keys``; a message the broker
      gives up on (rejected, or redelivered more than ``delivery_limit`` times — a consumer that
      crashed on it each time) is dead-lettered to ``gatehouse.<consumer>.dead``;
    * ``gatehouse.<consumer>.retry``: a failed message waits here ``retry_delay_ms`` and then
      goes back to the main queue (TTL expiry dead-letters it there);
    * ``gatehouse.<consumer>.dead``: poison messages, kept for people to look at.

    Raises ``aio_pika.exceptions.ChannelPreconditionFailed`` when a queue exists with other
    arguments (see the module's docstring).
    """
    main_name, retry_name, dead_name = queue_names(consumer)
    tickets = await declare_tickets_exchange(channel)
    dead_letters = await channel.declare_exchange(
        DEAD_LETTER_EXCHANGE, ExchangeType.DIRECT, durable=True
    )
    # At-least-once dead-lettering (3.10+) needs reject-publish overflow; without it a message
    # is dropped if the broker fails while moving it.
    reliable_dead_letters = {
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    dead = await channel.declare_queue(
        dead_name, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead.bind(dead_letters, routing_key=main_name)
    main = await channel.declare_queue(
        main_name,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": main_name,
            **reliable_dead_letters,
        },
    )
    for key in routing_keys:
        await main.bind(tickets, routing_key=key)
    retry = await channel.declare_queue(
        retry_name,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-message-ttl": retry_delay_ms,
            "x-dead-letter-exchange": "",  # the default exchange: straight to the main queue
            "x-dead-letter-routing-key": main_name,
            **reliable_dead_letters,
        },
    )
    return ConsumerQueues(main=main, retry=retry, dead=dead, dead_letters=dead_letters)
