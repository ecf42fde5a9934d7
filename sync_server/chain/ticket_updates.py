"""What an ownership change seen on the chain does to a ticket, for the chain listener
(:mod:`sync_server.chain.listener`); the rules are in ``docs/chain.md`` ("The chain listener").

One change is applied in the ticket's tenant transaction (:meth:`TicketUpdates.apply`): the
ticket is locked, the change is logged to ``blockchain_sync`` once per signature (a unique
index; a second sighting inserts nothing and stops there), ``chain_owner``/``chain_slot`` follow
unless a newer change was applied already, and when the new owner is not whom the database
expects (the holder's wallet, or custody) the NFT moved outside our API: the ticket follows the
chain through the tickets domain's one function for a new holder
(:func:`~sync_server.domain.tickets.services.change_ticket`) — a new secret version (the old
holder's code is ``superseded``), a history row and a ``ticket.transferred`` event with
``source: "chain"``.
"""

from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import Clock
from shared.domain import TicketStatus
from shared.ids import new_id
from sync_server.chain.client import ChainKeys
from sync_server.chain.ownership_changes import ChangeKind, OwnershipChange
from sync_server.db.engine import Database, ticket_written
from sync_server.db.models import BlockchainSync, Ticket
from sync_server.domain.tickets.chain_sync import ChainSync, move_chain_sync
from sync_server.domain.tickets.services import NewHolder, change_ticket, locked_ticket

log = logging.getLogger(__name__)

#: ``actor`` of history rows and ticket events the listener writes.
ACTOR = "chain"

#: Ticket states whose holder follows the chain. A revoked ticket is frozen on-chain (it cannot
#: move; if it does before the freeze lands, it stays revoked); an expired one is over.
FOLLOWING_STATUSES = frozenset({TicketStatus.ACTIVE.value, TicketStatus.CHECKED_IN.value})


class Outcome(enum.StrEnum):
    """What applying one change did."""

    NOT_OURS = "not_ours"  # no ticket has this mint
    DUPLICATE = "duplicate"  # this signature was applied already: nothing done
    STALE = "stale"  # logged; a newer change had been applied, so the ticket is untouched
    RECORDED = "recorded"  # logged, chain_owner/chain_slot moved; the holder was as expected
    HOLDER_CHANGED = "holder_changed"  # moved outside our API: the ticket followed the chain
    FLAGGED = "flagged"  # owner unknown from the transaction: marked out_of_sync
    UNCHANGED = "unchanged"  # a reconcile found the database agreeing with the chain


@dataclass(frozen=True, slots=True)
class TicketRef:
    """A ticket with an NFT, as the cross-tenant lookups name it."""

    tenant_id: uuid.UUID
    ticket_id: uuid.UUID
    mint: str


@dataclass(frozen=True, slots=True)
class ChainHolding:
    """Who holds a mint's token now, as read from the chain."""

    #: The owner of the account holding it; None when no account does (burned).
    owner: str | None
    frozen: bool
    #: The slot the chain was read at.
    slot: int


def holder_label(wallet: str) -> str:
    """What the gate shows as the name of a holder we know only by wallet: ``Wallet 7xKX…3fGh``.

    A name is required of every holder (the API's ``Holder.name`` is at least one character,
    and scanners cache and show it); the wallet's ends are what the holder can show from their
    own wallet app, so staff can still match a person to the ticket.
    """
    return f"Wallet {wallet[:4]}…{wallet[-4:]}"


