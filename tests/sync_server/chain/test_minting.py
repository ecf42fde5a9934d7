"""The minting worker end to end: the API sells, transfers and revokes; the outbox relay
publishes to the real RabbitMQ; the ``chain`` consumer queues chain actions; the tracker signs,
sends and follows them on the local Solana node over HTTP, with the production client.

Each test reads the chain back (the mint's metadata and authorities, who holds the token,
whether the account is frozen) rather than trusting what the worker wrote down.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import aio_pika
import anyio.to_thread
import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from solana.rpc.async_api import AsyncClient
from solana.rpc.core import RPCException
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.rpc.errors import SendTransactionPreflightFailureMessage
from solders.signature import Signature
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from shared.domain import TicketStatus
from sync_server.app import create_app
from sync_server.chain.actions import ActionKind, mint_transaction
from sync_server.chain.client import ChainKeys
from sync_server.chain.nft import (
    TICKET_DECIMALS,
    TICKET_SUPPLY,
    build_transaction,
    holder_token_account,
    read_ticket_holding,
    read_ticket_mint,
    ticket_metadata,
    ticket_mint_space,
    transfer_ticket_instructions,
)
from sync_server.db.engine import Database
from sync_server.db.models import Ticket
from sync_server.domain.chain.minting import (
    ROUTING_KEYS,
    Action,
    chain_consumers,
    chain_event_handler,
    next_action,
    reconcile,
    retry_ticket,
)
from sync_server.domain.chain.tracker import ChainTracker
from sync_server.messaging.broker import queue_names
from sync_server.messaging.consumers import Consumer, RetryPolicy, TicketEvent
from sync_server.messaging.relay import OutboxRelay, RelayConfig
from sync_server.settings import AmqpSettings, Settings
from testkit.solana.localnode import LocalSolanaNode
from tests.sync_server.chain.conftest import LAMPORTS_PER_SOL
from tests.sync_server.chain.onchain_tickets import eventually
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import assert_problem, buy, create_event, create_ticket_type
from tests.sync_server.messaging.conftest import amqp_url, running  # noqa: F401 - a fixture
from tests.sync_server.messaging.rabbit import publish_raw

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

T = TypeVar("T")
QUICK_RETRIES = RetryPolicy(max_attempts=3, retry_delay_ms=200, delivery_limit=5)
CHAIN_RPC_TIMEOUT_S = 0.5


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture
def minting_settings(chain_server_settings: Settings, amqp_url: str) -> Settings:  # noqa: F811
    chain = dataclasses.replace(
        chain_server_settings.chain, rpc_timeout_seconds=CHAIN_RPC_TIMEOUT_S, max_attempts=3
    )
    return dataclasses.replace(chain_server_settings, chain=chain, amqp=AmqpSettings(url=amqp_url))


class _InAThread(httpx.AsyncBaseTransport):
    """Requests to the app, each made in a worker thread. These tests run the worker (relay,
    consumer, tracker) on their own event loop; an ``AsyncTestClient`` waits for the app with
    that loop blocked, so a request that needs a ticket row the consumer holds would wait for
    ever (the consumer cannot go on to release it). From a thread, the loop keeps running."""

    def __init__(self, client: TestClient[Litestar]) -> None:
        self._client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        answer = await anyio.to_thread.run_sync(
            lambda: self._client.request(
                request.method, str(request.url), headers=request.headers, content=body
            )
        )
        # The content is decoded already: its encoding and length no longer describe it.
        headers = [
            (name, value)
            for name, value in answer.headers.multi_items()
            if name.lower() not in {"content-encoding", "content-length"}
        ]
        return httpx.Response(answer.status_code, headers=headers, content=answer.content)


@pytest.fixture
async def api(minting_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    with TestClient(app=create_app(minting_settings)) as app:
        async with httpx.AsyncClient(
            transport=_InAThread(app), base_url=str(app.base_url)
        ) as client:
            yield client


@pytest.fixture
async def admin(minting_settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The superuser's view (no row-level security): what the tests check against. A test's
    leftover open actions would be picked up by the next test's tracker (another node, other
    keys), so they are closed when the test ends."""
    engine = create_async_engine(minting_settings.database.admin_url)
    try:
        yield engine
        async with engine.begin() as db:
            await db.execute(
                text(
                    "UPDATE pending_transactions SET status = 'failed', error = 'test over' "
                    "WHERE status IN ('queued', 'submitted', 'confirmed')"
                )
            )
    finally:
        await engine.dispose()


@pytest.fixture
async def database(minting_settings: Settings) -> AsyncIterator[Database]:
    database = Database(minting_settings.database)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def rpc(solana_node: LocalSolanaNode) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(solana_node.rpc_url, timeout=5)
    try:
        yield client
    finally:
        await client.close()


