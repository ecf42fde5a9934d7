"""On-chain ownership at the gate: ``POST /v1/validate`` asking the local Solana node (over real
HTTP JSON-RPC, with the production client) who holds a ticket's NFT, behind the gate's timeout
and the shared ``solana-rpc`` circuit breaker. Real Postgres and Redis.

The NFTs are minted here by hand (``onchain_tickets``), as the minting worker would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar import Litestar
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from spl.token.constants import TOKEN_2022_PROGRAM_ID
from spl.token.instructions import initialize_account3, transfer_checked
from spl.token.models import InitializeAccount3Params, TransferCheckedParams
from sqlalchemy import text

from shared.ids import new_id
from sync_server.app import create_app
from sync_server.chain.client import ChainKeys
from sync_server.chain.nft import build_transaction, burn_ticket_instruction, holder_token_account
from sync_server.redis.breakers import Breakers, BreakerState
from sync_server.redis.link import RedisLink
from sync_server.settings import BreakerSettings, Settings
from testkit.solana.localnode import LocalSolanaNode
from tests.sync_server.chain.onchain_tickets import (
    mint_ticket_nft,
    record_on_ticket,
    sync_status,
    transfer_ticket_nft,
)
from tests.sync_server.conftest import METRICS_HEADERS, TenantHandle
from tests.sync_server.helpers import (
    HOLDER,
    Client,
    DeviceHandle,
    buy,
    connect,
    create_event,
    create_ticket_type,
    enrolled_device,
    sample_value,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

THRESHOLD = 3
OPEN_SECONDS = 1.0
#: A hang detector, not a latency assertion: a verdict held up by a silent node for this long
#: means the gate's own timeout never fired.
HANG_S = 30.0
RPC = "solana-rpc"
TOKEN_ACCOUNT_SIZE = 165  # a token account without extensions
OWNERSHIP_LOG = "sync_server.domain.chain.ownership"


@pytest.fixture
def gate_settings(chain_server_settings: Settings) -> Settings:
    redis = chain_server_settings.redis
    return dataclasses.replace(
        chain_server_settings,
        # Generous for a loaded 2-core test machine (the production default is 0.25 s): a
        # healthy node must never look slow here, or a verified verdict would flake to null.
        chain=dataclasses.replace(chain_server_settings.chain, ownership_timeout_seconds=1.0),
        breakers=BreakerSettings(failure_threshold=THRESHOLD, open_seconds=OPEN_SECONDS),
        # This test's own circuits: the solana-rpc breaker it opens is nobody else's.
        redis=dataclasses.replace(
            redis, key_prefix=f"{redis.key_prefix}gate-{secrets.token_hex(4)}:"
        ),
    )


@pytest.fixture
def app(gate_settings: Settings) -> Litestar:
    return create_app(gate_settings)


@pytest.fixture
async def rpc(solana_node: LocalSolanaNode) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(solana_node.rpc_url, timeout=10) as client:
        yield client


@dataclasses.dataclass(frozen=True)
class Sold:
    event_id: str
    tickets: list[tuple[uuid.UUID, str]]  # (ticket id, code)
    device: DeviceHandle


async def _sold(
    client: Client, tenant: TenantHandle, quantity: int = 1, wallet: Pubkey | None = None
) -> Sold:
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    holder = {**HOLDER, "wallet": str(wallet)} if wallet else HOLDER
    bought = await buy(client, tenant, ticket_type["id"], quantity, holder=holder)
    assert bought.status_code == 201, bought.text
    tickets = [(uuid.UUID(t["ticket"]["id"]), t["code"]) for t in bought.json()["tickets"]]
    device = await enrolled_device(client, tenant, event["id"])
    return Sold(event["id"], tickets, device)


async def _minted(
    rpc: AsyncClient,
    node: LocalSolanaNode,
    keys: ChainKeys,
    settings: Settings,
    ticket_id: uuid.UUID,
    holder: Pubkey,
    status: str = "synced",
) -> Pubkey:
    """The ticket's NFT minted to ``holder`` and recorded on its row with ``status``."""
    mint = await mint_ticket_nft(rpc, node, keys, ticket_id, holder)
    await record_on_ticket(settings, ticket_id, mint=mint, owner=holder, status=status)
    return mint


async def _validate(client: Client, device: DeviceHandle, code: str) -> Any:
    return await asyncio.wait_for(
        client.post("/v1/validate", json={"code": code}, headers=device.headers), HANG_S
    )


async def _admitted_scans(settings: Settings, ticket_id: uuid.UUID) -> int:
    async with connect(settings.database.admin_url) as connection:
        count = await connection.scalar(
            text("SELECT count(*) FROM ticket_scans WHERE ticket_id = :id AND result = 'admitted'"),
            {"id": ticket_id},
        )
    return int(count or 0)


