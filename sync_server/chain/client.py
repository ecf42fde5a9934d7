"""What every chain-facing part of the server shares: the issuer's and custodian's keys, the
deterministic mint address of a ticket, and ``solana`` clients built from the settings.

The production code talks to whatever ``GATEHOUSE_SOLANA_RPC_URL`` / ``..._WS_URL`` name; tests
point them at :class:`~testkit.solana.localnode.LocalSolanaNode`.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from sync_server.settings import ChainSettings, SettingsError

_MINT_SEED_LABEL = b"gatehouse/ticket-mint/v1"


def load_keypair(text: str, what: str) -> Keypair:
    """A keypair from solana-keygen JSON (an array of 64 numbers). Raises ``SettingsError``."""
    try:
        return Keypair.from_json(text)
    except Exception as error:  # solders raises its own ValueError-likes
        raise SettingsError(
            f"the {what} keypair is not solana-keygen JSON (an array of 64 numbers)"
        ) from error


@dataclass(frozen=True, slots=True)
class ChainKeys:
    #: Pays for and signs mints; holds every ticket's freeze and metadata update authority.
    issuer: Keypair
    #: Holds the NFTs of holders without a wallet (the issuer unless configured apart).
    custody: Keypair

    @classmethod
    def from_settings(cls, settings: ChainSettings) -> ChainKeys:
        if not settings.issuer_keypair:
            raise SettingsError("GATEHOUSE_SOLANA_ISSUER_KEYPAIR is not set")
        issuer = load_keypair(settings.issuer_keypair, "issuer")
        custody = (
            load_keypair(settings.custody_keypair, "custody")
            if settings.custody_keypair
            else issuer
        )
        return cls(issuer=issuer, custody=custody)

    def mint_keypair(self, ticket_id: uuid.UUID) -> Keypair:
        """The mint keypair of ``ticket_id``'s NFT, derived from the issuer's secret: the same
        ticket always has the same mint address, so a retried or repeated mint can never make a
        second NFT (creating an account that exists fails), and a crash between sending and
        recording loses nothing (the address is known before sending)."""
        seed = hmac.new(
            bytes(self.issuer)[:32], _MINT_SEED_LABEL + ticket_id.bytes, hashlib.sha256
        ).digest()
        return Keypair.from_seed(seed)

    def expected_owner(self, holder_wallet: str | None) -> Pubkey:
        """Whose wallet should hold a ticket: the holder's own, or custody when they have none."""
        return Pubkey.from_string(holder_wallet) if holder_wallet else self.custody.pubkey()


def commitment(settings: ChainSettings) -> Commitment:
    return Commitment(settings.commitment)


def rpc_client(settings: ChainSettings, *, timeout: float | None = None) -> AsyncClient:
    """An async JSON-RPC client for the configured node (``timeout`` seconds per request)."""
    if not settings.rpc_url:
        raise SettingsError("GATEHOUSE_SOLANA_RPC_URL is not set: the chain is off")
    return AsyncClient(
        settings.rpc_url,
        commitment=commitment(settings),
        timeout=timeout if timeout is not None else settings.rpc_timeout_seconds,
    )