@dataclass
class Worker:
    """What the worker process runs, for one test: relay, chain consumer, tracker."""

    relay: OutboxRelay
    consumer: Consumer
    tracker: ChainTracker


def _only(tenant_id: uuid.UUID, handler: Any) -> Any:
    """The production handler, for this test's tenant only: the shared broker also carries
    other test sessions' events, which are none of this test's business."""

    async def handle(event: TicketEvent, session: AsyncSession) -> None:
        if event.tenantid == tenant_id:
            await handler(event, session)

    return handle


@asynccontextmanager
async def worker(
    settings: Settings,
    database: Database,
    tenant: TenantHandle,
    *,
    tracker: bool = True,
) -> AsyncIterator[Worker]:
    """The relay, a ``chain`` consumer on a queue of its own (deleted afterwards) and, unless
    ``tracker`` is False, the tracker — running for the body."""
    name = f"chain-test-{secrets.token_hex(4)}"
    keys = ChainKeys.from_settings(settings.chain)
    consumer = Consumer(
        name,
        ROUTING_KEYS,
        _only(tenant.id, chain_event_handler(keys)),
        database=database,
        amqp_url=settings.amqp.url,
        retry=QUICK_RETRIES,
    )
    relay = OutboxRelay(
        settings.database.relay_connection_url(),
        settings.amqp.url,
        RelayConfig(poll_interval=0.5),
        name=f"relay-{name}",
    )
    parts = Worker(relay, consumer, ChainTracker(database, settings))
    try:
        async with running(relay, consumer, *([parts.tracker] if tracker else [])):
            await eventually(_true(lambda: consumer.stats().connected), "consumer connected")
            yield parts
    finally:
        connection = await aio_pika.connect(settings.amqp.url)
        async with connection:
            channel = await connection.channel()
            for queue in queue_names(name):
                await channel.queue_delete(queue)


