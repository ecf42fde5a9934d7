"""The chain tracker: carries out the actions :func:`~sync_server.domain.chain.minting.reconcile`
queued in ``pending_transactions`` and follows each to finality.

One row's life: ``queued`` → signed with a fresh blockhash, and its signature, attempt count
and the blockhash's last valid block height committed as ``submitted`` *before* the
transaction is sent (write-ahead: whatever happens to the process after that, the next cycle
finds the transaction by signature) → ``confirmed`` → ``finalized``, when the outcome is
applied to the ticket (``ticket.minted`` for mints) and the ticket is reconciled again (it may
have been revoked or transferred meanwhile). A submission that fails, or whose blockhash
expires unseen, is checked against the chain (an earlier attempt may have landed unseen: the
mint address is deterministic, so a mint can never happen twice) and otherwise queued again
with a fresh blockhash, up to ``max_attempts``; then the row and the ticket are ``failed``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from solana.rpc.async_api import AsyncClient
from solders.hash import Hash
from solders.transaction import Transaction
from solders.transaction_status import TransactionConfirmationStatus, TransactionStatus
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.backoff import Backoff
from shared.clock import Clock, SystemClock
from shared.ids import new_id
from sync_server.background import BackgroundLoop, LoopState, LoopStats, describe
from sync_server.chain.actions import (
    ActionKind,
    ChainReader,
    ChainUnavailable,
    Holding,
    Rejected,
    Unbuildable,
    freeze_transaction,
    mint_transaction,
    transfer_transaction,
    wallet,
)
from sync_server.chain.client import ChainKeys, rpc_client
from sync_server.chain.nft import TicketMetadata, ticket_metadata, ticket_mint_space
from sync_server.db.engine import Database, ticket_written
from sync_server.db.models import (
    BlockchainSync,
    Event,
    PendingTransaction,
    Ticket,
    TicketStateTransition,
    TicketType,
)
from sync_server.domain.chain.minting import (
    ACTOR,
    CONFIRMED,
    FAILED,
    FINALIZED,
    OPEN_STATUSES,
    QUEUED,
    SUBMITTED,
    reconcile,
)
from sync_server.domain.tickets.chain_sync import ChainSync, move_chain_sync
from sync_server.domain.tickets.services import change_ticket, locked_ticket
from sync_server.observability import metrics
from sync_server.settings import ChainSettings, Settings

log = logging.getLogger(__name__)

_ERROR_LIMIT = 1000
_PENDING = text("SELECT tenant_id, transaction_id FROM gatehouse_chain_pending(:limit)")


@dataclass(frozen=True, slots=True)
class TrackerStats(LoopStats):
    """A snapshot of one tracker (``state`` ``running``: its last cycle succeeded)."""

    cycles: int = 0
    submitted: int = 0
    finalized: int = 0
    retried: int = 0
    failed: int = 0
    #: Outages (of the node, or the database): runs of failed cycles, each counted once.
    outages: int = 0

    @property
    def reachable(self) -> bool:
        """Not in an outage: the last cycle (if any) succeeded."""
        return self.state is not LoopState.BACKING_OFF


@dataclass(frozen=True, slots=True)
class _Row:
    """What a cycle read of one open row, before locking it to act."""

    tenant_id: uuid.UUID
    id: uuid.UUID
    ticket_id: uuid.UUID
    kind: ActionKind
    mint: str
    destination: str
    status: str
    signature: str | None
    attempts: int
    last_valid_block_height: int | None

    @classmethod
    def of(cls, row: PendingTransaction) -> _Row:
        return cls(
            tenant_id=row.tenant_id,
            id=row.id,
            ticket_id=row.ticket_id,
            kind=ActionKind(row.kind),
            mint=row.mint or "",
            destination=row.destination or "",
            status=row.status,
            signature=row.tx_signature,
            attempts=row.attempts,
            last_valid_block_height=row.last_valid_block_height,
        )


@dataclass(slots=True)
class _Cycle:
    """Answers shared by the rows of one cycle: one blockhash serves every submission (it is
    good for ~150 blocks), one block height every expiry check."""

    reader: ChainReader
    blockhash: tuple[Hash, int] | None = None
    height: int | None = None
    rent: dict[int, int] = field(default_factory=dict)

    async def latest_blockhash(self) -> tuple[Hash, int]:
        if self.blockhash is None:
            self.blockhash = await self.reader.latest_blockhash()
        return self.blockhash

    async def block_height(self) -> int:
        if self.height is None:
            self.height = await self.reader.block_height()
        return self.height


@dataclass(frozen=True, slots=True)
class _Landed:
    """A finished action as found on the chain."""

    slot: int
    signature: str | None
    owner: str | None = None


class ChainTracker(BackgroundLoop[TrackerStats]):
    """Drives ``pending_transactions`` until ``stop()``: every ``settings.chain.poll_seconds``
    it takes up to ``batch`` open rows (all tenants, oldest first) and moves each one step.

    Safe to run in several workers at once: each step locks its row (``SKIP LOCKED``), and a
    row's signature is compared before its outcome is applied. An unreachable node is waited
    out with backoff (rows stay as they are, logged once per outage); a database outage the
    same way.
    """

    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        keys: ChainKeys | None = None,
        batch: int = 100,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__("chain tracker", TrackerStats(), backoff or Backoff(0.5, 30.0))
        self._database = database
        self._chain: ChainSettings = settings.chain
        self._keys = keys or ChainKeys.from_settings(settings.chain)
        self._custody = str(self._keys.custody.pubkey())
        self._batch = batch
        self._clock = clock or SystemClock()
        self._client: AsyncClient | None = None

    # ``stop()``: ``run`` returns after the step in hand.

    async def _start(self) -> None:
        self._client = rpc_client(self._chain)
        # Not the RPC URL: a provider's often carries its API key.
        log.info("chain tracker started (cluster %s)", self._chain.cluster)

    async def _finish(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def _attempt(self) -> None:
        """One cycle, then the wait until the next poll."""
        assert self._client is not None
        await self._cycle(ChainReader(self._client))
        if self._mark_up():
            log.info("chain tracker: working again")
        self._backoff.reset()
        await self._sleep(self._chain.poll_seconds)

    async def _failed(self, error: Exception) -> None:
        """An unreachable node, the database, or a bug: open transactions wait, and the
        outage is logged once, not once per poll."""
        unreachable = isinstance(error, ChainUnavailable)
        what = "the Solana node is unreachable" if unreachable else "a tracking cycle failed"
        if self._mark_down(error):
            log.warning(
                "chain tracker: %s (%s); open transactions wait, retrying with backoff",
                what,
                describe(error),
                exc_info=None if unreachable else error,
            )
            self._set(outages=self._stats.outages + 1)

    # --- one cycle ------------------------------------------------------------------------

    async def _cycle(self, reader: ChainReader) -> None:
        async with self._database.untenanted() as session:
            refs = (await session.execute(_PENDING, {"limit": self._batch})).all()
        rows: list[_Row] = []
        for ref in refs:
            async with self._database.tenant(ref.tenant_id) as session:
                found = await session.get(PendingTransaction, ref.transaction_id)
                if found is not None and found.status in OPEN_STATUSES:
                    rows.append(_Row.of(found))
        self._set(cycles=self._stats.cycles + 1)
        if not rows:
            return
        cycle = _Cycle(reader)
        in_flight = [r for r in rows if r.status != QUEUED and r.signature]
        if in_flight:
            statuses = await reader.statuses([r.signature for r in in_flight if r.signature])
            for row in in_flight:
                assert row.signature is not None
                status = statuses.of[row.signature]
                await self._step(row, self._follow(cycle, row, status, statuses.slot))
        for row in rows:
            if row.status == QUEUED or not row.signature:
                await self._step(row, self._submit(cycle, row))

    async def _step(self, row: _Row, work: Awaitable[None]) -> None:
        """One row's step; a bug in it is logged and the cycle goes on with the next row.
        An unreachable node ends the cycle (every other row would wait for it too)."""
        try:
            await work
        except ChainUnavailable:
            raise
        except Exception as error:
            if not await self._database_answers():
                raise
            log.exception("chain tracker: %s %s of ticket %s", row.kind, row.id, row.ticket_id)
            self._set(last_error=describe(error))

    async def _database_answers(self) -> bool:
        try:
            async with self._database.untenanted() as session:
                await session.execute(text("SELECT 1"))
        except Exception:  # anything: the database cannot serve the tracker now
            return False
        return True

    # --- submitting -----------------------------------------------------------------------

    async def _submit(self, cycle: _Cycle, snapshot: _Row) -> None:
        """Sign a queued action and send it — after committing its signature (write-ahead):
        whatever happens to the process after that, the signature is on record and the next
        cycle asks the chain about it."""
        now = self._clock.now()
        async with self._database.tenant(snapshot.tenant_id) as session:
            row = await self._lock(session, snapshot, (QUEUED,))
            if row is None:
                return
            try:
                built = await self._build(cycle, session, row)
            except Unbuildable as error:
                await self._give_up(session, row, str(error), now)
                return
            if isinstance(built, _Landed):  # nothing to send: the chain is already so
                await self._finalize(session, row, built, now)
                return
            transaction, last_valid = built
            row.tx_signature = str(transaction.signatures[0])
            row.attempts += 1
            row.last_valid_block_height = last_valid
            row.status = SUBMITTED
            row.submitted_at = now
            row.confirmed_at = None
            row.slot = None
            row.confirmation_count = 0
            row.updated_at = now
            sent = replace(
                snapshot,
                status=SUBMITTED,
                signature=row.tx_signature,
                attempts=row.attempts,
                last_valid_block_height=last_valid,
            )
        # Committed: only now may the node see it.
        self._set(submitted=self._stats.submitted + 1)
        metrics.CHAIN_TRANSACTIONS.labels(kind=sent.kind.value, outcome="submitted").inc()
        try:
            await cycle.reader.send(transaction)
        except Rejected as rejection:
            await self._not_landed(cycle, sent, f"refused by the node: {rejection}")
            return
        log.info(
            "ticket %s: %s sent (attempt %d, %s)",
            sent.ticket_id,
            sent.kind.value,
            sent.attempts,
            sent.signature,
        )

    async def _build(
        self, cycle: _Cycle, session: AsyncSession, row: PendingTransaction
    ) -> tuple[Transaction, int] | _Landed:
        """The signed transaction for ``row`` and its blockhash's last valid height — or what
        the chain already shows, when there is nothing left to do (a frozen account)."""
        kind = ActionKind(row.kind)
        if not row.mint or not row.destination:
            raise Unbuildable(f"the {kind} action has no mint or destination")
        mint = wallet(row.mint)
        if kind is ActionKind.MINT:
            if self._keys.mint_keypair(row.ticket_id).pubkey() != mint:
                raise Unbuildable(
                    f"mint {mint} was queued under another issuer key; the configured issuer "
                    "cannot sign for it"
                )
            metadata = await self._metadata(session, row.ticket_id)
            _, size = ticket_mint_space(metadata)
            if size not in cycle.rent:
                cycle.rent[size] = await cycle.reader.rent(metadata)
            blockhash, last_valid = await cycle.latest_blockhash()
            return mint_transaction(
                self._keys,
                ticket_id=row.ticket_id,
                owner=wallet(row.destination),
                metadata=metadata,
                rent_lamports=cycle.rent[size],
                blockhash=blockhash,
            ), last_valid
        if kind is ActionKind.TRANSFER:
            blockhash, last_valid = await cycle.latest_blockhash()
            return transfer_transaction(
                self._keys, mint=mint, to_wallet=wallet(row.destination), blockhash=blockhash
            ), last_valid
        holding = await cycle.reader.holding(mint)
        if holding is None:
            raise Unbuildable(f"no account holds ticket mint {mint}: nothing to freeze")
        if holding.frozen:
            return _Landed(slot=holding.slot, signature=None, owner=str(holding.owner))
        blockhash, last_valid = await cycle.latest_blockhash()
        return freeze_transaction(
            self._keys, mint=mint, token_account=holding.account, blockhash=blockhash
        ), last_valid

    async def _metadata(self, session: AsyncSession, ticket_id: uuid.UUID) -> TicketMetadata:
        found = (
            await session.execute(
                select(Ticket, Event.name, TicketType.name)
                .join(Event, Event.id == Ticket.event_id)
                .join(TicketType, TicketType.id == Ticket.ticket_type_id)
                .where(Ticket.id == ticket_id)
            )
        ).one()
        ticket, event_name, type_name = found
        mint = str(self._keys.mint_keypair(ticket_id).pubkey())
        return ticket_metadata(ticket, mint, event_name, type_name, self._chain)

    # --- following ------------------------------------------------------------------------

    async def _follow(
        self, cycle: _Cycle, snapshot: _Row, status: TransactionStatus | None, node_slot: int
    ) -> None:
        """Move a submitted row on from what ``getSignatureStatuses`` said of its signature
        when the node was at ``node_slot``."""
        if status is None:
            last_valid = snapshot.last_valid_block_height
            if last_valid is not None and await cycle.block_height() <= last_valid:
                return  # unknown, but it may still land
            await self._not_landed(cycle, snapshot, "its blockhash expired before it landed")
            return
        if status.err is not None:
            await self._not_landed(cycle, snapshot, f"it failed on chain: {status.err}")
            return
        now = self._clock.now()
        depth = (
            status.confirmations
            if status.confirmations is not None
            else max(0, node_slot - status.slot)
        )
        async with self._database.tenant(snapshot.tenant_id) as session:
            row = await self._lock(session, snapshot, (SUBMITTED, CONFIRMED))
            if row is None:
                return
            row.slot = status.slot
            row.updated_at = now
            if status.confirmation_status == TransactionConfirmationStatus.Finalized:
                row.confirmation_count = max(row.confirmation_count, depth, 1)
                await self._finalize(
                    session, row, _Landed(slot=status.slot, signature=snapshot.signature), now
                )
                return
            row.confirmation_count = depth
            confirmed = status.confirmation_status == TransactionConfirmationStatus.Confirmed
            if confirmed and row.status != CONFIRMED:
                row.status = CONFIRMED
                row.confirmed_at = now

    async def _not_landed(self, cycle: _Cycle, snapshot: _Row, why: str) -> None:
        """This submission will never land: done anyway when the chain already shows the
        action's result (an earlier attempt landed unseen), else retry or give up."""
        landed = await self._already_done(cycle, snapshot)
        now = self._clock.now()
        async with self._database.tenant(snapshot.tenant_id) as session:
            row = await self._lock(session, snapshot, (SUBMITTED, CONFIRMED))
            if row is None:
                return
            if landed is not None:
                log.info("ticket %s: %s found done on chain (%s)", row.ticket_id, row.kind, why)
                await self._finalize(session, row, landed, now)
                return
            row.error = why[:_ERROR_LIMIT]
            row.updated_at = now
            if row.attempts < self._chain.max_attempts:
                row.status = QUEUED
                self._set(retried=self._stats.retried + 1)
                metrics.CHAIN_TRANSACTIONS.labels(kind=row.kind, outcome="retried").inc()
                log.warning(
                    "ticket %s: %s attempt %d of %d did not land (%s); retrying",
                    row.ticket_id,
                    row.kind,
                    row.attempts,
                    self._chain.max_attempts,
                    why,
                )
                return
            await self._give_up(session, row, f"{why} (after {row.attempts} attempts)", now)

    async def _already_done(self, cycle: _Cycle, snapshot: _Row) -> _Landed | None:
        """What the chain shows of the action's intended result, if it is there.

        A mint is done when the ticket's mint account exists: its address derives from the
        issuer's secret and the ticket id, so nobody else can have made it (whoever holds it
        now is the owner to record). A transfer is done when the destination holds the
        ticket; a freeze when the account holding it is frozen.
        """
        mint = wallet(snapshot.mint)
        holding: Holding | None = await cycle.reader.holding(mint)
        if snapshot.kind is ActionKind.MINT:
            if holding is None:
                return None
            created = await cycle.reader.creation(mint)
            signature, slot = created if created else (None, holding.slot)
            return _Landed(slot=slot, signature=signature, owner=str(holding.owner))
        if holding is None:
            return None
        if snapshot.kind is ActionKind.TRANSFER and str(holding.owner) == snapshot.destination:
            return _Landed(slot=holding.slot, signature=None, owner=snapshot.destination)
        if snapshot.kind is ActionKind.FREEZE and holding.frozen:
            return _Landed(slot=holding.slot, signature=None, owner=str(holding.owner))
        return None

    # --- outcomes -------------------------------------------------------------------------

    async def _lock(
        self, session: AsyncSession, snapshot: _Row, statuses: tuple[str, ...]
    ) -> PendingTransaction | None:
        """The row, locked, if it is still as the cycle saw it (another tracker may have moved
        it on meanwhile, or hold it right now)."""
        row: PendingTransaction | None = await session.scalar(
            select(PendingTransaction)
            .where(PendingTransaction.id == snapshot.id)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
        if row is None or row.status not in statuses:
            return None
        if row.status != QUEUED and row.tx_signature != snapshot.signature:
            return None
        if row.status == QUEUED and row.attempts != snapshot.attempts:
            return None
        return row

    async def _finalize(
        self, session: AsyncSession, row: PendingTransaction, landed: _Landed, now: datetime
    ) -> None:
        """Apply a finished action to its ticket, log it, and reconcile the ticket again (it
        may have been revoked or transferred while the action was in flight)."""
        ticket = await locked_ticket(session, row.ticket_id)
        assert ticket is not None  # pending_transactions.ticket_id is a foreign key
        kind = ActionKind(row.kind)
        row.status = FINALIZED
        row.slot = landed.slot
        row.confirmed_at = row.confirmed_at or now
        row.updated_at = now
        if landed.signature and kind is ActionKind.MINT:
            row.tx_signature = landed.signature
        # An older result never undoes a newer one the listener may already have applied.
        newer = ticket.chain_slot is None or landed.slot >= ticket.chain_slot
        owner = landed.owner or row.destination
        if kind is ActionKind.MINT:
            ticket.nft_mint = row.mint
            if newer:
                ticket.chain_owner = owner
        elif kind is ActionKind.TRANSFER:
            if newer:
                ticket.chain_owner = row.destination
        else:
            ticket.chain_frozen = True
        if newer:
            ticket.chain_slot = landed.slot
        # The holder may have moved a freshly minted NFT before it finalized (the listener
        # knows a mint only from here on): then the chain and the ticket disagree, and the
        # listener's reconcile makes the ticket follow the chain.
        moved_early = kind is ActionKind.MINT and ticket.chain_owner != row.destination
        move_chain_sync(ticket, ChainSync.OUT_OF_SYNC if moved_early else ChainSync.SYNCED)
        ticket.updated_at = now
        ticket_written(session, ticket.id)
        if kind is ActionKind.MINT:
            change_ticket(
                session,
                ticket,
                "minted",
                "ticket.minted",
                actor=ACTOR,
                now=now,
                details={
                    "mint": row.mint,
                    "owner": owner,
                    "custodial": owner == self._custody,
                    "signature": landed.signature,
                    "slot": landed.slot,
                },
            )
        if landed.signature:
            await session.execute(
                insert(BlockchainSync)
                .values(
                    id=new_id(),
                    tenant_id=ticket.tenant_id,
                    ticket_id=ticket.id,
                    signature=landed.signature,
                    slot=landed.slot,
                    kind=kind.value,
                    from_wallet=self._custody if kind is ActionKind.TRANSFER else None,
                    to_wallet=owner if kind is not ActionKind.FREEZE else None,
                    details={
                        "mint": row.mint,
                        "source": "gatehouse",
                        "transaction_id": str(row.id),
                    },
                    processed_at=now,
                )
                .on_conflict_do_nothing(
                    index_elements=["signature", "ticket_id"],
                    index_where=text("signature IS NOT NULL"),
                )
            )
        await session.flush()
        self._set(finalized=self._stats.finalized + 1)
        metrics.CHAIN_TRANSACTIONS.labels(kind=kind.value, outcome="finalized").inc()
        log.info(
            "ticket %s: %s finalized in slot %d (%s)",
            ticket.id,
            kind.value,
            landed.slot,
            landed.signature or "found on chain",
        )
        await reconcile(session, ticket, self._keys, now)

    async def _give_up(
        self, session: AsyncSession, row: PendingTransaction, error: str, now: datetime
    ) -> None:
        """Mark the action and its ticket failed, with the reason in the ticket's history
        (where a manager sees it). Another event for the ticket, or a manual reconcile
        (:func:`retry_ticket`), queues it afresh."""
        row.status = FAILED
        row.error = error[:_ERROR_LIMIT]
        row.updated_at = now
        ticket = await locked_ticket(session, row.ticket_id)
        assert ticket is not None
        move_chain_sync(ticket, ChainSync.FAILED)
        ticket.updated_at = now
        ticket_written(session, ticket.id)
        session.add(
            TicketStateTransition(
                id=new_id(),
                tenant_id=ticket.tenant_id,
                ticket_id=ticket.id,
                kind="chain_failed",
                from_status=ticket.status,
                to_status=ticket.status,
                secret_version=ticket.secret_version,
                actor=ACTOR,
                reason=f"The chain {row.kind} failed: {error}"[:_ERROR_LIMIT],
                details={
                    "action": row.kind,
                    "transaction_id": str(row.id),
                    "attempts": row.attempts,
                    "mint": row.mint,
                    "destination": row.destination,
                },
                occurred_at=now,
            )
        )
        self._set(failed=self._stats.failed + 1)
        metrics.CHAIN_TRANSACTIONS.labels(kind=row.kind, outcome="failed").inc()
        log.error(
            "ticket %s: chain %s FAILED (transaction %s): %s",
            ticket.id,
            row.kind,
            row.id,
            error,
        )

    def _set(self, **changes: Any) -> None:
        self._stats = replace(self._stats, **changes)
