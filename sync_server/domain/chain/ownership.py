"""Who holds a ticket's NFT, asked of the chain at the gate.

:class:`ChainOwnership` answers the check-in's ``OwnershipCheck`` seam
(``sync_server/domain/checkin/ownership.py``) from the chain library (``sync_server.chain``).
It is meant to run inside :class:`GuardedOwnership` (below; the app factory puts them
together), which bounds it with the gate's timeout and the shared ``solana-rpc`` circuit
breaker: ``ChainOwnership`` only asks and judges, and lets RPC
failures and timeouts raise so that the guard counts them.

The common case costs **one** JSON-RPC round trip: the expected owner's associated token
account (one well-known address per wallet and mint, ``nft.holder_token_account``) read with
``getAccountInfo``. Only when that account does not hold the ticket is the real holder looked for
(``getTokenLargestAccounts`` of the mint, then the holding account's owner), because a wallet may
also hold a token in an account that is not its associated one, and a mismatch must be sure
before it refuses someone at the door.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment
from solana.rpc.core import RPCException
from solders.pubkey import Pubkey
from solders.rpc.errors import InvalidParamsMessage

from sync_server.background import describe
from sync_server.chain.client import ChainKeys, commitment, rpc_client
from sync_server.chain.nft import TICKET_SUPPLY, holder_token_account, read_ticket_holding
from sync_server.chain.token2022 import AccountLayoutError, TokenAccount
from sync_server.domain.checkin.ownership import OwnershipCheck, OwnershipResult
from sync_server.redis.breakers import Breakers, CircuitOpen
from sync_server.settings import ChainSettings

log = logging.getLogger(__name__)


class ChainOwnership:
    """The on-chain ownership check: does the ticket holder's wallet (or custody, for holders
    without one) hold the ticket's NFT at the configured commitment?

    ``check`` answers ``verified=True`` when it does, ``verified=False, mismatch=True`` when the
    chain names another owner or nobody (the token was burned), and ``verified=None`` when the
    question cannot be asked of this chain (no mint recorded, a mint or wallet address that is
    not a public key, a mint the cluster does not know — a wrong cluster must not refuse
    everyone). RPC errors and transport failures raise, for ``GuardedOwnership`` to count.
    """

    def __init__(self, client: AsyncClient, keys: ChainKeys, *, level: Commitment) -> None:
        self._client = client
        self._keys = keys
        self._commitment = level

    @classmethod
    def from_settings(
        cls, settings: ChainSettings, keys: ChainKeys | None = None
    ) -> ChainOwnership:
        """A check with its own RPC client whose per-request timeout is the gate's budget
        (``ownership_timeout_seconds``), so an abandoned request does not linger. Raises
        ``SettingsError`` when the chain is off or the keys are missing."""
        return cls(
            rpc_client(settings, timeout=settings.ownership_timeout_seconds),
            keys or ChainKeys.from_settings(settings),
            level=commitment(settings),
        )

    async def close(self) -> None:
        """Close the RPC client's connections (at the app's shutdown)."""
        await self._client.close()

    async def check(
        self, *, ticket_id: uuid.UUID, nft_mint: str | None, holder_wallet: str | None
    ) -> OwnershipResult:
        if nft_mint is None:
            return OwnershipResult(verified=None)
        try:
            mint = Pubkey.from_string(nft_mint)
            expected = self._keys.expected_owner(holder_wallet)
        except ValueError:
            # Our own record is unusable (validated on the way in, so this is a bug or a hand
            # edit): not a chain failure, and no reason to refuse the guest.
            log.error(
                "ticket %s: mint %r or holder wallet %r is not a public key",
                ticket_id,
                nft_mint,
                holder_wallet,
            )
            return OwnershipResult(verified=None)

        # The common path: one read of the expected owner's associated account.
        if _holds(await self._token_account(holder_token_account(mint, expected)), mint):
            return OwnershipResult(verified=True, owner=str(expected))

        try:
            owner = await self._holder(mint)
        except _NotATokenMint:
            log.warning("ticket %s: mint %s is not a token mint on this cluster", ticket_id, mint)
            return OwnershipResult(verified=None)
        if owner == expected:  # held in an account that is not the associated one
            return OwnershipResult(verified=True, owner=str(expected))
        log.info(
            "ticket %s: mint %s is held by %s, expected %s",
            ticket_id,
            mint,
            owner or "nobody (burned)",
            expected,
        )
        return OwnershipResult(
            verified=False, mismatch=True, owner=str(owner) if owner is not None else None
        )

    async def _token_account(self, address: Pubkey) -> TokenAccount | None:
        """The token account at ``address``; None when there is none (or it is not one)."""
        answer = await self._client.get_account_info(address, commitment=self._commitment)
        if answer.value is None:
            return None
        try:
            return read_ticket_holding(answer.value.data)
        except AccountLayoutError:
            return None

    async def _holder(self, mint: Pubkey) -> Pubkey | None:
        """The wallet owning the account that holds the ticket; None when no account holds it
        (burned). Raises ``_NotATokenMint`` when the node says the mint is none."""
        try:
            largest = await self._client.get_token_largest_accounts(
                mint, commitment=self._commitment
            )
        except RPCException as error:
            if error.args and isinstance(error.args[0], InvalidParamsMessage):
                raise _NotATokenMint from error
            raise
        for balance in largest.value:
            if balance.amount.amount == str(TICKET_SUPPLY):
                account = await self._token_account(balance.address)
                if _holds(account, mint):
                    assert account is not None
                    return account.owner
        return None


class _NotATokenMint(Exception):
    """The node does not know the mint (a wrong cluster, a reset devnet)."""


def _holds(account: TokenAccount | None, mint: Pubkey) -> bool:
    return account is not None and account.mint == mint and account.amount == TICKET_SUPPLY


class GuardedOwnership:
    """An ownership check behind a timeout and the chain's shared circuit breaker: a chain
    that is slow, failing or cut off makes the verdict "not chain-verified" (``verified=None``)
    at once, never a refused entry and never a gate kept waiting. Timeouts and errors count as
    the chain failing; once the circuit is open, admissions skip the chain in every server
    process until a trial call succeeds."""

    def __init__(
        self,
        inner: OwnershipCheck,
        breakers: Breakers,
        *,
        service: str = "solana-rpc",
        timeout_seconds: float = 0.5,
    ) -> None:
        self._inner = inner
        self._breakers = breakers
        self._service = service
        self._timeout = timeout_seconds

    async def check(
        self, *, ticket_id: uuid.UUID, nft_mint: str | None, holder_wallet: str | None
    ) -> OwnershipResult:
        if nft_mint is None:  # nothing on chain to ask about: no call, nothing to count
            return OwnershipResult(verified=None)

        async def ask() -> OwnershipResult:
            return await asyncio.wait_for(
                self._inner.check(
                    ticket_id=ticket_id, nft_mint=nft_mint, holder_wallet=holder_wallet
                ),
                self._timeout,
            )

        try:
            return await self._breakers.call(self._service, ask)
        except CircuitOpen:
            return OwnershipResult(verified=None)
        except Exception as error:  # the chain client's failure, whatever its type: admit
            log.warning("ownership of ticket %s not checked: %s", ticket_id, describe(error))
            return OwnershipResult(verified=None)
