from __future__ import annotations

import msgspec


class TicketMintConfig(msgspec.Struct, kw_only=True):
    """What every ticket's mint looks like on-chain (docs/chain.md, "A ticket's mint")."""

    #: Token-2022: the metadata lives in the mint itself.
    token_program_id: str
    decimals: int
    supply: int
    #: Always null: the minting transaction removes the mint authority, so no second token of a
    #: ticket can ever exist.
    mint_authority: str | None
    #: The issuer: revocation freezes the holder's token account.
    freeze_authority: str
    #: The issuer: it may correct the metadata's uri or fields.
    metadata_update_authority: str
    #: The issuer pays for every mint (rent and fees).
    fee_payer: str


class TicketMetadataConfig(msgspec.Struct, kw_only=True):
    symbol: str
    #: A ticket's metadata uri is this base, a slash and the ticket id.
    uri_base: str
    #: The token-metadata additional fields every ticket carries, in write order.
    attribute_keys: list[str]


class ResaleFeeConfig(msgspec.Struct, kw_only=True):
    bps: int
    #: Always "off_chain": a Token-2022 transfer fee would withhold the ticket itself
    #: (docs/chain.md, "The resale fee").
    charged: str


class ChainConfig(msgspec.Struct, kw_only=True):
    """The server's Solana configuration: public facts only (addresses and settings anyone can
    read on-chain or needs to verify a ticket), never the RPC URL or a secret. With the chain
    off, ``enabled`` is false and everything else is null."""

    enabled: bool
    #: Which cluster the server talks to (``localnet``, ``devnet``, ``mainnet-beta``...).
    cluster: str | None = None
    #: The commitment reads, the gate check and the listener require.
    commitment: str | None = None
    #: The issuer's public key.
    issuer: str | None = None
    #: The wallet holding the NFTs of holders without a wallet of their own.
    custody_wallet: str | None = None
    mint: TicketMintConfig | None = None
    metadata: TicketMetadataConfig | None = None
    resale_fee: ResaleFeeConfig | None = None
    #: The gate's budget for the ownership check; beyond it a verdict is not chain-verified.
    ownership_timeout_seconds: float | None = None


class MetadataAttribute(msgspec.Struct, kw_only=True):
    trait_type: str
    value: str


class TicketNftMetadata(msgspec.Struct, kw_only=True):
    """The off-chain JSON a ticket NFT's metadata uri points at, in the shape wallets and
    explorers read (name, symbol, description, attributes). Public: nothing about the holder,
    no code, no secret version."""

    name: str
    symbol: str
    description: str
    attributes: list[MetadataAttribute]
