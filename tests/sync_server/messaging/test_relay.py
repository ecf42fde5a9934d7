"""The outbox relay against the real RabbitMQ and Postgres: events survive a broker outage
exactly once and in order per ticket, rolled-back changes publish nothing, relays running side
by side never publish a row twice, and commits wake the relay at once."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar import Litestar
from sqlalchemy import text

from sync_server.db.engine import Database
from sync_server.domain.keys.services import KeyStore
from sync_server.domain.tickets.schemas import Holder, PurchaseRequest, TransferRequest
from sync_server.domain.tickets.services import TicketService
from sync_server.http.auth import Role
from sync_server.messaging.broker import CONTENT_TYPE
from sync_server.messaging.outbox import outbox_backlog, ticket_event_row
from sync_server.messaging.relay import OutboxRelay, RelayConfig
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import concurrent_client, connect, create_event, create_ticket_type
from tests.sync_server.messaging.conftest import running
from tests.sync_server.messaging.rabbit import (
    Arrival,
    bound_queue,
    broker_answers,
    broker_stopped,
    collect,
    of_tenants,
    wait_until,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

TICKETS = 500
PER_PURCHASE = 5
CONCURRENCY = 8
# Quick to notice the broker's return: the test waits for the catch-up, not for backoff.
FAST = RelayConfig(batch_size=100, poll_interval=0.5, backoff_initial=0.1, backoff_max=1.0)


class _RollBack(Exception):
    """Raised to abandon a transaction after its writes reached the database."""


async def _limited(calls: Iterable[Any], limit: int = CONCURRENCY) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(call: Any) -> Any:
        async with gate:
            return await call

    return list(await asyncio.gather(*(one(call) for call in calls)))


def _ticket_orders(arrivals: list[Arrival]) -> dict[str, list[Arrival]]:
    by_ticket: dict[str, list[Arrival]] = defaultdict(list)
    for arrival in arrivals:
        by_ticket[arrival.envelope["data"]["ticket_id"]].append(arrival)
    return by_ticket


async def _unsent(admin_url: str, tenant_id: uuid.UUID) -> int:
    async with connect(admin_url) as db:
        count = await db.scalar(
            text("SELECT count(*) FROM outbox WHERE tenant_id = :t AND sent_at IS NULL"),
            {"t": tenant_id},
        )
    return int(count or 0)


async def _rolled_back_purchase_and_transfer(
    settings: Settings, tenant: TenantHandle, ticket_type_id: uuid.UUID, ticket_id: uuid.UUID
) -> set[str]:
    """A purchase of 3 tickets and a transfer through the service layer, in one transaction
    that rolls back after its outbox rows were written (and notified). Returns their ids."""
    database = Database(settings.database)
    written: set[str] = set()
    try:
        with pytest.raises(_RollBack):
            async with database.tenant(tenant.id) as session:
                service = TicketService(
                    session, KeyStore(settings.master_key), "test:rollback", datetime.now(UTC)
                )
                holder = Holder(user_id="ghost", name="Never Was")
                await service.purchase(
                    PurchaseRequest(ticket_type_id=ticket_type_id, quantity=3, holder=holder),
                    tenant.id,
                )
                await service.transfer(ticket_id, TransferRequest(holder=holder))
                await session.flush()
                rows = await session.scalars(
                    text("SELECT id FROM outbox WHERE xmin = pg_current_xact_id()::xid")
                )
                written = {str(row) for row in rows}
                raise _RollBack
    finally:
        await database.close()
    assert len(written) == 4
    return written


@pytest.mark.slow
async def test_broker_outage_every_event_once_in_order_none_rolled_back(
    app: Litestar, settings: Settings, tenant: TenantHandle, broker_to_stop: str, relay_url: str
) -> None:
    amqp_url = broker_to_stop
    started = time.monotonic()
    relays = [OutboxRelay(relay_url, amqp_url, FAST, name=f"relay-{n}") for n in (1, 2)]
    headers = {**tenant.token(Role.SERVICE)}
    async with bound_queue(amqp_url) as queue, concurrent_client(app) as http:
        event = await create_event(http, tenant)
        ticket_type = await create_ticket_type(http, tenant, event["id"], capacity=TICKETS + 10)

        async with running(*relays):
            await wait_until(lambda: all(r.stats().broker_connected for r in relays), what="up")
            async with broker_stopped(amqp_url):
                await wait_until(
                    lambda: not any(r.stats().broker_connected for r in relays), what="down"
                )
                # What the relays sent while the broker was up: other tests' leftovers in this
                # session's database, not this test's business.
                published_before = sum(r.stats().published for r in relays)
                purchases = await _limited(
                    http.post(
                        "/v1/purchases",
                        json={
                            "ticket_type_id": ticket_type["id"],
                            "quantity": PER_PURCHASE,
                            "holder": {"user_id": f"buyer-{n}", "name": f"Buyer {n}"},
                        },
                        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
                    )
                    for n in range(TICKETS // PER_PURCHASE)
                )
                assert all(p.status_code == 201 for p in purchases), purchases[0].text
                ticket_ids = [t["ticket"]["id"] for p in purchases for t in p.json()["tickets"]]
                transfers = await _limited(
                    http.post(
                        f"/v1/tickets/{ticket_id}/transfer",
                        json={"holder": {"user_id": f"friend-{n}", "name": f"Friend {n}"}},
                        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
                    )
                    for n, ticket_id in enumerate(ticket_ids)
                )
                assert all(t.status_code == 200 for t in transfers), transfers[0].text
                rolled_back = await _rolled_back_purchase_and_transfer(
                    settings, tenant, uuid.UUID(ticket_type["id"]), uuid.UUID(ticket_ids[0])
                )
                # Nothing could go out: every change waits in the outbox.
                assert not await broker_answers(amqp_url), "RabbitMQ was started meanwhile"
                assert sum(r.stats().published for r in relays) == published_before
                assert await _unsent(settings.database.admin_url, tenant.id) == 2 * TICKETS
                assert all(r.stats().outages > 0 for r in relays)
                written_at = time.monotonic()

            arrivals = await collect(queue, mine=of_tenants(tenant.id), expected=2 * TICKETS)
            caught_up = time.monotonic()

    # Exactly once per change, by event id; nothing of the rolled-back transaction.
    ids = Counter(a.envelope["id"] for a in arrivals)
    assert len(arrivals) == 2 * TICKETS
    assert max(ids.values()) == 1
    assert not rolled_back & set(ids)
    # The AMQP message is the CloudEvents envelope, persistent, identified by the event id.
    assert all(a.message_id == a.envelope["id"] for a in arrivals)
    assert all(a.persistent and a.content_type == CONTENT_TYPE for a in arrivals)
    assert all(a.routing_key == a.envelope["type"].removeprefix("dev.gatehouse.") for a in arrivals)
    # Per ticket: bought, then transferred, in that order, one each.
    by_ticket = _ticket_orders(arrivals)
    assert set(by_ticket) == set(ticket_ids)
    for events in by_ticket.values():
        assert [a.routing_key for a in events] == ["ticket.purchased", "ticket.transferred"]
        assert [a.envelope["data"]["secret_version"] for a in events] == [0, 1]
    assert await _unsent(settings.database.admin_url, tenant.id) == 0
    assert sum(r.stats().published for r in relays) >= 2 * TICKETS  # other tenants' too
    print(  # the timings, for the report (pytest -s)
        f"\nwrote {2 * TICKETS} events with the broker down in {written_at - started:.1f} s; "
        f"caught up {caught_up - written_at:.1f} s after restarting it"
    )


async def _insert_round(
    database: Database, tenant_id: uuid.UUID, tickets: list[uuid.UUID], routing_key: str
) -> set[str]:
    """One outbox row per ticket, in one transaction of the application role (as the services
    write them: RLS, trigger and all). Returns the event ids."""
    rows = [
        ticket_event_row(
            routing_key=routing_key,
            tenant_id=tenant_id,
            ticket_id=ticket_id,
            time=datetime.now(UTC),
            data={"ticket_id": str(ticket_id), "step": routing_key},
        )
        for ticket_id in tickets
    ]
    async with database.tenant(tenant_id) as session:
        await session.execute(
            text(
                "INSERT INTO outbox (id, tenant_id, routing_key, ticket_id, payload, created_at) "
                "VALUES (:id, :tenant_id, :routing_key, :ticket_id, "
                "CAST(:payload AS jsonb), :created_at)"
            ),
            [{**row, "payload": json.dumps(row["payload"])} for row in rows],
        )
    return {str(row["id"]) for row in rows}


STEPS = ("ticket.purchased", "ticket.transferred", "ticket.revoked")


async def test_two_relays_publish_each_row_once_and_keep_ticket_order(
    settings: Settings, tenant: TenantHandle, amqp_url: str, relay_url: str
) -> None:
    tickets = [uuid.uuid4() for _ in range(300)]
    # Small batches, so the two relays take turns on the backlog.
    config = RelayConfig(batch_size=20, poll_interval=0.5, backoff_max=1.0)
    relays = [OutboxRelay(relay_url, amqp_url, config, name=f"relay-{n}") for n in (1, 2)]
    database = Database(settings.database)
    written: set[str] = set()
    try:
        async with bound_queue(amqp_url) as queue, running(*relays):
            await wait_until(lambda: all(r.stats().listening for r in relays), what="LISTEN")
            # Each commit wakes both relays at once: they race for the same rows, and the
            # later steps of a ticket are written while its earlier ones are being published.
            for step in STEPS:
                for chunk in range(0, len(tickets), 50):
                    written |= await _insert_round(
                        database, tenant.id, tickets[chunk : chunk + 50], step
                    )
            arrivals = await collect(
                queue, mine=of_tenants(tenant.id), expected=len(tickets) * len(STEPS)
            )
    finally:
        await database.close()

    ids = Counter(a.envelope["id"] for a in arrivals)
    assert set(ids) == written
    assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]
    for ticket, events in _ticket_orders(arrivals).items():
        assert [a.routing_key for a in events] == list(STEPS), ticket
    published = [r.stats().published for r in relays]
    assert all(count > 0 for count in published), f"one relay did all the work: {published}"
    assert await _unsent(settings.database.admin_url, tenant.id) == 0


async def _insert_quietly(database: Database, tenant_id: uuid.UUID) -> str:
    """One outbox row in a transaction that switched the NOTIFY off; returns its event id."""
    row = ticket_event_row(
        routing_key=STEPS[0],
        tenant_id=tenant_id,
        ticket_id=uuid.uuid4(),
        time=datetime.now(UTC),
        data={},
    )
    async with database.tenant(tenant_id) as session:
        await session.execute(text("SELECT set_config('gatehouse.outbox_notify', 'off', true)"))
        await session.execute(
            text(
                "INSERT INTO outbox (id, tenant_id, routing_key, ticket_id, payload, created_at)"
                " VALUES (:id, :tenant_id, :routing_key, :ticket_id, CAST(:payload AS jsonb),"
                " :created_at)"
            ),
            {**row, "payload": json.dumps(row["payload"])},
        )
    return str(row["id"])


async def test_a_commit_wakes_the_relay_and_polling_covers_a_missing_notification(
    settings: Settings, tenant: TenantHandle, amqp_url: str, relay_url: str
) -> None:
    database = Database(settings.database)
    try:
        async with bound_queue(amqp_url) as queue:
            # Polls only once an hour: an event out before collect() gives up (60 s) was
            # woken by NOTIFY.
            sleepy = OutboxRelay(relay_url, amqp_url, RelayConfig(poll_interval=3600.0))
            async with running(sleepy):
                await wait_until(lambda: sleepy.stats().listening, what="LISTEN")
                await wait_until(lambda: sleepy.stats().backlog is not None, what="first poll")
                notified = await _insert_round(database, tenant.id, [uuid.uuid4()], STEPS[0])
                arrivals = await collect(queue, mine=of_tenants(tenant.id), expected=1, settle=0)
                assert {a.envelope["id"] for a in arrivals} == notified

            # Transactions that do not notify (the operator's switch, set per transaction here):
            # the first waits for a relay that is not running — the backlog shows it to anyone,
            # the application role included; the second commits while the relay idles, and
            # the relay's next poll finds it.
            quiet = {await _insert_quietly(database, tenant.id)}
            async with database.untenanted() as session:
                backlog = await outbox_backlog(session)
            assert backlog.unsent >= 1
            assert backlog.oldest_age_seconds >= 0
            polling = OutboxRelay(relay_url, amqp_url, RelayConfig(poll_interval=0.3))
            async with running(polling):
                await wait_until(lambda: polling.stats().backlog is not None, what="first poll")
                quiet.add(await _insert_quietly(database, tenant.id))
                arrivals = await collect(queue, mine=of_tenants(tenant.id), expected=2, settle=0)
                assert {a.envelope["id"] for a in arrivals} == quiet
    finally:
        await database.close()
