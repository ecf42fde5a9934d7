"""The whole chain path through the worker the operator runs (``Worker``: outbox relay, chain
consumer, tracker and listener) and the API: buy → the NFT is minted to the holder's wallet and
recorded → the gate admits with chain verification → the holder moves the NFT from their wallet
→ the listener makes the ticket follow → the old holder's code is refused.

Real Postgres, Redis and RabbitMQ; the local Solana node over HTTP and WebSocket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import aio_pika
import pytest
from litestar import Litestar
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from sync_server.app import create_app
from sync_server.chain.client import ChainKeys
from sync_server.chain.nft import read_ticket_mint
from sync_server.db.engine import Database
from sync_server.domain.chain.minting import chain_event_handler, reconcile_tenant
from sync_server.messaging.broker import queue_names
from sync_server.messaging.consumers import Consumer, RetryPolicy, TicketEvent
from sync_server.messaging.relay import RelayConfig
from sync_server.settings import AmqpSettings, Settings
from sync_server.worker import Worker
from testkit.solana.localnode import LocalSolanaNode
from tests.sync_server.chain.conftest import LAMPORTS_PER_SOL
from tests.sync_server.chain.onchain_tickets import eventually, transfer_ticket_nft
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import (
    HOLDER,
    Client,
    buy,
    connect,
    create_event,
    create_ticket_type,
    enrolled_device,
)
from tests.sync_server.messaging.conftest import amqp_url  # noqa: F401 - a fixture

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

T = TypeVar("T")
ROUTING_KEYS = ("ticket.purchased", "ticket.transferred", "ticket.revoked")


@pytest.fixture
def e2e_settings(chain_server_settings: Settings, amqp_url: str) -> Settings:  # noqa: F811
    chain = dataclasses.replace(
        chain_server_settings.chain,
        # Generous for a loaded 2-core test machine: a healthy node must not look slow here.
        ownership_timeout_seconds=2.0,
    )
    return dataclasses.replace(chain_server_settings, chain=chain, amqp=AmqpSettings(url=amqp_url))


@pytest.fixture
def app(e2e_settings: Settings) -> Litestar:
    return create_app(e2e_settings)


def _consumers_for(tenant_id: uuid.UUID, name: str) -> Callable[[Database, Settings], Any]:
    """The production chain consumer, on a queue of this test's own and for this test's tenant
    only: the shared broker also carries other test sessions' events."""

    def build(database: Database, settings: Settings) -> Sequence[Consumer]:
        handler = chain_event_handler(ChainKeys.from_settings(settings.chain))

        async def mine(event: TicketEvent, session: AsyncSession) -> None:
            if event.tenantid == tenant_id:
                await handler(event, session)

        return [
            Consumer(
                name,
                ROUTING_KEYS,
                mine,
                database=database,
                amqp_url=settings.amqp.url,
                retry=RetryPolicy(max_attempts=3, retry_delay_ms=200, delivery_limit=5),
            )
        ]

    return build


@pytest.fixture
async def worker(e2e_settings: Settings, tenant: TenantHandle) -> AsyncIterator[Worker]:
    name = f"chain-e2e-{secrets.token_hex(4)}"
    worker = Worker(
        e2e_settings,
        consumers=_consumers_for(tenant.id, name),
        relay_config=RelayConfig(poll_interval=0.5),
    )
    assert [part for part, _ in worker.chain] == ["chain-tracker", "chain-listener"]
    task = asyncio.create_task(worker.run())
    try:
        # Events published before the consumer's queue exists would route nowhere.
        deadline = time.monotonic() + 30
        while not worker.consumers[0].stats().connected:
            assert time.monotonic() < deadline, "the chain consumer never connected"
            await asyncio.sleep(0.05)
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 60)
        async with admin(e2e_settings) as db:  # nothing of this test left for another tracker
            await db.execute(
                text(
                    "UPDATE pending_transactions SET status = 'failed', error = 'test over' "
                    "WHERE status IN ('queued', 'submitted', 'confirmed')"
                )
            )
            await db.commit()
        connection = await aio_pika.connect(e2e_settings.amqp.url)
        async with connection:
            channel = await connection.channel()
            for queue in queue_names(name):
                await channel.queue_delete(queue)


def admin(settings: Settings) -> Any:
    return connect(settings.database.admin_url)


async def _row(settings: Settings, sql: str, **params: Any) -> Any:
    async with admin(settings) as db:
        return (await db.execute(text(sql), params)).mappings().first()


