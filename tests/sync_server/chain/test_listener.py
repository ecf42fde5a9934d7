"""The chain listener against the local Solana node (real HTTP and WebSocket, the production
``solana`` client) and the real Postgres: tickets are bought through the API, their NFTs are
minted directly on the node (as the minting worker would), and then moved on-chain."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from solana.rpc.async_api import AsyncClient
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from sqlalchemy import text

from sync_server.chain.client import ChainKeys
from sync_server.chain.listener import ChainListener, ListenerConfig
from sync_server.chain.nft import (
    build_transaction,
    burn_ticket_instruction,
    transfer_ticket_instructions,
)
from sync_server.chain.ticket_updates import holder_label
from sync_server.db.engine import Database
from sync_server.settings import ChainSettings, Settings
from testkit.solana.localnode import LocalSolanaNode
from tests.sync_server.chain.onchain_tickets import eventually, mint_nft, send
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import (
    Client,
    buy,
    connect,
    create_event,
    create_ticket_type,
    enrolled_device,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SOL = 1_000_000_000
T = TypeVar("T")


# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = Database(settings.database)
    yield db
    await db.close()


@pytest.fixture
async def rpc(solana_node: LocalSolanaNode) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(solana_node.rpc_url, timeout=2, max_transport_retries=0) as client:
        yield client


def _wallet(node: LocalSolanaNode) -> Keypair:
    """A wallet with SOL for fees and the rent of a recipient's token account."""
    wallet = Keypair()
    node.ledger.airdrop(wallet.pubkey(), SOL)
    return wallet


async def _rows(settings: Settings, sql: str, **params: Any) -> list[Any]:
    async with connect(settings.database.admin_url) as connection:
        return list((await connection.execute(text(sql), params)).all())


async def _execute(settings: Settings, sql: str, **params: Any) -> None:
    async with connect(settings.database.admin_url) as connection:
        await connection.execute(text(sql), params)
        await connection.commit()


async def _ticket(settings: Settings, ticket_id: str) -> Any:
    rows = await _rows(settings, "SELECT * FROM tickets WHERE id = :t", t=ticket_id)
    return rows[0]


def _submit_in_process(
    node: LocalSolanaNode, instructions: list[Instruction], payer: Keypair
) -> Signature:
    """Send straight into the ledger: works while the node's HTTP and WebSocket are paused."""
    tx = build_transaction(instructions, payer=payer, blockhash=node.ledger.svm.latest_blockhash())
    signature = node.ledger.submit(VersionedTransaction.from_legacy(tx))
    node.ledger.advance(1)
    return signature


def _move(mint: Pubkey, holder: Keypair, to: Pubkey) -> list[Instruction]:
    return transfer_ticket_instructions(
        mint=mint, from_wallet=holder.pubkey(), to_wallet=to, payer=holder.pubkey()
    )


@dataclass(frozen=True)
class MintedTicket:
    id: str
    event_id: str
    code: str
    mint: Pubkey
    mint_signature: Signature


async def _minted_tickets(
    client: Client,
    tenant: TenantHandle,
    settings: Settings,
    rpc: AsyncClient,
    node: LocalSolanaNode,
    keys: ChainKeys,
    holder_wallet: Pubkey | None,
    quantity: int = 1,
) -> list[MintedTicket]:
    """Tickets bought through the API, minted on the node to whom the database expects (the
    holder's wallet, or custody), and recorded as the minting worker would: ``nft_mint``,
    ``chain_owner``, ``chain_slot``, ``synced``."""
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    holder = {"user_id": "user-1", "name": "Ada Guest"}
    if holder_wallet is not None:
        holder["wallet"] = str(holder_wallet)
    response = await buy(client, tenant, ticket_type["id"], quantity, holder=holder)
    assert response.status_code == 201, response.text
    minted = []
    for item in response.json()["tickets"]:
        ticket_id = item["ticket"]["id"]
        mint = keys.mint_keypair(uuid.UUID(ticket_id))
        owner = keys.expected_owner(str(holder_wallet) if holder_wallet else None)
        signature = await mint_nft(
            rpc, node, issuer=keys.issuer, mint=mint, holder=owner, ticket_id=ticket_id
        )
        landed = node.ledger.landed(signature)
        assert landed is not None
        await _execute(
            settings,
            "UPDATE tickets SET nft_mint = :mint, chain_owner = :owner, chain_slot = :slot, "
            "blockchain_sync_status = 'synced' WHERE id = :t",
            mint=str(mint.pubkey()),
            owner=str(owner),
            slot=landed.slot,
            t=ticket_id,
        )
        minted.append(MintedTicket(ticket_id, event["id"], item["code"], mint.pubkey(), signature))
    return minted


