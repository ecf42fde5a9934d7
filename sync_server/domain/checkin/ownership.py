"""The on-chain ownership step of a check-in, as a seam. With the chain off the only honest
answer is "not checked": verdicts then carry ``chain_verified = None``, never a made-up
``True``. With it on, the app wraps ``sync_server.chain.ownership.ChainOwnership`` (the chain
client) in ``GuardedOwnership`` (timeout and circuit breaker)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Protocol

from sync_server.redis.breakers import Breakers, CircuitOpen

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OwnershipResult:
    #: True: the chain says the holder owns it; None: not checked (no mint, chain unreachable).
    verified: bool | None
    #: The chain names someone else as the owner: the verdict is ``ownership_mismatch``.
    mismatch: bool = False
    #: The wallet the chain names as the holder, when it was asked (None: burned, or not asked).
    owner: str | None = None


class OwnershipCheck(Protocol):
    async def check(
        self, *, ticket_id: uuid.UUID, nft_mint: str | None, holder_wallet: str | None
    ) -> OwnershipResult: ...


class NotChainChecked:
    """No chain configured: every admission says it was not chain-verified."""

    async def check(
        self, *, ticket_id: uuid.UUID, nft_mint: str | None, holder_wallet: str | None
    ) -> OwnershipResult:
        return OwnershipResult(verified=None)


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
            log.warning("ownership of ticket %s not checked: %r", ticket_id, error)
            return OwnershipResult(verified=None)
