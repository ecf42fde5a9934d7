"""Which ticket-like NFTs a Solana transaction moved, and from whom to whom: a pure function of
the transaction (no node, no database), for the chain listener
(:mod:`sync_server.chain.listener`).

For each mint whose balances changed, the owner before is the one whose account held 1 before,
the owner after the one holding 1 after. Only decimals-0 balances of 0 or 1 are looked at:
anything else cannot be one of our tickets.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from solders.transaction_status import (
    EncodedConfirmedTransactionWithStatusMeta,
    UiTransactionTokenBalance,
)


class ChangeKind(enum.StrEnum):
    """``blockchain_sync.kind`` of a logged change."""

    MINT = "mint"  # nobody held it before
    TRANSFER = "transfer"
    BURN = "burn"  # nobody holds it after
    RECONCILE = "reconcile"  # read from the chain's current state, no transaction to name


@dataclass(frozen=True, slots=True)
class OwnershipChange:
    """One mint changing hands in one transaction (or, for a reconcile, as read now)."""

    mint: str
    signature: str | None
    slot: int
    block_time: datetime | None
    from_wallet: str | None
    to_wallet: str | None
    kind: ChangeKind
    #: The RPC left out a balance's owner: who holds it now must be read from the chain.
    owner_unknown: bool = False


@dataclass(frozen=True, slots=True)
class _Holder:
    """Who holds a mint's one token in a list of balances."""

    #: The owner of the account holding 1; None when no account holds it (or its owner is
    #: not given).
    owner: str | None = None
    #: An account holds 1 but the RPC did not say whose it is.
    unknown: bool = False


_NOBODY = _Holder()


def ownership_changes(
    signature: str, transaction: EncodedConfirmedTransactionWithStatusMeta
) -> list[OwnershipChange]:
    """The ticket-like mints whose holder a transaction changed, with the holder before and
    after (``None``: nobody, as for a mint or a burn). Empty for a failed transaction.

    Only balances with 0 decimals and an amount of 0 or 1 are considered: anything else is not
    a supply-1 NFT, so not one of ours, and is not worth a database lookup. Mints whose holder
    is the same before and after (a freeze, a thaw, a metadata update) are left out.
    """
    meta = transaction.transaction.meta
    if meta is None or meta.err is not None:
        return []
    block_time = (
        datetime.fromtimestamp(transaction.block_time, UTC)
        if transaction.block_time is not None
        else None
    )
    before = _holders(meta.pre_token_balances or [])
    after = _holders(meta.post_token_balances or [])
    changes = []
    for mint in sorted(before.keys() | after.keys()):
        was, now = before.get(mint, _NOBODY), after.get(mint, _NOBODY)
        owner_unknown = was.unknown or now.unknown
        if was.owner == now.owner and not owner_unknown:
            continue
        if was == _NOBODY:
            kind = ChangeKind.MINT
        elif now == _NOBODY:
            kind = ChangeKind.BURN
        else:
            kind = ChangeKind.TRANSFER
        changes.append(
            OwnershipChange(
                mint=mint,
                signature=signature,
                slot=transaction.slot,
                block_time=block_time,
                from_wallet=was.owner,
                to_wallet=now.owner,
                kind=kind,
                owner_unknown=owner_unknown,
            )
        )
    return changes


def _holders(balances: Sequence[UiTransactionTokenBalance]) -> dict[str, _Holder]:
    """mint → who holds it, for the mints with only 0-or-1, decimals-0 balances in the list."""
    holders: dict[str, _Holder] = {}
    excluded: set[str] = set()
    for balance in balances:
        mint = str(balance.mint)
        amount = balance.ui_token_amount
        if amount.decimals != 0 or amount.amount not in {"0", "1"}:
            excluded.add(mint)
            continue
        holder = holders.get(mint, _NOBODY)
        if amount.amount == "1":
            if balance.owner is None:
                holder = _Holder(holder.owner, unknown=True)
            else:
                holder = _Holder(str(balance.owner), holder.unknown)
        holders[mint] = holder
    return {mint: holder for mint, holder in holders.items() if mint not in excluded}