@asynccontextmanager
async def _listening(
    database: Database,
    chain_settings: ChainSettings,
    keys: ChainKeys,
    reconcile_seconds: float = 30.0,
) -> AsyncIterator[ChainListener]:
    """A running listener, following the chain (subscribed and backfilled) when yielded."""
    listener = ChainListener(
        database,
        chain_settings,
        ListenerConfig(reconcile_seconds=reconcile_seconds, backoff_initial=0.05, backoff_max=0.5),
        keys=keys,
    )
    task = asyncio.create_task(listener.run())

    async def following() -> bool:
        assert not task.done(), task
        return listener.stats().following

    try:
        await eventually(following, "the listener to follow the chain")
        yield listener
    finally:
        listener.stop()
        await asyncio.wait_for(task, 30)  # a hang detector: run() must return after stop()


async def _sync_rows(settings: Settings, ticket_id: str) -> list[Any]:
    return await _rows(
        settings,
        "SELECT signature, slot, kind, from_wallet, to_wallet, block_time FROM blockchain_sync "
        "WHERE ticket_id = :t ORDER BY slot, processed_at",
        t=ticket_id,
    )


async def _transferred_events(settings: Settings, ticket_id: str) -> list[dict[str, Any]]:
    rows = await _rows(
        settings,
        "SELECT payload FROM outbox WHERE ticket_id = :t AND routing_key = 'ticket.transferred' "
        "ORDER BY seq",
        t=ticket_id,
    )
    return [row.payload["data"] for row in rows]


# --- tests ----------------------------------------------------------------------------------


async def test_a_transfer_from_the_holders_wallet_moves_the_ticket_and_supersedes_the_old_code(
    client: Client,
    tenant: TenantHandle,
    settings: Settings,
    database: Database,
    solana_node: LocalSolanaNode,
    rpc: AsyncClient,
    chain_keys: ChainKeys,
    chain_settings: ChainSettings,
) -> None:
    alice, bob = _wallet(solana_node), Keypair()
    [ticket] = await _minted_tickets(
        client, tenant, settings, rpc, solana_node, chain_keys, alice.pubkey()
    )
    device = await enrolled_device(client, tenant, ticket.event_id)

    async with _listening(database, chain_settings, chain_keys) as listener:
        # The backfill on connecting logged the mint, which changed nothing: it was expected.
        assert [
            (r.signature, r.kind, r.from_wallet, r.to_wallet)
            for r in await _sync_rows(settings, ticket.id)
        ] == [(str(ticket.mint_signature), "mint", None, str(alice.pubkey()))]

        signature = await send(rpc, solana_node, _move(ticket.mint, alice, bob.pubkey()), alice)

        async def moved() -> Any:
            row = await _ticket(settings, ticket.id)
            return row if row.holder_wallet == str(bob.pubkey()) else None

        row = await eventually(moved, "the ticket to follow the NFT to bob")
        stats = listener.stats()

    landed = solana_node.ledger.landed(signature)
    assert landed is not None
    assert row.chain_owner == str(bob.pubkey())
    assert row.chain_slot == landed.slot
    assert row.user_id == f"wallet:{bob.pubkey()}"
    assert row.holder_name == holder_label(str(bob.pubkey()))
    assert row.secret_version == 1
    assert row.status == "active"
    assert row.blockchain_sync_status == "synced"

    logged = [r for r in await _sync_rows(settings, ticket.id) if r.signature == str(signature)]
    assert len(logged) == 1
    assert logged[0].kind == "transfer"
    assert (logged[0].from_wallet, logged[0].to_wallet) == (str(alice.pubkey()), str(bob.pubkey()))
    assert logged[0].slot == landed.slot
    assert logged[0].block_time is not None

    [event] = await _transferred_events(settings, ticket.id)
    assert event["source"] == "chain"
    assert event["actor"] == "chain"
    assert event["signature"] == str(signature)
    assert event["slot"] == landed.slot
    assert event["secret_version"] == 1
    assert event["holder"]["wallet"] == str(bob.pubkey())
    assert event["previous_holder"] == {
        "user_id": "user-1",
        "name": "Ada Guest",
        "wallet": str(alice.pubkey()),
    }
    history = (await client.get(f"/v1/tickets/{ticket.id}/history", headers=tenant.token())).json()
    assert [(h["kind"], h["actor"]) for h in history][-1] == ("transferred", "chain")
    assert history[-1]["details"]["signature"] == str(signature)
    assert stats.holder_changes == 1
    assert stats.applied == 2  # the mint (backfilled) and the transfer

    # The old holder's code is dead online at once.
    verdict = await client.post("/v1/validate", json={"code": ticket.code}, headers=device.headers)
    assert verdict.status_code == 422, verdict.text
    assert verdict.json()["reason"] == "superseded"
    # The API serves the new holder (its cache was told of the write).
    served = (await client.get(f"/v1/tickets/{ticket.id}", headers=tenant.token())).json()
    assert served["holder"]["wallet"] == str(bob.pubkey())
    assert served["secret_version"] == 1