async def test_a_ticket_in_its_holders_wallet_is_admitted_chain_verified(
    client: Client,
    tenant: TenantHandle,
    gate_settings: Settings,
    solana_node: LocalSolanaNode,
    chain_keys: ChainKeys,
    rpc: AsyncClient,
) -> None:
    holder = Keypair()
    sold = await _sold(client, tenant, wallet=holder.pubkey())
    ticket_id, code = sold.tickets[0]
    await _minted(rpc, solana_node, chain_keys, gate_settings, ticket_id, holder.pubkey())

    response = await _validate(client, sold.device, code)

    assert response.status_code == 200, response.text
    verdict = response.json()
    assert verdict["result"] == "admitted"
    assert verdict["chain_verified"] is True
    assert await sync_status(gate_settings, ticket_id) == "synced"


async def test_a_custodial_ticket_held_by_custody_is_admitted_chain_verified(
    client: Client,
    tenant: TenantHandle,
    gate_settings: Settings,
    solana_node: LocalSolanaNode,
    chain_keys: ChainKeys,
    rpc: AsyncClient,
) -> None:
    sold = await _sold(client, tenant, quantity=2)  # a holder without a wallet
    (custodial, code), (elsewhere, other_code) = sold.tickets
    await _minted(
        rpc, solana_node, chain_keys, gate_settings, custodial, chain_keys.custody.pubkey()
    )
    # The issuer is not custody here (the fixture makes two wallets): holding it is a mismatch.
    await _minted(
        rpc, solana_node, chain_keys, gate_settings, elsewhere, chain_keys.issuer.pubkey()
    )

    admitted = await _validate(client, sold.device, code)
    refused = await _validate(client, sold.device, other_code)

    assert admitted.status_code == 200, admitted.text
    assert admitted.json()["chain_verified"] is True
    assert refused.status_code == 422, refused.text
    assert refused.json()["reason"] == "ownership_mismatch"


async def test_a_ticket_moved_on_chain_is_refused_as_an_ownership_mismatch_and_flagged(
    client: Client,
    tenant: TenantHandle,
    gate_settings: Settings,
    solana_node: LocalSolanaNode,
    chain_keys: ChainKeys,
    rpc: AsyncClient,
) -> None:
    holder, buyer = Keypair(), Keypair()
    sold = await _sold(client, tenant, wallet=holder.pubkey())
    ticket_id, code = sold.tickets[0]
    mint = await _minted(rpc, solana_node, chain_keys, gate_settings, ticket_id, holder.pubkey())
    # Sold on a marketplace: the holder signs a transfer we know nothing about.
    await transfer_ticket_nft(rpc, solana_node, chain_keys, mint, holder, buyer.pubkey())

    response = await _validate(client, sold.device, code)

    assert response.status_code == 422, response.text
    verdict = response.json()
    assert verdict["result"] == "rejected"
    assert verdict["reason"] == "ownership_mismatch"
    assert verdict["chain_verified"] is False
    assert verdict["ticket_id"] == str(ticket_id)  # staff see whose ticket it was
    assert await _admitted_scans(gate_settings, ticket_id) == 0
    assert await sync_status(gate_settings, ticket_id) == "out_of_sync"
    ticket = (await client.get(f"/v1/tickets/{ticket_id}", headers=tenant.token())).json()
    assert ticket["status"] == "active"  # nothing admitted
    assert ticket["blockchain_sync_status"] == "out_of_sync"  # the cache was cleared too

    # Flagged, it is still asked about (the chain may have moved back): still refused.
    again = await _validate(client, sold.device, code)
    assert again.json()["reason"] == "ownership_mismatch"
    assert await _admitted_scans(gate_settings, ticket_id) == 0


async def test_a_burned_ticket_is_an_ownership_mismatch(
    client: Client,
    tenant: TenantHandle,
    gate_settings: Settings,
    solana_node: LocalSolanaNode,
    chain_keys: ChainKeys,
    rpc: AsyncClient,
) -> None:
    holder = Keypair()
    sold = await _sold(client, tenant, wallet=holder.pubkey())
    ticket_id, code = sold.tickets[0]
    mint = await _minted(rpc, solana_node, chain_keys, gate_settings, ticket_id, holder.pubkey())
    blockhash = (await rpc.get_latest_blockhash()).value.blockhash
    burn = build_transaction(
        [burn_ticket_instruction(mint=mint, wallet=holder.pubkey())],
        payer=chain_keys.issuer,
        signers=[holder],
        blockhash=blockhash,
    )
    await rpc.send_raw_transaction(bytes(burn))
    solana_node.advance(1)

    response = await _validate(client, sold.device, code)

    assert response.status_code == 422, response.text
    assert response.json()["reason"] == "ownership_mismatch"
    assert await sync_status(gate_settings, ticket_id) == "out_of_sync"


