"""Putting a ticket's NFT on the local node by hand, for tests of what reads the chain, and
waiting for what the chain's readers do with it.

The minting worker is not what these tests are about: they mint with the same builders it uses
(``nft.mint_ticket_instructions``, the ticket's deterministic mint keypair, the issuer paying),
send over JSON-RPC with the production client, and record the result on the ticket row as the
worker would (``nft_mint``, ``chain_owner``, ``blockchain_sync_status``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from solana.rpc.async_api import AsyncClient
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from sqlalchemy import text

from sync_server.chain.client import ChainKeys
from sync_server.chain.nft import (
    TicketMetadata,
    build_transaction,
    mint_ticket_instructions,
    ticket_mint_space,
    transfer_ticket_instructions,
)
from sync_server.settings import Settings
from testkit.solana.localnode import LocalSolanaNode
from tests.sync_server.helpers import connect

T = TypeVar("T")


async def send(
    rpc: AsyncClient,
    node: LocalSolanaNode,
    instructions: Sequence[Instruction],
    payer: Keypair,
    *signers: Keypair,
) -> Signature:
    """Sign, send over JSON-RPC, then move one slot on so the transaction is ``confirmed`` (what
    the gate check and the listener read). Fails the test if the transaction failed."""
    blockhash = (await rpc.get_latest_blockhash()).value.blockhash
    transaction = build_transaction(instructions, payer=payer, signers=signers, blockhash=blockhash)
    signature = (await rpc.send_raw_transaction(bytes(transaction))).value
    node.advance(1)
    status = (await rpc.get_signature_statuses([signature])).value[0]
    assert status is not None
    assert status.err is None, status
    return signature


async def mint_nft(
    rpc: AsyncClient,
    node: LocalSolanaNode,
    *,
    issuer: Keypair,
    mint: Keypair,
    holder: Pubkey,
    ticket_id: str,
) -> Signature:
    """Mint a ticket NFT at ``mint`` to ``holder``, paid and signed by ``issuer`` (ours, or a
    stranger's for a token that is not ours); the minting transaction's signature."""
    metadata = TicketMetadata(
        name="Gatehouse ticket",
        symbol="GATE",
        uri=f"http://127.0.0.1:8000/v1/chain/metadata/{mint.pubkey()}",
        event_id=str(uuid.UUID(int=0)),
        ticket_type="General",
    )
    _, final_space = ticket_mint_space(metadata)
    rent = (await rpc.get_minimum_balance_for_rent_exemption(final_space)).value
    instructions = mint_ticket_instructions(
        issuer=issuer.pubkey(),
        mint=mint.pubkey(),
        holder=holder,
        metadata=metadata,
        rent_lamports=rent,
    )
    return await send(rpc, node, instructions, issuer, mint)


async def mint_ticket_nft(
    rpc: AsyncClient,
    node: LocalSolanaNode,
    keys: ChainKeys,
    ticket_id: uuid.UUID,
    holder: Pubkey,
) -> Pubkey:
    """Mint ``ticket_id``'s NFT (at its deterministic address) to ``holder``; its mint address."""
    mint = keys.mint_keypair(ticket_id)
    await mint_nft(
        rpc, node, issuer=keys.issuer, mint=mint, holder=holder, ticket_id=str(ticket_id)
    )
    return mint.pubkey()


async def transfer_ticket_nft(
    rpc: AsyncClient,
    node: LocalSolanaNode,
    keys: ChainKeys,
    mint: Pubkey,
    holder: Keypair,
    to_wallet: Pubkey,
) -> None:
    """The holder moves the NFT to another wallet on their own (the issuer pays the fee)."""
    instructions = transfer_ticket_instructions(
        mint=mint, from_wallet=holder.pubkey(), to_wallet=to_wallet, payer=keys.issuer.pubkey()
    )
    await send(rpc, node, instructions, keys.issuer, holder)


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    what: str,
    *,
    timeout: float = 30.0,
    tick: LocalSolanaNode | None = None,
) -> T:
    """``check()``'s first truthy answer, polled until ``timeout`` (a hang detector, not a
    latency target); with ``tick``, the node moves 4 slots between polls, as a live cluster
    would."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if tick is not None:
            tick.advance(4)
        await asyncio.sleep(0.05)


async def record_on_ticket(
    settings: Settings,
    ticket_id: uuid.UUID,
    *,
    mint: Pubkey | None,
    owner: Pubkey | None,
    status: str,
) -> None:
    """Write the ticket row's chain columns as the minting worker would (as the owner role:
    the test stands in for the worker)."""
    async with connect(settings.database.admin_url) as connection:
        await connection.execute(
            text(
                "UPDATE tickets SET nft_mint = :mint, chain_owner = :owner, "
                "blockchain_sync_status = :status WHERE id = :id"
            ),
            {
                "mint": str(mint) if mint else None,
                "owner": str(owner) if owner else None,
                "status": status,
                "id": ticket_id,
            },
        )
        await connection.commit()


async def sync_status(settings: Settings, ticket_id: uuid.UUID) -> str:
    async with connect(settings.database.admin_url) as connection:
        found = await connection.scalar(
            text("SELECT blockchain_sync_status FROM tickets WHERE id = :id"), {"id": ticket_id}
        )
    return str(found)