async def test_transfers_made_while_disconnected_are_backfilled_once(
    client: Client,
    tenant: TenantHandle,
    settings: Settings,
    database: Database,
    solana_node: LocalSolanaNode,
    rpc: AsyncClient,
    chain_keys: ChainKeys,
    chain_settings: ChainSettings,
) -> None:
    alice, bob, carol = (_wallet(solana_node) for _ in range(3))
    [ticket] = await _minted_tickets(
        client, tenant, settings, rpc, solana_node, chain_keys, alice.pubkey()
    )
    async with _listening(database, chain_settings, chain_keys) as listener:
        applied_before = listener.stats().applied
        solana_node.pause()
        try:
            assert solana_node.drop_websockets() == 1
            first = _submit_in_process(solana_node, _move(ticket.mint, alice, bob.pubkey()), alice)
            second = _submit_in_process(solana_node, _move(ticket.mint, bob, carol.pubkey()), bob)

            async def lost() -> bool:
                return listener.stats().outages == 1

            await eventually(lost, "the listener to notice the outage")
        finally:
            solana_node.resume()

        async def caught_up() -> Any:
            row = await _ticket(settings, ticket.id)
            following = listener.stats().following
            return row if following and row.holder_wallet == str(carol.pubkey()) else None

        row = await eventually(caught_up, "the listener to reconnect and backfill")
        stats = listener.stats()
        assert stats.connections == 2
        assert stats.applied == applied_before + 2
        assert stats.holder_changes == 2

        # Another reconnection backfills again, and finds nothing new to apply.
        assert solana_node.drop_websockets() == 1

        async def reconnected() -> bool:
            return listener.stats().connections == 3 and listener.stats().following

        await eventually(reconnected, "the listener to reconnect again")
        assert listener.stats().applied == stats.applied
        assert listener.stats().holder_changes == 2

    assert row.chain_owner == str(carol.pubkey())
    assert row.secret_version == 2
    logged = await _sync_rows(settings, ticket.id)
    assert [(r.signature, r.kind) for r in logged] == [
        (str(ticket.mint_signature), "mint"),
        (str(first), "transfer"),
        (str(second), "transfer"),
    ]
    events = await _transferred_events(settings, ticket.id)
    assert [(e["signature"], e["holder"]["wallet"], e["secret_version"]) for e in events] == [
        (str(first), str(bob.pubkey()), 1),
        (str(second), str(carol.pubkey()), 2),
    ]


async def test_an_api_made_move_is_logged_without_a_new_secret_or_event(
    client: Client,
    tenant: TenantHandle,
    settings: Settings,
    database: Database,
    solana_node: LocalSolanaNode,
    rpc: AsyncClient,
    chain_keys: ChainKeys,
    chain_settings: ChainSettings,
) -> None:
    bob = Keypair()
    # No wallet: the NFT is minted to custody.
    [ticket] = await _minted_tickets(client, tenant, settings, rpc, solana_node, chain_keys, None)
    async with _listening(database, chain_settings, chain_keys) as listener:
        transferred = await client.post(
            f"/v1/tickets/{ticket.id}/transfer",
            json={"holder": {"user_id": "user-2", "name": "Bea", "wallet": str(bob.pubkey())}},
            headers={**tenant.token(), "Idempotency-Key": str(uuid.uuid4())},
        )
        assert transferred.status_code == 200, transferred.text
        # What the minting worker does for that transfer: custody hands the NFT over.
        custody = chain_keys.custody
        signature = await send(rpc, solana_node, _move(ticket.mint, custody, bob.pubkey()), custody)

        async def logged() -> list[Any]:
            rows = await _sync_rows(settings, ticket.id)
            return [r for r in rows if r.signature == str(signature)]

        [row] = await eventually(logged, "the listener to log the custody transfer")
        stats = listener.stats()

    assert (row.kind, row.from_wallet, row.to_wallet) == (
        "transfer",
        str(custody.pubkey()),
        str(bob.pubkey()),
    )
    ticket_row = await _ticket(settings, ticket.id)
    assert ticket_row.chain_owner == str(bob.pubkey())
    assert (ticket_row.user_id, ticket_row.holder_name) == ("user-2", "Bea")
    assert ticket_row.secret_version == 1  # the API's bump only
    events = await _transferred_events(settings, ticket.id)
    assert len(events) == 1
    assert "source" not in events[0]  # the API's own event
    assert stats.holder_changes == 0