async def test_the_holders_own_non_associated_account_counts_as_holding_it(
    client: Client,
    tenant: TenantHandle,
    gate_settings: Settings,
    solana_node: LocalSolanaNode,
    chain_keys: ChainKeys,
    rpc: AsyncClient,
) -> None:
    """The second path of the check: the associated account is empty, but another token
    account of the same wallet holds the ticket. Not a mismatch."""
    holder = Keypair()
    sold = await _sold(client, tenant, wallet=holder.pubkey())
    ticket_id, code = sold.tickets[0]
    mint = await _minted(rpc, solana_node, chain_keys, gate_settings, ticket_id, holder.pubkey())
    side = Keypair()  # a plain Token-2022 account of the holder's, at an address of its own
    rent = (await rpc.get_minimum_balance_for_rent_exemption(TOKEN_ACCOUNT_SIZE)).value
    instructions = [
        create_account(
            CreateAccountParams(
                from_pubkey=chain_keys.issuer.pubkey(),
                to_pubkey=side.pubkey(),
                lamports=rent,
                space=TOKEN_ACCOUNT_SIZE,
                owner=TOKEN_2022_PROGRAM_ID,
            )
        ),
        initialize_account3(
            InitializeAccount3Params(
                program_id=TOKEN_2022_PROGRAM_ID,
                account=side.pubkey(),
                mint=mint,
                owner=holder.pubkey(),
            )
        ),
        transfer_checked(
            TransferCheckedParams(
                program_id=TOKEN_2022_PROGRAM_ID,
                source=holder_token_account(mint, holder.pubkey()),
                mint=mint,
                dest=side.pubkey(),
                owner=holder.pubkey(),
                amount=1,
                decimals=0,
            )
        ),
    ]
    blockhash = (await rpc.get_latest_blockhash()).value.blockhash
    moved = build_transaction(
        instructions, payer=chain_keys.issuer, signers=[side, holder], blockhash=blockhash
    )
    await rpc.send_raw_transaction(bytes(moved))
    solana_node.advance(1)
    ata = await rpc.get_account_info(holder_token_account(mint, holder.pubkey()))
    assert ata.value is not None  # still there, now empty: the first read finds no ticket

    response = await _validate(client, sold.device, code)

    assert response.status_code == 200, response.text
    assert response.json()["chain_verified"] is True


