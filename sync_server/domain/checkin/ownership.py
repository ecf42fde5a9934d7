"""The on-chain ownership step of a check-in, as a seam: what check-in needs to ask
(``OwnershipCheck``) and hears back (``OwnershipResult``). With the chain off the only honest
answer is "not checked": verdicts then carry ``chain_verified = None``, never a made-up
``True``. With it on, the app factory provides ``sync_server.domain.chain.ownership``'s chain client
behind a timeout and circuit breaker (``GuardedOwnership``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol


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
