"""What the API says about the chain: the configuration (settings and public keys only) and
each ticket NFT's public metadata. The app factory builds one ``ChainInfo`` in its lifespan and
provides it to the ``/v1/chain`` routes as ``chain_info``."""

from __future__ import annotations

from solders.pubkey import Pubkey
from spl.token.constants import TOKEN_2022_PROGRAM_ID
from sqlalchemy import select, text

from sync_server.chain.client import ChainKeys
from sync_server.chain.nft import (
    EVENT_ID_KEY,
    TICKET_DECIMALS,
    TICKET_SUPPLY,
    TICKET_TYPE_KEY,
    ticket_metadata,
)
from sync_server.db.engine import Database
from sync_server.db.models import Event, Ticket, TicketType
from sync_server.domain.chain.schemas import (
    ChainConfig,
    MetadataAttribute,
    ResaleFeeConfig,
    TicketMetadataConfig,
    TicketMintConfig,
    TicketNftMetadata,
)
from sync_server.http.problems import BadRequest, NotFound
from sync_server.settings import ChainSettings

OFF_CHAIN = "off_chain"


class ChainInfo:
    """The chain's public face, from the settings, the issuer's and custodian's keys (None
    with the chain off) and the database."""

    def __init__(self, settings: ChainSettings, keys: ChainKeys | None, database: Database) -> None:
        self._settings = settings
        self._keys = keys
        self._database = database

    def config(self) -> ChainConfig:
        """What ``GET /v1/chain/config`` answers. Only public keys leave ``keys``; the RPC and
        WebSocket URLs are never included (a provider's URL often carries an API key)."""
        settings, keys = self._settings, self._keys
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
                attribute_keys=[EVENT_ID_KEY, TICKET_TYPE_KEY],
            ),
            resale_fee=ResaleFeeConfig(bps=settings.resale_fee_bps, charged=OFF_CHAIN),
            ownership_timeout_seconds=settings.ownership_timeout_seconds,
        )

    async def nft_metadata(self, mint: str) -> TicketNftMetadata:
        """The public metadata of the ticket NFT at address ``mint``, for anyone (wallets,
        explorers): found through the mint address (derived from the ticket id with the
        issuer's key, so the address says nothing about the id) and the id-only cross-tenant
        lookup; everything else is read in that tenant's transaction. Raises ``BadRequest`` when
        ``mint`` is not an address, ``NotFound`` when the chain is off or no ticket has it."""
        database, settings, keys = self._database, self._settings, self._keys
        try:
            Pubkey.from_string(mint)
        except ValueError as error:
            raise BadRequest(
                "invalid_mint", "The path's mint is not a Solana address.", field="mint"
            ) from error
        if keys is None:
            raise NotFound("ticket NFT")
        async with database.engine.connect() as connection:
            found = (await connection.execute(_TICKET_BY_MINT, {"mint": mint})).first()
        if found is None or str(keys.mint_keypair(found.ticket_id).pubkey()) != mint:
            raise NotFound("ticket NFT")
        ticket_id = found.ticket_id
        async with database.tenant(found.tenant_id) as session:
            row = (
                await session.execute(
                    select(Ticket, Event, TicketType.name)
                    .join(Event, Event.id == Ticket.event_id)
                    .join(TicketType, TicketType.id == Ticket.ticket_type_id)
                    .where(Ticket.id == ticket_id)
                )
            ).first()
        if row is None:
            raise NotFound("ticket NFT")
        ticket, event, type_name = row
        on_chain = ticket_metadata(ticket, mint, event.name, type_name, settings)
        starts = event.starts_at.strftime("%Y-%m-%d %H:%M UTC")
        return TicketNftMetadata(
            name=on_chain.name,
            symbol=on_chain.symbol,
            description=f"{type_name} ticket for {event.name}, {event.venue}, {starts}.",
            attributes=[
                *(
                    MetadataAttribute(trait_type=k, value=v)
                    for k, v in on_chain.additional_fields()
                ),
                MetadataAttribute(trait_type="event", value=event.name),
                MetadataAttribute(trait_type="venue", value=event.venue),
                MetadataAttribute(trait_type="starts_at", value=event.starts_at.isoformat()),
            ],
        )


_TICKET_BY_MINT = text("SELECT tenant_id, ticket_id FROM gatehouse_chain_ticket(:mint)")