async def test_bought_minted_verified_moved_on_chain_and_followed(
    client: Client,
    tenant: TenantHandle,
    worker: Worker,
    e2e_settings: Settings,
    solana_node: LocalSolanaNode,
    chain_keys: ChainKeys,
) -> None:
    settings = e2e_settings
    holder = Keypair()
    solana_node.ledger.airdrop(holder.pubkey(), LAMPORTS_PER_SOL)
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    bought = await buy(
        client, tenant, ticket_type["id"], 2, holder={**HOLDER, "wallet": str(holder.pubkey())}
    )
    assert bought.status_code == 201, bought.text
    (first_id, first_code), (second_id, second_code) = [
        (uuid.UUID(t["ticket"]["id"]), t["code"]) for t in bought.json()["tickets"]
    ]

    # Minted by the worker: finalized, recorded, announced.
    async def minted(ticket_id: uuid.UUID) -> Any:
        row = await _row(
            settings,
            "SELECT nft_mint, chain_owner, blockchain_sync_status FROM tickets WHERE id = :id",
            id=ticket_id,
        )
        return row if row["blockchain_sync_status"] == "synced" else None

    first = await eventually(
        lambda: minted(first_id), "the first ticket minted", timeout=60, tick=solana_node
    )
    second = await eventually(
        lambda: minted(second_id), "the second ticket minted", timeout=60, tick=solana_node
    )
    assert first["chain_owner"] == str(holder.pubkey())
    assert first["nft_mint"] == str(chain_keys.mint_keypair(first_id).pubkey())
    async with AsyncClient(solana_node.rpc_url) as rpc:
        account = (await rpc.get_account_info(Pubkey.from_string(first["nft_mint"]))).value
        assert account is not None
        on_chain = read_ticket_mint(bytes(account.data))
    assert str(first_id) not in on_chain.uri
    assert on_chain.event_id == event["id"]
    assert on_chain.mint.supply == 1
    assert on_chain.mint.mint_authority is None
    pending = await _row(
        settings,
        "SELECT status, confirmation_count FROM pending_transactions "
        "WHERE ticket_id = :id AND kind = 'mint'",
        id=first_id,
    )
    assert pending["status"] == "finalized"
    assert pending["confirmation_count"] >= 32
    minted_events = await _row(
        settings,
        "SELECT count(*) AS n FROM outbox WHERE ticket_id = :id AND routing_key = 'ticket.minted'",
        id=first_id,
    )
    assert minted_events["n"] == 1

    # The gate admits with chain verification.
    device = await enrolled_device(client, tenant, event["id"])
    admitted = await client.post("/v1/validate", json={"code": first_code}, headers=device.headers)
    assert admitted.status_code == 200, admitted.text
    assert admitted.json()["result"] == "admitted"
    assert admitted.json()["chain_verified"] is True

    # The holder gives the second ticket away from their own wallet.
    newcomer = Keypair()
    async with AsyncClient(solana_node.rpc_url) as rpc:
        await transfer_ticket_nft(
            rpc,
            solana_node,
            chain_keys,
            Pubkey.from_string(second["nft_mint"]),
            holder,
            newcomer.pubkey(),
        )

    async def followed() -> Any:
        row = await _row(
            settings,
            "SELECT holder_wallet, chain_owner, secret_version FROM tickets WHERE id = :id",
            id=second_id,
        )
        return row if row["holder_wallet"] == str(newcomer.pubkey()) else None

    moved = await eventually(
        followed, "the listener to apply the transfer", timeout=60, tick=solana_node
    )
    assert moved["chain_owner"] == str(newcomer.pubkey())
    assert moved["secret_version"] == 1
    log = await _row(
        settings,
        "SELECT count(*) AS n, min(from_wallet) AS from_wallet, min(to_wallet) AS to_wallet "
        "FROM blockchain_sync WHERE ticket_id = :id AND kind = 'transfer'",
        id=second_id,
    )
    assert (log["n"], log["from_wallet"], log["to_wallet"]) == (
        1,
        str(holder.pubkey()),
        str(newcomer.pubkey()),
    )
    refused = await client.post("/v1/validate", json={"code": second_code}, headers=device.headers)
    assert refused.json()["result"] == "rejected"
    assert refused.json()["reason"] == "superseded"


async def test_reconciling_a_tenant_queues_mints_for_tickets_sold_before_the_worker_ran(
    client: Client, tenant: TenantHandle, e2e_settings: Settings, chain_keys: ChainKeys
) -> None:
    """``gatehouse-server chain reconcile``: tickets sold while no chain consumer listened (the
    chain turned on later, a first deployment) get their mints queued — once."""
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    bought = await buy(client, tenant, ticket_type["id"], 3)
    assert bought.status_code == 201, bought.text
    ids = {uuid.UUID(t["ticket"]["id"]) for t in bought.json()["tickets"]}
    database = Database(e2e_settings.database)
    try:
        now = datetime.now(UTC)
        assert await reconcile_tenant(database, tenant.id, chain_keys, now, batch=2) == 3
        assert await reconcile_tenant(database, tenant.id, chain_keys, now) == 0
    finally:
        await database.close()
    async with admin(e2e_settings) as db:
        rows = (
            await db.execute(
                text(
                    "SELECT p.ticket_id, p.kind, p.status, p.destination, t.blockchain_sync_status "
                    "FROM pending_transactions p JOIN tickets t ON t.id = p.ticket_id "
                    "WHERE t.tenant_id = :tenant"
                ),
                {"tenant": tenant.id},
            )
        ).all()
        await db.execute(
            text(
                "UPDATE pending_transactions SET status = 'failed', error = 'test over' "
                "WHERE tenant_id = :tenant AND status = 'queued'"
            ),
            {"tenant": tenant.id},
        )
        await db.commit()
    assert {row.ticket_id for row in rows} == ids
    custody = str(chain_keys.custody.pubkey())
    assert {(r.kind, r.status, r.destination, r.blockchain_sync_status) for r in rows} == {
        ("mint", "queued", custody, "pending")
    }