def _true(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return check()

    return run


async def _rows(admin: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with admin.connect() as db:
        return list((await db.execute(text(sql), params)).all())


async def actions(admin: AsyncEngine, ticket_id: str) -> list[Any]:
    return await _rows(
        admin,
        "SELECT * FROM pending_transactions WHERE ticket_id = :t ORDER BY created_at, id",
        t=ticket_id,
    )


async def ticket_row(admin: AsyncEngine, ticket_id: str) -> Any:
    return (await _rows(admin, "SELECT * FROM tickets WHERE id = :t", t=ticket_id))[0]


async def minted_events(admin: AsyncEngine, ticket_id: str) -> list[Any]:
    return await _rows(
        admin,
        "SELECT payload FROM outbox WHERE ticket_id = :t AND routing_key = 'ticket.minted'",
        t=ticket_id,
    )


def action_reached(
    admin: AsyncEngine, ticket_id: str, kind: str, *statuses: str
) -> Callable[[], Awaitable[Any]]:
    """A check: the ticket's latest ``kind`` action, once its status is one of ``statuses``."""

    async def check() -> Any:
        found = [row for row in await actions(admin, ticket_id) if row.kind == kind]
        return found[-1] if found and found[-1].status in statuses else None

    return check


async def holding_of(rpc: AsyncClient, mint: Pubkey, owner: Pubkey) -> Any:
    """The owner's associated token account for the mint, read from the chain (or None)."""
    account = (await rpc.get_account_info(holder_token_account(mint, owner))).value
    return None if account is None else read_ticket_holding(bytes(account.data))


async def new_ticket_type(api: httpx.AsyncClient, tenant: TenantHandle) -> str:
    event = await create_event(api, tenant, name="Harbour Lights Festival")
    ticket_type = await create_ticket_type(api, tenant, event["id"], name="Weekend pass")
    return str(ticket_type["id"])


async def purchase(
    api: httpx.AsyncClient, tenant: TenantHandle, wallet: Pubkey | None
) -> dict[str, Any]:
    holder = {"user_id": "guest-1", "name": "Ada Guest"}
    if wallet is not None:
        holder["wallet"] = str(wallet)
    response = await buy(api, tenant, await new_ticket_type(api, tenant), holder=holder)
    assert response.status_code == 201, response.text
    ticket: dict[str, Any] = response.json()["tickets"][0]["ticket"]
    return ticket


# --- deciding (no services) ------------------------------------------------------------------

CUSTODY = str(Keypair().pubkey())
WALLET = str(Keypair().pubkey())
OTHER = str(Keypair().pubkey())
MINT = str(Keypair().pubkey())


def _ticket(**fields: Any) -> Ticket:
    defaults: dict[str, Any] = {
        "status": TicketStatus.ACTIVE.value,
        "holder_wallet": None,
        "nft_mint": None,
        "chain_owner": None,
        "chain_frozen": False,
    }
    return Ticket(**{**defaults, **fields})


@pytest.mark.parametrize(
    ("fields", "in_flight", "expected"),
    [
        ({}, False, Action(ActionKind.MINT, CUSTODY)),
        ({"holder_wallet": WALLET}, False, Action(ActionKind.MINT, WALLET)),
        ({"holder_wallet": WALLET}, True, None),
        ({"status": "checked_in", "holder_wallet": WALLET}, False, Action(ActionKind.MINT, WALLET)),
        ({"status": "revoked"}, False, None),
        ({"status": "expired"}, False, None),
        ({"nft_mint": MINT, "chain_owner": CUSTODY}, False, None),
        (
            {"nft_mint": MINT, "chain_owner": CUSTODY, "holder_wallet": WALLET},
            False,
            Action(ActionKind.TRANSFER, WALLET),
        ),
        ({"nft_mint": MINT, "chain_owner": CUSTODY, "holder_wallet": WALLET}, True, None),
        ({"nft_mint": MINT, "chain_owner": WALLET, "holder_wallet": WALLET}, False, None),
        ({"nft_mint": MINT, "chain_owner": OTHER, "holder_wallet": WALLET}, False, None),
        (
            {"nft_mint": MINT, "chain_owner": WALLET, "status": "revoked"},
            False,
            Action(ActionKind.FREEZE, WALLET),
        ),
        (
            {
                "nft_mint": MINT,
                "chain_owner": CUSTODY,
                "holder_wallet": WALLET,
                "status": "revoked",
            },
            False,
            Action(ActionKind.FREEZE, CUSTODY),
        ),
        ({"nft_mint": MINT, "chain_owner": WALLET, "status": "revoked"}, True, None),
        (
            {"nft_mint": MINT, "chain_owner": WALLET, "status": "revoked", "chain_frozen": True},
            False,
            None,
        ),
    ],
)
def test_next_action_follows_the_ticket_and_waits_for_what_is_in_flight(
    fields: dict[str, Any], in_flight: bool, expected: Action | None
) -> None:
    assert next_action(_ticket(**fields), custody=CUSTODY, in_flight=in_flight) == expected


def test_the_worker_gets_the_chain_consumer_only_with_the_chain_on(
    settings: Settings, chain_server_settings: Settings
) -> None:
    database = Database(settings.database)
    assert chain_consumers(database, settings) == []
    (consumer,) = chain_consumers(database, chain_server_settings)
    assert consumer.name == "chain"
    assert consumer.routing_keys == ROUTING_KEYS


# --- (a) buying mints -------------------------------------------------------------------------


async def test_a_purchase_mints_the_ticket_to_the_holders_wallet(
    api: httpx.AsyncClient,
    tenant: TenantHandle,
    minting_settings: Settings,
    database: Database,
    admin: AsyncEngine,
    solana_node: LocalSolanaNode,
    rpc: AsyncClient,
    chain_keys: ChainKeys,
) -> None:
    holder = Keypair().pubkey()
    async with worker(minting_settings, database, tenant):
        ticket = await purchase(api, tenant, holder)
        mint = chain_keys.mint_keypair(uuid.UUID(ticket["id"])).pubkey()

        # Landed in the current slot: submitted, not yet confirmed.
        sent = await eventually(
            action_reached(admin, ticket["id"], "mint", "submitted"), "the mint submitted"
        )
        assert sent.mint == str(mint)
        assert sent.destination == str(holder)
        assert sent.attempts == 1
        assert sent.last_valid_block_height is not None
        assert (await ticket_row(admin, ticket["id"])).blockchain_sync_status == "pending"
        await eventually(
            lambda: _landed(solana_node, sent.tx_signature), "the transaction on the ledger"
        )

        solana_node.advance(1)
        confirmed = await eventually(
            action_reached(admin, ticket["id"], "mint", "confirmed"), "the mint confirmed"
        )
        assert confirmed.confirmation_count >= 1
        assert confirmed.confirmed_at is not None
        assert (await ticket_row(admin, ticket["id"])).nft_mint is None  # not final yet

        solana_node.finalize()
        done = await eventually(
            action_reached(admin, ticket["id"], "mint", "finalized"), "the mint finalized"
        )

    assert done.confirmation_count >= 32
    assert done.tx_signature == sent.tx_signature
    assert done.slot is not None
    row = await ticket_row(admin, ticket["id"])
    assert (row.nft_mint, row.chain_owner, row.blockchain_sync_status, row.chain_slot) == (
        str(mint),
        str(holder),
        "synced",
        done.slot,
    )
    assert len(await actions(admin, ticket["id"])) == 1

    # The chain itself: the NFT and its metadata, in the holder's wallet.
    on_chain = read_ticket_mint(bytes((await rpc.get_account_info(mint)).value.data))  # type: ignore[union-attr]
    assert on_chain.name == "Harbour Lights Festival"
    assert on_chain.symbol == minting_settings.chain.symbol
    assert on_chain.uri == f"{minting_settings.chain.metadata_base_url}/{mint}"
    assert (on_chain.event_id, on_chain.ticket_type) == (ticket["event_id"], "Weekend pass")
    # Issue 14 item 8: nothing public on the mint names the ticket (the id is in its code).
    raw_mint = bytes((await rpc.get_account_info(mint)).value.data)  # type: ignore[union-attr]
    ticket_uuid = uuid.UUID(ticket["id"])
    for spelling in (ticket["id"], ticket_uuid.hex):
        assert spelling.encode() not in raw_mint
    assert ticket_uuid.bytes not in raw_mint
    assert (on_chain.mint.supply, on_chain.mint.decimals) == (TICKET_SUPPLY, TICKET_DECIMALS)
    assert on_chain.mint.mint_authority is None
    assert on_chain.mint.freeze_authority == chain_keys.issuer.pubkey()
    held = await holding_of(rpc, mint, holder)
    assert (held.owner, held.amount, held.frozen) == (holder, 1, False)

    # Exactly one ticket.minted, with what a consumer needs.
    (event,) = await minted_events(admin, ticket["id"])
    data = event.payload["data"]
    assert event.payload["type"] == "dev.gatehouse.ticket.minted"
    assert data["ticket_id"] == ticket["id"]
    assert (data["mint"], data["owner"], data["custodial"]) == (str(mint), str(holder), False)
    assert (data["signature"], data["slot"]) == (done.tx_signature, done.slot)
    assert data["holder"]["wallet"] == str(holder)
    assert data["actor"] == "system:chain"

    # And the API shows it.
    shown = (await api.get(f"/v1/tickets/{ticket['id']}", headers=tenant.token())).json()
    assert (shown["nft_mint"], shown["blockchain_sync_status"]) == (str(mint), "synced")
    history = (await api.get(f"/v1/tickets/{ticket['id']}/history", headers=tenant.token())).json()
    assert [step["kind"] for step in history] == ["purchased", "minted"]


async def _landed(node: LocalSolanaNode, signature: str | None) -> bool:
    return (
        signature is not None and node.ledger.landed(Signature.from_string(signature)) is not None
    )


# --- (b) custody, transfers and the held_in_wallet rule ---------------------------------------


async def test_custody_hands_the_nft_to_a_new_holders_wallet_and_a_wallet_ticket_stays_put(
    api: httpx.AsyncClient,
    tenant: TenantHandle,
    minting_settings: Settings,
    database: Database,
    admin: AsyncEngine,
    solana_node: LocalSolanaNode,
    rpc: AsyncClient,
    chain_keys: ChainKeys,
) -> None:
    custody = chain_keys.custody.pubkey()
    wallet = Keypair().pubkey()
    transfer_url = "/v1/tickets/{}/transfer"

    async def transfer(ticket_id: str, holder: dict[str, str]) -> Any:
        return await api.post(
            transfer_url.format(ticket_id),
            json={"holder": holder},
            headers={**tenant.token(), "Idempotency-Key": str(uuid.uuid4())},
        )

    async with worker(minting_settings, database, tenant):
        ticket = await purchase(api, tenant, None)
        mint = chain_keys.mint_keypair(uuid.UUID(ticket["id"])).pubkey()
        minted = await eventually(
            action_reached(admin, ticket["id"], "mint", "finalized"),
            "minted to custody",
            tick=solana_node,
        )
        assert minted.destination == str(custody)
        assert (await ticket_row(admin, ticket["id"])).chain_owner == str(custody)
        assert (await holding_of(rpc, mint, custody)).amount == 1

        # A custodial ticket to someone without a wallet: allowed, the NFT stays in custody.
        moved = await transfer(ticket["id"], {"user_id": "guest-2", "name": "Bo Guest"})
        assert moved.status_code == 200, moved.text
        # ...and to someone with a wallet: custody hands the NFT over.
        moved = await transfer(
            ticket["id"], {"user_id": "guest-3", "name": "Cy Guest", "wallet": str(wallet)}
        )
        assert moved.status_code == 200, moved.text
        handed = await eventually(
            action_reached(admin, ticket["id"], "transfer", "finalized"),
            "custody's transfer finalized",
            tick=solana_node,
        )
        assert handed.destination == str(wallet)

        # In the holder's own wallet now: the API cannot move it.
        refused = await transfer(ticket["id"], {"user_id": "guest-4", "name": "Di Guest"})
        assert_problem(refused, 409, "held_in_wallet")
        assert "holder's own wallet" in refused.json()["detail"]

        # Nor a ticket whose mint to a wallet is still in flight.
        in_flight = await purchase(api, tenant, Keypair().pubkey())
        await eventually(
            action_reached(admin, in_flight["id"], "mint", "queued", "submitted", "confirmed"),
            "the second ticket's mint queued",
        )
        refused = await transfer(in_flight["id"], {"user_id": "guest-5", "name": "Ed Guest"})
        assert_problem(refused, 409, "held_in_wallet")

    row = await ticket_row(admin, ticket["id"])
    assert (row.chain_owner, row.blockchain_sync_status, row.holder_wallet) == (
        str(wallet),
        "synced",
        str(wallet),
    )
    assert (await holding_of(rpc, mint, wallet)).amount == 1
    assert (await holding_of(rpc, mint, custody)).amount == 0
    assert [a.kind for a in await actions(admin, ticket["id"])] == ["mint", "transfer"]
    sync_log = await _rows(
        admin,
        "SELECT kind, from_wallet, to_wallet FROM blockchain_sync WHERE ticket_id = :t "
        "ORDER BY slot",
        t=ticket["id"],
    )
    assert [tuple(r) for r in sync_log] == [
        ("mint", None, str(custody)),
        ("transfer", str(custody), str(wallet)),
    ]
    # The refused transfer changed nothing: the holder is still the wallet's owner.
    assert (await ticket_row(admin, ticket["id"])).user_id == "guest-3"
    # With the chain off the same transfer is allowed (the existing API tests cover that path).


# --- (c) revocation freezes -------------------------------------------------------------------


async def test_a_ticket_revoked_while_its_mint_is_in_flight_is_frozen_and_cannot_move(
    api: httpx.AsyncClient,
    tenant: TenantHandle,
    minting_settings: Settings,
    database: Database,
    admin: AsyncEngine,
    solana_node: LocalSolanaNode,
    rpc: AsyncClient,
    chain_keys: ChainKeys,
) -> None:
    holder = Keypair()
    solana_node.ledger.airdrop(holder.pubkey(), LAMPORTS_PER_SOL)
    async with worker(minting_settings, database, tenant):
        ticket = await purchase(api, tenant, holder.pubkey())
        mint = chain_keys.mint_keypair(uuid.UUID(ticket["id"])).pubkey()
        await eventually(
            action_reached(admin, ticket["id"], "mint", "submitted"), "the mint submitted"
        )
        revoked = await api.post(
            f"/v1/tickets/{ticket['id']}/revoke",
            json={"reason": "refunded"},
            headers={**tenant.token(), "Idempotency-Key": str(uuid.uuid4())},
        )
        assert revoked.status_code == 200, revoked.text
        frozen = await eventually(
            action_reached(admin, ticket["id"], "freeze", "finalized"),
            "the freeze finalized",
            tick=solana_node,
        )

    assert frozen.destination == str(holder.pubkey())
    row = await ticket_row(admin, ticket["id"])
    assert (row.status, row.chain_frozen, row.blockchain_sync_status) == ("revoked", True, "synced")
    held = await holding_of(rpc, mint, holder.pubkey())
    assert (held.amount, held.frozen) == (1, True)
    assert [a.kind for a in await actions(admin, ticket["id"])] == ["mint", "freeze"]

    # The holder tries to pass the revoked ticket on from their own wallet: the chain refuses.
    blockhash = (await rpc.get_latest_blockhash()).value.blockhash
    resale = build_transaction(
        transfer_ticket_instructions(
            mint=mint,
            from_wallet=holder.pubkey(),
            to_wallet=Keypair().pubkey(),
            payer=holder.pubkey(),
        ),
        payer=holder,
        blockhash=blockhash,
    )
    with pytest.raises(RPCException) as refused:
        await rpc.send_raw_transaction(bytes(resale))
    answer = refused.value.args[0]
    assert isinstance(answer, SendTransactionPreflightFailureMessage)
    assert any("frozen" in line.lower() for line in answer.data.logs or []), answer.data.logs
    assert (await holding_of(rpc, mint, holder.pubkey())).amount == 1


# --- (d) outages, crashes, expiry, failure ---------------------------------------------------


async def test_an_unreachable_node_leaves_the_mint_waiting_and_it_mints_once_it_answers(
    api: httpx.AsyncClient,
    tenant: TenantHandle,
    minting_settings: Settings,
    database: Database,
    admin: AsyncEngine,
    solana_node: LocalSolanaNode,
    rpc: AsyncClient,
    chain_keys: ChainKeys,
) -> None:
    holder = Keypair().pubkey()
    async with worker(minting_settings, database, tenant) as parts:
        solana_node.pause()
        try:
            ticket = await purchase(api, tenant, holder)
            await eventually(
                action_reached(admin, ticket["id"], "mint", "queued"), "the mint queued"
            )
            await eventually(
                _true(lambda: parts.tracker.stats().outages == 1), "the tracker saw the outage"
            )
            # More polls fail while it is away: logged once, nothing counted against the row.
            seen = parts.tracker.stats().cycles
            await eventually(
                _true(lambda: parts.tracker.stats().cycles >= seen + 2), "two more failed polls"
            )
            assert parts.tracker.stats().outages == 1
            (waiting,) = await actions(admin, ticket["id"])
            assert (waiting.status, waiting.attempts, waiting.tx_signature) == ("queued", 0, None)
            assert (await ticket_row(admin, ticket["id"])).blockchain_sync_status == "pending"
            assert not parts.tracker.stats().reachable
        finally:
            solana_node.resume()
        await eventually(
            action_reached(admin, ticket["id"], "mint", "finalized"),
            "minted after the outage",
            tick=solana_node,
        )
        assert parts.tracker.stats().outages == 1  # logged once, not once per poll
        assert parts.tracker.stats().failed == 0

    (done,) = await actions(admin, ticket["id"])
    assert done.attempts == 1
    assert len(await minted_events(admin, ticket["id"])) == 1
    mint = chain_keys.mint_keypair(uuid.UUID(ticket["id"])).pubkey()
    assert (await holding_of(rpc, mint, holder)).amount == 1


async def _queue_mint(
    database: Database, tenant: TenantHandle, ticket_id: str, keys: ChainKeys
) -> None:
    async with database.tenant(tenant.id) as session:
        ticket = await session.get(Ticket, uuid.UUID(ticket_id), with_for_update=True)
        assert ticket is not None
        assert await reconcile(session, ticket, keys, datetime.now(UTC)) is not None


async def _signed_mint(
    database: Database, tenant: TenantHandle, ticket_id: str, settings: Settings, rpc: AsyncClient
) -> tuple[Any, int]:
    """The minting transaction exactly as the tracker builds it, and its last valid height."""
    keys = ChainKeys.from_settings(settings.chain)
    async with database.tenant(tenant.id) as session:
        ticket = await session.get(Ticket, uuid.UUID(ticket_id))
        assert ticket is not None
        names = (
            await session.execute(
                text(
                    "SELECT e.name, tt.name FROM events e JOIN ticket_types tt "
                    "ON tt.event_id = e.id WHERE tt.id = :type"
                ),
                {"type": ticket.ticket_type_id},
            )
        ).one()
        mint = str(keys.mint_keypair(ticket.id).pubkey())
        metadata = ticket_metadata(ticket, mint, names[0], names[1], settings.chain)
        owner = keys.expected_owner(ticket.holder_wallet)
    rent = (await rpc.get_minimum_balance_for_rent_exemption(ticket_mint_space(metadata)[1])).value
    latest = (await rpc.get_latest_blockhash()).value
    transaction = mint_transaction(
        keys,
        ticket_id=uuid.UUID(ticket_id),
        owner=owner,
        metadata=metadata,
        rent_lamports=rent,
        blockhash=latest.blockhash,
    )
    return transaction, latest.last_valid_block_height


async def _as_a_crashed_tracker_left_it(
    admin: AsyncEngine, ticket_id: str, signature: str, last_valid: int, attempts: int
) -> None:
    """The row as the tracker writes it before sending (write-ahead), then died."""
    async with admin.begin() as db:
        await db.execute(
            text(
                "UPDATE pending_transactions SET status = 'submitted', tx_signature = :s, "
                "attempts = :a, last_valid_block_height = :h, submitted_at = now() "
                "WHERE ticket_id = :t"
            ),
            {"s": signature, "a": attempts, "h": last_valid, "t": ticket_id},
        )


async def test_after_a_crash_a_mint_that_landed_is_finalized_once(
    api: httpx.AsyncClient,
    tenant: TenantHandle,
    minting_settings: Settings,
    database: Database,
    admin: AsyncEngine,
    solana_node: LocalSolanaNode,
    rpc: AsyncClient,
    chain_keys: ChainKeys,
) -> None:
    holder = Keypair().pubkey()
    # A: the tracker wrote 'submitted', sent, and died before it saw the outcome.
    sent = await purchase(api, tenant, holder)
    # B: the mint landed, but the row went back to 'queued' (its landing went unseen): the
    # fresh signature will be refused in preflight (the mint account exists).
    replayed = await purchase(api, tenant, holder)
    for ticket in (sent, replayed):
        await _queue_mint(database, tenant, ticket["id"], chain_keys)
        transaction, last_valid = await _signed_mint(
            database, tenant, ticket["id"], minting_settings, rpc
        )
        await _as_a_crashed_tracker_left_it(
            admin, ticket["id"], str(transaction.signatures[0]), last_valid, attempts=1
        )
        await rpc.send_raw_transaction(bytes(transaction))
    async with admin.begin() as db:
        await db.execute(
            text("UPDATE pending_transactions SET status = 'queued' WHERE ticket_id = :t"),
            {"t": replayed["id"]},
        )
    solana_node.ledger.expire_blockhash()  # B's next signature differs from the one that landed
    first_signatures = {
        t["id"]: (await actions(admin, t["id"]))[0].tx_signature for t in (sent, replayed)
    }

    tracker = ChainTracker(database, minting_settings)
    async with running(tracker):
        for ticket in (sent, replayed):
            await eventually(
                action_reached(admin, ticket["id"], "mint", "finalized"),
                "the landed mint finalized",
                tick=solana_node,
            )

    for ticket in (sent, replayed):
        (action,) = await actions(admin, ticket["id"])
        # The signature of record is the one that landed, whatever was tried after it.
        assert action.tx_signature == first_signatures[ticket["id"]]
        assert len(await minted_events(admin, ticket["id"])) == 1
        row = await ticket_row(admin, ticket["id"])
        mint = chain_keys.mint_keypair(uuid.UUID(ticket["id"])).pubkey()
        assert (row.nft_mint, row.chain_owner, row.blockchain_sync_status) == (
            str(mint),
            str(holder),
            "synced",
        )
        supply = read_ticket_mint(bytes((await rpc.get_account_info(mint)).value.data)).mint.supply  # type: ignore[union-attr]
        assert supply == 1
    (sent_action,) = await actions(admin, sent["id"])
    assert sent_action.attempts == 1  # found by its signature: nothing sent again
    (replayed_action,) = await actions(admin, replayed["id"])
    assert replayed_action.attempts == 2  # tried once more, refused, recognised as done
    assert tracker.stats().failed == 0


async def test_an_expired_blockhash_is_resubmitted_until_max_attempts_then_fails(
    api: httpx.AsyncClient,
    tenant: TenantHandle,
    minting_settings: Settings,
    database: Database,
    admin: AsyncEngine,
    solana_node: LocalSolanaNode,
    rpc: AsyncClient,
    chain_keys: ChainKeys,
) -> None:
    max_attempts = minting_settings.chain.max_attempts
    holder = Keypair().pubkey()
    retried = await purchase(api, tenant, holder)  # one attempt left after the lost one
    given_up = await purchase(api, tenant, holder)  # no attempt left
    lost: dict[str, str] = {}
    for ticket, attempts in ((retried, max_attempts - 1), (given_up, max_attempts)):
        await _queue_mint(database, tenant, ticket["id"], chain_keys)
        transaction, last_valid = await _signed_mint(
            database, tenant, ticket["id"], minting_settings, rpc
        )
        lost[ticket["id"]] = str(transaction.signatures[0])
        # Written ahead, never sent (the process died, or the node dropped it).
        await _as_a_crashed_tracker_left_it(
            admin, ticket["id"], lost[ticket["id"]], last_valid, attempts=attempts
        )
    solana_node.ledger.expire_blockhash()  # those transactions can never land now

    tracker = ChainTracker(database, minting_settings)
    async with running(tracker):
        await eventually(
            _true(lambda: tracker.stats().cycles >= 3), "the tracker polled a few times"
        )
        # Unknown, but their blockhash's last valid height is not passed: they may still land.
        assert {a.status for t in (retried, given_up) for a in await actions(admin, t["id"])} == {
            "submitted"
        }
        solana_node.advance(200)  # beyond the 150 blocks a blockhash is valid for
        failed = await eventually(
            action_reached(admin, given_up["id"], "mint", "failed"), "the last attempt given up"
        )
        done = await eventually(
            action_reached(admin, retried["id"], "mint", "finalized"),
            "the resubmitted mint finalized",
            tick=solana_node,
        )

    assert done.attempts == max_attempts
    assert done.tx_signature != lost[retried["id"]]
    assert "expired" in done.error
    assert len(await minted_events(admin, retried["id"])) == 1

    assert failed.attempts == max_attempts
    assert "expired" in failed.error
    assert f"after {max_attempts} attempts" in failed.error
    row = await ticket_row(admin, given_up["id"])
    assert (row.blockchain_sync_status, row.nft_mint) == ("failed", None)
    assert await minted_events(admin, given_up["id"]) == []
    history = (
        await api.get(f"/v1/tickets/{given_up['id']}/history", headers=tenant.token())
    ).json()
    assert history[-1]["kind"] == "chain_failed"
    assert "expired" in history[-1]["reason"]
    shown = (await api.get(f"/v1/tickets/{given_up['id']}", headers=tenant.token())).json()
    assert shown["blockchain_sync_status"] == "failed"


async def test_an_unfunded_issuer_fails_the_mint_and_a_retry_after_funding_mints_it(
    api: httpx.AsyncClient,
    tenant: TenantHandle,
    minting_settings: Settings,
    database: Database,
    admin: AsyncEngine,
    solana_node: LocalSolanaNode,
    rpc: AsyncClient,
    chain_keys: ChainKeys,
) -> None:
    broke = ChainKeys(issuer=Keypair(), custody=chain_keys.custody)
    settings = dataclasses.replace(
        minting_settings,
        chain=dataclasses.replace(
            minting_settings.chain, issuer_keypair=broke.issuer.to_json(), max_attempts=2
        ),
    )
    ticket = await purchase(api, tenant, None)
    await _queue_mint(database, tenant, ticket["id"], broke)
    tracker = ChainTracker(database, settings)
    async with running(tracker):
        failed = await eventually(
            action_reached(admin, ticket["id"], "mint", "failed"), "the mint given up"
        )
        assert failed.attempts == 2
        assert "refused by the node" in failed.error
        assert (await ticket_row(admin, ticket["id"])).blockchain_sync_status == "failed"
        assert tracker.stats().retried == 1

        # The operator funds the issuer and retries the ticket.
        solana_node.ledger.airdrop(broke.issuer.pubkey(), 10 * LAMPORTS_PER_SOL)
        queued = await retry_ticket(
            database, tenant.id, uuid.UUID(ticket["id"]), broke, datetime.now(UTC)
        )
        assert queued is not None
        await eventually(
            action_reached(admin, ticket["id"], "mint", "finalized"),
            "minted after the retry",
            tick=solana_node,
        )

    assert [a.status for a in await actions(admin, ticket["id"])] == ["failed", "finalized"]
    row = await ticket_row(admin, ticket["id"])
    assert (row.blockchain_sync_status, row.chain_owner) == (
        "synced",
        str(chain_keys.custody.pubkey()),
    )
    mint = broke.mint_keypair(uuid.UUID(ticket["id"])).pubkey()
    assert (await holding_of(rpc, mint, chain_keys.custody.pubkey())).amount == 1
    # Nothing more to do: a second retry queues nothing.
    assert (
        await retry_ticket(database, tenant.id, uuid.UUID(ticket["id"]), broke, datetime.now(UTC))
        is None
    )


# --- (e) duplicates --------------------------------------------------------------------------


async def test_the_same_purchase_delivered_again_mints_once(
    api: httpx.AsyncClient,
    tenant: TenantHandle,
    minting_settings: Settings,
    database: Database,
    admin: AsyncEngine,
    solana_node: LocalSolanaNode,
) -> None:
    async with worker(minting_settings, database, tenant, tracker=False) as parts:
        ticket = await purchase(api, tenant, Keypair().pubkey())
        await eventually(action_reached(admin, ticket["id"], "mint", "queued"), "the mint queued")
        (published,) = await _rows(
            admin,
            "SELECT id, payload FROM outbox WHERE ticket_id = :t "
            "AND routing_key = 'ticket.purchased'",
            t=ticket["id"],
        )
        body = json.dumps(published.payload).encode()
        # The very same message again (a redelivery): skipped by event id...
        await publish_raw(body, "ticket.purchased", message_id=str(published.id))
        await eventually(_true(lambda: parts.consumer.stats().duplicates >= 1), "duplicate")
        # ...and the same purchase under a new event id (a producer's retry): reconcile sees
        # the mint already queued.
        again = uuid.uuid4()
        await publish_raw(
            json.dumps({**published.payload, "id": str(again)}).encode(),
            "ticket.purchased",
            message_id=str(again),
        )

        async def recorded() -> bool:
            rows = await _rows(
                admin, "SELECT 1 FROM processed_events WHERE event_id = :e", e=str(again)
            )
            return bool(rows)

        await eventually(recorded, "the re-sent purchase handled")
        tracker = ChainTracker(database, minting_settings)
        async with running(tracker):
            await eventually(
                action_reached(admin, ticket["id"], "mint", "finalized"),
                "minted",
                tick=solana_node,
            )
            # A late duplicate after the mint: still nothing new.
            late = uuid.uuid4()
            await publish_raw(
                json.dumps({**published.payload, "id": str(late)}).encode(),
                "ticket.purchased",
                message_id=str(late),
            )
            await eventually(lambda: _rows_exist(admin, str(late)), "the late duplicate handled")
    assert [a.kind for a in await actions(admin, ticket["id"])] == ["mint"]
    assert len(await minted_events(admin, ticket["id"])) == 1


async def _rows_exist(admin: AsyncEngine, event_id: str) -> bool:
    rows = await _rows(admin, "SELECT 1 FROM processed_events WHERE event_id = :e", e=event_id)
    return bool(rows)
