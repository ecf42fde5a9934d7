"""The local Solana node as a fixture: LiteSVM over HTTP JSON-RPC and WebSocket on 127.0.0.1.

``solana_node`` is a fresh node per test (starting one takes a few milliseconds); point the
production client at ``solana_node.rpc_url`` / ``solana_node.ws_url``, move slots with
``solana_node.advance(n)`` or ``solana_node.finalize()``, simulate outages with
``solana_node.pause()`` / ``resume()`` and ``drop_websockets()``.

``chain_keys`` makes a fresh issuer (funded on the node) and a separate custody wallet, as the
keypair files an operator would configure; ``chain_settings`` is the chain section of the
server's settings pointed at the node; ``chain_server_settings`` is the whole server's settings
with the chain on (the session database, this run's Redis prefix).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from solders.keypair import Keypair

from sync_server.chain.client import ChainKeys
from sync_server.settings import ChainSettings, Settings
from testkit.solana.localnode import LocalSolanaNode

LAMPORTS_PER_SOL = 1_000_000_000


@pytest.fixture
def solana_node() -> Iterator[LocalSolanaNode]:
    with LocalSolanaNode() as node:
        yield node


@pytest.fixture
def chain_keys(solana_node: LocalSolanaNode) -> ChainKeys:
    """Keys generated for this test (never stored): an issuer with 100 SOL, a custody wallet
    with 10 SOL (it pays nothing, but a funded account is what a real one would be)."""
    keys = ChainKeys(issuer=Keypair(), custody=Keypair())
    solana_node.ledger.airdrop(keys.issuer.pubkey(), 100 * LAMPORTS_PER_SOL)
    solana_node.ledger.airdrop(keys.custody.pubkey(), 10 * LAMPORTS_PER_SOL)
    return keys


@pytest.fixture
def chain_settings(solana_node: LocalSolanaNode, chain_keys: ChainKeys) -> ChainSettings:
    return ChainSettings(
        rpc_url=solana_node.rpc_url,
        ws_url=solana_node.ws_url,
        issuer_keypair=chain_keys.issuer.to_json(),
        custody_keypair=chain_keys.custody.to_json(),
        commitment="confirmed",
        poll_seconds=0.05,
        rpc_timeout_seconds=2.0,
    )


@pytest.fixture
def chain_server_settings(settings: Settings, chain_settings: ChainSettings) -> Settings:
    return dataclasses.replace(settings, chain=chain_settings)
