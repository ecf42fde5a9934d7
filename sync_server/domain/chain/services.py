"""What the API says about the chain: the configuration (settings and public keys only) and
each ticket NFT's public metadata — as a seam the ``/v1/chain`` routes declare. The chain
package answers it (``sync_server.chain.public_info.PublicChainInfo``); the app factory provides
it as ``chain_info``."""

from __future__ import annotations

import uuid
from typing import Protocol

from sync_server.domain.chain.schemas import ChainConfig, TicketNftMetadata


class ChainInfo(Protocol):
    def config(self) -> ChainConfig:
        """What ``GET /v1/chain/config`` answers: ``enabled: false`` and nulls with the chain
        off; never the RPC URL or any secret."""
        ...

    async def nft_metadata(self, ticket_id: uuid.UUID) -> TicketNftMetadata:
        """The public metadata of ``ticket_id``'s NFT. Raises ``NotFound`` when the chain is
        off or the ticket has no NFT recorded."""
        ...
