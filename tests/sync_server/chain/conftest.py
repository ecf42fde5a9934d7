"""The local Solana node as a fixture: LiteSVM over HTTP JSON-RPC and WebSocket on 127.0.0.1.

``solana_node`` is a fresh node per test (starting one takes a few milliseconds); point the
production client at ``solana_node.rpc_url`` / ``solana_node.ws_url``, move slots with
``solana_node.advance(n)`` or ``solana_node.finalize()``, simulate outages with
``solana_node.pause()`` / ``resume()`` and ``drop_websockets()``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sync_server.chain.localnode import LocalSolanaNode


@pytest.fixture
def solana_node() -> Iterator[LocalSolanaNode]:
    with LocalSolanaNode() as node:
        yield node