async def test_transactions_of_mints_that_are_not_ours_are_ignored(
    client: Client,
    tenant: TenantHandle,
    settings: Settings,
    database: Database,
    solana_node: LocalSolanaNode,
    rpc: AsyncClient,
    chain_keys: ChainKeys,
    chain_settings: ChainSettings,
) -> None:
    alice, bob = _wallet(solana_node), _wallet(solana_node)
    [ticket] = await _minted_tickets(
        client, tenant, settings, rpc, solana_node, chain_keys, alice.pubkey()
    )
    stranger = _wallet(solana_node)
    foreign_mint = Keypair()
    async with _listening(database, chain_settings, chain_keys) as listener:
        ignored_before = listener.stats().ignored
        foreign = [
            await mint_nft(
                rpc,
                solana_node,
                issuer=stranger,
                mint=foreign_mint,
                holder=alice.pubkey(),
                ticket_id="not-ours",
            ),
            await send(rpc, solana_node, _move(foreign_mint.pubkey(), alice, bob.pubkey()), alice),
        ]
        # One of ours after them: once it is applied, the two before it were handled.
        ours = await send(rpc, solana_node, _move(ticket.mint, alice, bob.pubkey()), alice)

        async def applied() -> list[Any]:
            rows = await _sync_rows(settings, ticket.id)
            return [r for r in rows if r.signature == str(ours)]

        await eventually(applied, "our own transfer to be applied")
        assert listener.stats().ignored == ignored_before + 2

    logged = await _rows(
        settings,
        "SELECT count(*) AS n FROM blockchain_sync WHERE signature = ANY(:s)",
        s=[str(s) for s in foreign],
    )
    assert logged[0].n == 0


async def test_flagged_tickets_are_reconciled_with_the_chain(
    client: Client,
    tenant: TenantHandle,
    settings: Settings,
    database: Database,
    solana_node: LocalSolanaNode,
    rpc: AsyncClient,
    chain_keys: ChainKeys,
    chain_settings: ChainSettings,
) -> None:
    alice = _wallet(solana_node)
    disagreeing, agreeing = await _minted_tickets(
        client, tenant, settings, rpc, solana_node, chain_keys, alice.pubkey(), quantity=2
    )
    dave = Keypair().pubkey()
    async with _listening(database, chain_settings, chain_keys, reconcile_seconds=0.2) as listener:
        # The database says dave holds one (no transaction says so), and the gate flagged both.
        await _execute(
            settings,
            "UPDATE tickets SET holder_wallet = :dave, blockchain_sync_status = 'out_of_sync' "
            "WHERE id = :t",
            dave=str(dave),
            t=disagreeing.id,
        )
        await _execute(
            settings,
            "UPDATE tickets SET blockchain_sync_status = 'out_of_sync' WHERE id = :t",
            t=agreeing.id,
        )

        async def settled() -> bool:
            rows = [await _ticket(settings, t.id) for t in (disagreeing, agreeing)]
            return all(row.blockchain_sync_status == "synced" for row in rows)

        await eventually(settled, "both flagged tickets to be reconciled")
        assert listener.stats().reconciled == 2

    row = await _ticket(settings, disagreeing.id)
    assert row.holder_wallet == str(alice.pubkey())  # the chain won
    assert row.chain_owner == str(alice.pubkey())
    assert row.secret_version == 1
    reconciled = [r for r in await _sync_rows(settings, disagreeing.id) if r.kind == "reconcile"]
    assert len(reconciled) == 1
    assert reconciled[0].signature is None
    assert reconciled[0].to_wallet == str(alice.pubkey())
    [event] = await _transferred_events(settings, disagreeing.id)
    assert event["source"] == "chain"
    assert event["chain_kind"] == "reconcile"
    assert event["previous_holder"]["wallet"] == str(dave)

    untouched = await _ticket(settings, agreeing.id)
    assert untouched.holder_wallet == str(alice.pubkey())
    assert untouched.secret_version == 0
    assert [r.kind for r in await _sync_rows(settings, agreeing.id)] == ["mint"]
    assert await _transferred_events(settings, agreeing.id) == []


