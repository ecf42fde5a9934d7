"""The chain configuration as the API reports it, built from settings and public keys only."""

from __future__ import annotations

from spl.token.constants import TOKEN_2022_PROGRAM_ID

from sync_server.chain.client import ChainKeys
from sync_server.chain.nft import (
    EVENT_ID_KEY,
    TICKET_DECIMALS,
    TICKET_ID_KEY,
    TICKET_SUPPLY,
    TICKET_TYPE_KEY,
)
from sync_server.domain.chain.schemas import (
    ChainConfig,
    ResaleFeeConfig,
    TicketMetadataConfig,
    TicketMintConfig,
)
from sync_server.settings import ChainSettings

OFF_CHAIN = "off_chain"


def chain_config(settings: ChainSettings, keys: ChainKeys | None) -> ChainConfig:
    """What ``GET /v1/chain/config`` answers. Only public keys leave ``keys``; the RPC and
    WebSocket URLs are never included (a provider's URL often carries an API key)."""
    if not settings.enabled or keys is None:
        return ChainConfig(enabled=False)
    issuer = str(keys.issuer.pubkey())
    return ChainConfig(
        enabled=True,
        cluster=settings.cluster,
        commitment=settings.commitment,
        issuer=issuer,
        custody_wallet=str(keys.custody.pubkey()),
        mint=TicketMintConfig(
            token_program_id=str(TOKEN_2022_PROGRAM_ID),
            decimals=TICKET_DECIMALS,
            supply=TICKET_SUPPLY,
            mint_authority=None,
            freeze_authority=issuer,
            metadata_update_authority=issuer,
            fee_payer=issuer,
        ),
        metadata=TicketMetadataConfig(
            symbol=settings.symbol,
            uri_base=settings.metadata_base_url.rstrip("/"),
            attribute_keys=[EVENT_ID_KEY, TICKET_TYPE_KEY, TICKET_ID_KEY],
        ),
        resale_fee=ResaleFeeConfig(bps=settings.resale_fee_bps, charged=OFF_CHAIN),
        ownership_timeout_seconds=settings.ownership_timeout_seconds,
    )