async def test_an_unresponsive_chain_admits_unverified_and_the_breaker_cuts_it_off(
    client: Client,
    tenant: TenantHandle,
    gate_settings: Settings,
    solana_node: LocalSolanaNode,
    chain_keys: ChainKeys,
    rpc: AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sold = await _sold(client, tenant, quantity=THRESHOLD + 3)
    for ticket_id, _ in sold.tickets:
        await _minted(
            rpc, solana_node, chain_keys, gate_settings, ticket_id, chain_keys.custody.pubkey()
        )
    codes = [code for _, code in sold.tickets]
    # The circuit's state as any server process sees it: the shared hash in Redis.
    link = RedisLink(gate_settings.redis)
    breakers = Breakers(link, gate_settings.breakers)
    try:
        await _outage_and_recovery(client, sold.device, codes, breakers, solana_node, caplog)
    finally:
        await link.close()


async def _outage_and_recovery(
    client: Client,
    device: DeviceHandle,
    codes: list[str],
    breakers: Breakers,
    solana_node: LocalSolanaNode,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert await breakers.state(RPC) is BreakerState.CLOSED

    def failures_logged() -> int:
        return sum(
            1 for r in caplog.records if r.name == OWNERSHIP_LOG and "not checked" in r.message
        )

    caplog.set_level(logging.WARNING, logger=OWNERSHIP_LOG)
    solana_node.pause()
    try:
        # Each verdict still comes back (the gate's timeout fires; the guest is let in) and
        # says it was not chain-verified.
        for code in codes[:THRESHOLD]:
            response = await _validate(client, device, code)
            assert response.status_code == 200, response.text
            assert response.json()["result"] == "admitted"
            assert response.json()["chain_verified"] is None
        assert failures_logged() == THRESHOLD
        assert await breakers.state(RPC) is BreakerState.OPEN

        # Open: admissions go on without asking the node — a call would have hung until the
        # timeout and been logged as a failure like the ones above.
        response = await _validate(client, device, codes[THRESHOLD])
        assert response.status_code == 200, response.text
        assert response.json()["chain_verified"] is None
        assert failures_logged() == THRESHOLD
        metrics = await client.get("/metrics", headers=METRICS_HEADERS)
        assert sample_value(metrics.content, "gatehouse_circuit_breaker_state", service=RPC) == 2
    finally:
        solana_node.resume()

    deadline = time.monotonic() + 10 * OPEN_SECONDS + 10
    while await breakers.state(RPC) is not BreakerState.HALF_OPEN:
        assert time.monotonic() < deadline, "the circuit never half-opened"
        await asyncio.sleep(0.05)
    # The trial call goes through, succeeds and closes the circuit for everyone.
    response = await _validate(client, device, codes[THRESHOLD + 1])
    assert response.status_code == 200, response.text
    assert response.json()["chain_verified"] is True
    assert await breakers.state(RPC) is BreakerState.CLOSED
    response = await _validate(client, device, codes[THRESHOLD + 2])
    assert response.json()["chain_verified"] is True


async def test_the_chain_is_not_asked_while_a_chain_action_is_in_flight_or_never_made(
    client: Client,
    tenant: TenantHandle,
    gate_settings: Settings,
    solana_node: LocalSolanaNode,
    chain_keys: ChainKeys,
    rpc: AsyncClient,
) -> None:
    """Each ticket's NFT sits in someone else's wallet, so asking would refuse it: admitted
    with ``chain_verified: null`` shows the chain was not asked."""
    holder, previous = Keypair(), Keypair()
    sold = await _sold(client, tenant, quantity=3, wallet=holder.pubkey())
    (pending, pending_code), (failed, failed_code), (never, never_code) = sold.tickets
    # 'pending': our transfer to the new holder is on its way; the chain still names the old.
    await _minted(
        rpc, solana_node, chain_keys, gate_settings, pending, previous.pubkey(), "pending"
    )
    await _minted(rpc, solana_node, chain_keys, gate_settings, failed, previous.pubkey(), "failed")
    await record_on_ticket(gate_settings, never, mint=None, owner=None, status="not_minted")

    for ticket_id, code, status in (
        (pending, pending_code, "pending"),
        (failed, failed_code, "failed"),
        (never, never_code, "not_minted"),
    ):
        response = await _validate(client, sold.device, code)
        assert response.status_code == 200, (status, response.text)
        assert response.json()["chain_verified"] is None, status
        assert await sync_status(gate_settings, ticket_id) == status  # not flagged


async def test_offline_uploads_never_ask_the_chain(
    client: Client,
    tenant: TenantHandle,
    gate_settings: Settings,
    solana_node: LocalSolanaNode,
    chain_keys: ChainKeys,
    rpc: AsyncClient,
) -> None:
    """A scan the device admitted offline is placed in the timeline by the server's records;
    the chain (here disagreeing) is not asked: the admission stands and nothing is flagged."""
    holder, buyer = Keypair(), Keypair()
    sold = await _sold(client, tenant, wallet=holder.pubkey())
    ticket_id, code = sold.tickets[0]
    mint = await _minted(rpc, solana_node, chain_keys, gate_settings, ticket_id, holder.pubkey())
    await transfer_ticket_nft(rpc, solana_node, chain_keys, mint, holder, buyer.pubkey())

    scan = {
        "scan_id": str(new_id()),
        "code": code,
        "gate": sold.device.gate,
        "direction": "entry",
        "scanned_at": datetime(2030, 5, 1, 19, 30, tzinfo=UTC).isoformat(),
        "device_result": "admitted",
    }
    response = await asyncio.wait_for(
        client.post("/v1/sync/scans", json={"scans": [scan]}, headers=sold.device.headers),
        HANG_S,
    )

    assert response.status_code == 200, response.text
    outcome = response.json()["outcomes"][0]
    assert outcome["result"] == "admitted"
    assert outcome["server_reason"] is None
    assert await sync_status(gate_settings, ticket_id) == "synced"


async def test_a_mint_this_cluster_does_not_know_is_not_checked_rather_than_refused(
    client: Client,
    tenant: TenantHandle,
    gate_settings: Settings,
    chain_keys: ChainKeys,
) -> None:
    """Our records name a mint the node has never seen (a wrong cluster configured, a reset
    devnet): not a reason to refuse a guest, and not a chain failure either."""
    sold = await _sold(client, tenant)
    ticket_id, code = sold.tickets[0]
    never_minted = chain_keys.mint_keypair(ticket_id).pubkey()
    await record_on_ticket(gate_settings, ticket_id, mint=never_minted, owner=None, status="synced")
    link = RedisLink(gate_settings.redis)
    try:
        response = await _validate(client, sold.device, code)
        failures = await link.client.hget(link.key(f"circuit:{RPC}"), "failures")
    finally:
        await link.close()

    assert response.status_code == 200, response.text
    assert response.json()["chain_verified"] is None
    assert failures is None  # the node answered: nothing counted against it
    assert await sync_status(gate_settings, ticket_id) == "synced"