async def test_a_burned_ticket_has_no_owner_on_chain_and_keeps_its_holder(
    client: Client,
    tenant: TenantHandle,
    settings: Settings,
    database: Database,
    solana_node: LocalSolanaNode,
    rpc: AsyncClient,
    chain_keys: ChainKeys,
    chain_settings: ChainSettings,
) -> None:
    alice = _wallet(solana_node)
    [ticket] = await _minted_tickets(
        client, tenant, settings, rpc, solana_node, chain_keys, alice.pubkey()
    )
    async with _listening(database, chain_settings, chain_keys):
        signature = await send(
            rpc,
            solana_node,
            [burn_ticket_instruction(mint=ticket.mint, wallet=alice.pubkey())],
            alice,
        )

        async def logged() -> list[Any]:
            rows = await _sync_rows(settings, ticket.id)
            return [r for r in rows if r.signature == str(signature)]

        [row] = await eventually(logged, "the burn to be logged")

    assert (row.kind, row.from_wallet, row.to_wallet) == ("burn", str(alice.pubkey()), None)
    ticket_row = await _ticket(settings, ticket.id)
    assert ticket_row.chain_owner is None
    assert ticket_row.holder_wallet == str(alice.pubkey())
    assert ticket_row.secret_version == 0
    assert await _transferred_events(settings, ticket.id) == []


async def test_two_listeners_apply_a_transfer_once(
    client: Client,
    tenant: TenantHandle,
    settings: Settings,
    database: Database,
    solana_node: LocalSolanaNode,
    rpc: AsyncClient,
    chain_keys: ChainKeys,
    chain_settings: ChainSettings,
) -> None:
    alice, bob = _wallet(solana_node), Keypair()
    [ticket] = await _minted_tickets(
        client, tenant, settings, rpc, solana_node, chain_keys, alice.pubkey()
    )
    async with (
        _listening(database, chain_settings, chain_keys) as first,
        _listening(database, chain_settings, chain_keys) as second,
    ):
        before = [(s.applied, s.duplicates) for s in (first.stats(), second.stats())]
        signature = await send(rpc, solana_node, _move(ticket.mint, alice, bob.pubkey()), alice)

        async def both_saw_it() -> bool:
            seen = [
                (s.applied - applied) + (s.duplicates - duplicates)
                for s, (applied, duplicates) in zip(
                    (first.stats(), second.stats()), before, strict=True
                )
            ]
            return seen == [1, 1]

        await eventually(both_saw_it, "both listeners to handle the transfer")
        assert first.stats().holder_changes + second.stats().holder_changes == 1
        assert first.stats().duplicates + second.stats().duplicates - sum(d for _, d in before) == 1

    logged = [r for r in await _sync_rows(settings, ticket.id) if r.signature == str(signature)]
    assert len(logged) == 1
    assert len(await _transferred_events(settings, ticket.id)) == 1
    assert (await _ticket(settings, ticket.id)).secret_version == 1


async def test_a_checked_in_ticket_follows_the_chain_and_keeps_its_check_in(
    client: Client,
    tenant: TenantHandle,
    settings: Settings,
    database: Database,
    solana_node: LocalSolanaNode,
    rpc: AsyncClient,
    chain_keys: ChainKeys,
    chain_settings: ChainSettings,
) -> None:
    alice, bob = _wallet(solana_node), Keypair()
    [ticket] = await _minted_tickets(
        client, tenant, settings, rpc, solana_node, chain_keys, alice.pubkey()
    )
    device = await enrolled_device(client, tenant, ticket.event_id)
    admitted = await client.post("/v1/validate", json={"code": ticket.code}, headers=device.headers)
    assert admitted.status_code == 200, admitted.text
    async with _listening(database, chain_settings, chain_keys):
        await send(rpc, solana_node, _move(ticket.mint, alice, bob.pubkey()), alice)

        async def moved() -> Any:
            row = await _ticket(settings, ticket.id)
            return row if row.holder_wallet == str(bob.pubkey()) else None

        row = await eventually(moved, "the checked-in ticket to follow the NFT")

    assert row.status == "checked_in"
    assert row.secret_version == 1
    [event] = await _transferred_events(settings, ticket.id)
    assert event["status"] == "checked_in"
    again = await client.post("/v1/validate", json={"code": ticket.code}, headers=device.headers)
    assert again.json()["reason"] == "superseded"
