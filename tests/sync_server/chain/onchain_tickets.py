"""Putting a ticket's NFT on the local node by hand, for tests of what reads the chain.

The minting worker is not what these tests are about: they mint with the same builders it uses
(``nft.mint_ticket_instructions``, the ticket's deterministic mint keypair, the issuer paying),
send over JSON-RPC with the production client, and record the result on the ticket row as the
worker would (``nft_mint``, ``chain_owner``, ``blockchain_sync_status``).
"""

from __future__ import annotations

import uuid

from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from sqlalchemy import text

from sync_server.chain.client import ChainKeys
from sync_server.chain.localnode import LocalSolanaNode
from sync_server.chain.nft import (
    TicketMetadata,
    build_transaction,
    mint_ticket_instructions,
    ticket_mint_space,
    transfer_ticket_instructions,
)
from sync_server.settings import Settings
from tests.sync_server.helpers import connect


async def _send(rpc: AsyncClient, node: LocalSolanaNode, transaction_bytes: bytes) -> Signature:
    """Send, then move one slot on so the transaction is ``confirmed``."""
    signature = (await rpc.send_raw_transaction(transaction_bytes)).value
    node.advance(1)
    status = (await rpc.get_signature_statuses([signature])).value[0]
    assert status is not None
    assert status.err is None, status
    return signature


async def mint_ticket_nft(
    rpc: AsyncClient,
    node: LocalSolanaNode,
    keys: ChainKeys,
    ticket_id: uuid.UUID,
    holder: Pubkey,
) -> Pubkey:
    """Mint ``ticket_id``'s NFT to ``holder``'s wallet; its mint address."""
    mint = keys.mint_keypair(ticket_id)
    metadata = TicketMetadata(
        name="Gatehouse ticket",
        symbol="GATE",
        uri=f"http://127.0.0.1:8000/v1/chain/metadata/{ticket_id}",
        event_id=str(uuid.UUID(int=0)),
        ticket_type="General",
        ticket_id=str(ticket_id),
    )
    _, final_space = ticket_mint_space(metadata)
    rent = (await rpc.get_minimum_balance_for_rent_exemption(final_space)).value
    blockhash = (await rpc.get_latest_blockhash()).value.blockhash
    instructions = mint_ticket_instructions(
        issuer=keys.issuer.pubkey(),
        mint=mint.pubkey(),
        holder=holder,
        metadata=metadata,
        rent_lamports=rent,
    )
    transaction = build_transaction(
        instructions, payer=keys.issuer, signers=[mint], blockhash=blockhash
    )
    await _send(rpc, node, bytes(transaction))
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
    blockhash = (await rpc.get_latest_blockhash()).value.blockhash
    instructions = transfer_ticket_instructions(
        mint=mint, from_wallet=holder.pubkey(), to_wallet=to_wallet, payer=keys.issuer.pubkey()
    )
    transaction = build_transaction(
        instructions, payer=keys.issuer, signers=[holder], blockhash=blockhash
    )
    await _send(rpc, node, bytes(transaction))


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