class TicketUpdates:
    """Applies ownership changes to tickets; ``name`` is the listener's, for log lines."""

    def __init__(self, database: Database, keys: ChainKeys, clock: Clock, name: str) -> None:
        self._database = database
        self._keys = keys
        self._clock = clock
        self._name = name

    async def apply(self, ref: TicketRef, change: OwnershipChange) -> Outcome:
        """Apply one change in the ticket's tenant transaction. Idempotent per (signature,
        ticket)."""
        async with self._database.tenant(ref.tenant_id) as session:
            ticket = await locked_ticket(session, ref.ticket_id)
            if ticket is None or ticket.nft_mint != ref.mint:
                return Outcome.NOT_OURS  # the mint was reassigned since the lookup
            if change.owner_unknown:
                return await self._flag(session, ticket, change)
            return await self._record(session, ticket, change)

    async def reconcile(self, ref: TicketRef, holding: ChainHolding) -> Outcome:
        """Settle a ticket flagged ``out_of_sync`` with what the chain holds now: apply it if
        the database still disagrees, and mark the ticket ``synced`` either way."""
        async with self._database.tenant(ref.tenant_id) as session:
            ticket = await locked_ticket(session, ref.ticket_id)
            if ticket is None or ticket.nft_mint != ref.mint:
                return Outcome.NOT_OURS
            if ticket.blockchain_sync_status != ChainSync.OUT_OF_SYNC:
                return Outcome.UNCHANGED  # the backfill (or another listener) settled it
            change = OwnershipChange(
                mint=ref.mint,
                signature=None,
                slot=holding.slot,
                block_time=None,
                from_wallet=ticket.chain_owner,
                to_wallet=holding.owner,
                kind=ChangeKind.RECONCILE,
            )
            expected = str(self._keys.expected_owner(ticket.holder_wallet))
            disagrees = ticket.chain_owner != holding.owner or (
                holding.owner is not None
                and holding.owner != expected
                and ticket.status in FOLLOWING_STATUSES
            )
            ticket.chain_frozen = holding.frozen
            if disagrees:
                await _log(session, ticket, change)
                outcome = await self._record(session, ticket, change)
            else:
                outcome = Outcome.UNCHANGED
            move_chain_sync(ticket, ChainSync.SYNCED)
            ticket.updated_at = self._clock.now()
            ticket_written(session, ticket.id)
        if disagrees:
            log.info(
                "%s reconciled ticket %s with the chain: held by %s",
                self._name,
                ref.ticket_id,
                holding.owner,
            )
        return outcome

    async def _record(
        self, session: AsyncSession, ticket: Ticket, change: OwnershipChange
    ) -> Outcome:
        if change.signature is not None and not await _log(session, ticket, change):
            return Outcome.DUPLICATE
        if ticket.chain_slot is not None and change.slot < ticket.chain_slot:
            return Outcome.STALE
        ticket.chain_owner = change.to_wallet
        ticket.chain_slot = change.slot
        expected = str(self._keys.expected_owner(ticket.holder_wallet))
        follows = (
            change.to_wallet is not None
            and change.to_wallet != expected
            and ticket.status in FOLLOWING_STATUSES
        )
        if follows:
            self._follow_holder(session, ticket, change)
        if ticket.blockchain_sync_status == ChainSync.OUT_OF_SYNC:
            move_chain_sync(ticket, ChainSync.SYNCED)
        ticket.updated_at = self._clock.now()
        ticket_written(session, ticket.id)
        return Outcome.HOLDER_CHANGED if follows else Outcome.RECORDED

    def _follow_holder(
        self, session: AsyncSession, ticket: Ticket, change: OwnershipChange
    ) -> None:
        """The NFT moved outside our API: the new owner is the holder, under a new secret
        version, so the old holder's code is ``superseded`` (online at once, on scanners after
        their next sync)."""
        assert change.to_wallet is not None
        wallet = change.to_wallet
        change_ticket(
            session,
            ticket,
            "transferred",
            "ticket.transferred",
            actor=ACTOR,
            now=self._clock.now(),
            holder=NewHolder(user_id=f"wallet:{wallet}", name=holder_label(wallet), wallet=wallet),
            details={
                "source": "chain",
                "chain_kind": change.kind.value,
                "signature": change.signature,
                "slot": change.slot,
                "from_wallet": change.from_wallet,
                "to_wallet": change.to_wallet,
            },
        )

    async def _flag(
        self, session: AsyncSession, ticket: Ticket, change: OwnershipChange
    ) -> Outcome:
        """The transaction did not say who holds the NFT now: leave the log for the reconcile
        (which reads the holder from the chain) and mark the ticket for it."""
        if move_chain_sync(ticket, ChainSync.OUT_OF_SYNC):
            ticket.updated_at = self._clock.now()
            ticket_written(session, ticket.id)
        log.warning(
            "%s: transaction %s moved ticket %s without naming the owner; reconciling",
            self._name,
            change.signature,
            ticket.id,
        )
        return Outcome.FLAGGED


async def _log(session: AsyncSession, ticket: Ticket, change: OwnershipChange) -> bool:
    """Add the change to ``blockchain_sync``; False when its signature is logged already."""
    inserted = await session.scalar(
        insert(BlockchainSync)
        .values(
            id=new_id(),
            tenant_id=ticket.tenant_id,
            ticket_id=ticket.id,
            signature=change.signature,
            slot=change.slot,
            kind=change.kind.value,
            from_wallet=change.from_wallet,
            to_wallet=change.to_wallet,
            block_time=change.block_time,
            details={"mint": change.mint},
        )
        .on_conflict_do_nothing()
        .returning(BlockchainSync.id)
    )
    return inserted is not None
