"""The chain listener: follows Solana over WebSocket and keeps Postgres in step with who holds
each ticket NFT. The chain is the source of truth for ownership (``docs/chain.md``).

How it follows the chain:

* **Subscribe**: ``logsSubscribe({"mentions": [Token-2022]})`` at the configured commitment.
  Every successful transaction that touches the Token-2022 program is announced by signature
  (failed ones are skipped: they moved nothing).
* **Parse**: ``getTransaction`` (json) gives the token balances before and after. For each mint
  whose balances changed, the owner before is the one whose account held 1 before, the owner
  after the one holding 1 after (:func:`ownership_changes`). Only decimals-0 balances of 0 or 1
  are looked at: anything else cannot be one of our tickets.
* **Ours?** ``gatehouse_chain_ticket(mint)`` names the ticket's tenant and id; an unknown mint
  is someone else's token and is ignored.
* **Apply** one change in the ticket's tenant transaction (:meth:`ChainListener._apply`): the
  ticket is locked, the change is logged to ``blockchain_sync`` once per signature (a unique
  index; a second sighting inserts nothing and stops there), ``chain_owner``/``chain_slot``
  follow unless a newer change was applied already, and when the new owner is not whom the
  database expects (the holder's wallet, or custody) the NFT moved outside our API: the ticket
  follows the chain — new holder, new secret version (the old holder's code is ``superseded``),
  a history row and a ``ticket.transferred`` event with ``source: "chain"``.
* **Backfill**: after every (re)connect, once the subscription is made (so nothing falls in the
  gap; seeing a transaction twice is harmless), every mint's signatures newer than the newest
  one logged for its ticket are applied, oldest first.
* **Reconcile**: every ``reconcile_seconds``, tickets flagged ``out_of_sync`` (the gate saw the
  chain disagree) are backfilled, then their current holder is read from the chain; if the
  database still disagrees, the chain's owner is applied (``kind = 'reconcile'``, no
  signature). Either way the ticket ends ``synced``.

Outages (the node, the WebSocket, the database) are never raised: a failure anywhere drops the
connection, waits with backoff and starts again with a backfill, which also picks up whatever
notification failed half-way. The rules, limits at scale and operator notes are in
``docs/chain.md`` ("The chain listener").
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment
from solana.rpc.core import RPCException
from solana.rpc.websocket_api import SolanaWsClient
from solders.pubkey import Pubkey
from solders.rpc.config import RpcTransactionLogsFilterMentions
from solders.rpc.responses import LogsNotification
from solders.signature import Signature
from solders.transaction_status import (
    EncodedConfirmedTransactionWithStatusMeta,
    UiTransactionTokenBalance,
)
from spl.token.constants import TOKEN_2022_PROGRAM_ID
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.backoff import Backoff
from shared.clock import Clock, SystemClock
from shared.domain import TicketStatus
from shared.ids import new_id
from sync_server.background import BackgroundLoop, LoopState, LoopStats, describe
from sync_server.chain.client import ChainKeys, rpc_client
from sync_server.chain.nft import read_ticket_holding
from sync_server.chain.token2022 import AccountLayoutError
from sync_server.db.engine import Database, ticket_written
from sync_server.db.models import BlockchainSync, Ticket
from sync_server.domain.tickets.services import locked_ticket, record_change
from sync_server.settings import ChainSettings

log = logging.getLogger(__name__)

#: ``actor`` of history rows and ticket events the listener writes.
ACTOR = "chain"

#: Ticket states whose holder follows the chain. A revoked ticket is frozen on-chain (it cannot
#: move; if it does before the freeze lands, it stays revoked); an expired one is over.
FOLLOWING_STATUSES = frozenset({TicketStatus.ACTIVE.value, TicketStatus.CHECKED_IN.value})

_TICKET_OF_MINT = text("SELECT tenant_id, ticket_id FROM gatehouse_chain_ticket(:mint)")
_MINTS_PAGE = text(
    "SELECT tenant_id, ticket_id, mint FROM gatehouse_chain_mints(:only_out_of_sync) "
    "WHERE ticket_id > :after ORDER BY ticket_id LIMIT :limit"
)
_NEWEST_SIGNATURE = text(
    "SELECT signature FROM blockchain_sync WHERE ticket_id = :ticket_id "
    "AND signature IS NOT NULL ORDER BY slot DESC NULLS LAST, processed_at DESC LIMIT 1"
)
_NIL_UUID = uuid.UUID(int=0)


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
class ListenerConfig:
    #: Seconds between reconcile passes over ``out_of_sync`` tickets.
    reconcile_seconds: float = 30.0
    #: Flagged tickets reconciled per pass (the rest wait for the next pass).
    reconcile_batch: int = 100
    #: Mints read from Postgres at a time during a backfill.
    mint_page_size: int = 500
    #: ``getSignaturesForAddress`` page size while backfilling one mint.
    signature_page_size: int = 1000
    #: Tries of ``getTransaction`` for an announced signature the RPC does not show yet
    #: (RPC nodes can lag their own notifications), ``transaction_retry_seconds`` apart
    #: (doubling). After the last, the listener reconnects and the backfill picks it up.
    transaction_attempts: int = 4
    transaction_retry_seconds: float = 0.1
    backoff_initial: float = 0.2
    backoff_max: float = 10.0


@dataclass(frozen=True, slots=True)
class ListenerStats(LoopStats):
    """A snapshot of one listener, for metrics, logs and tests (``state`` ``running``: the
    subscription is up and the backfill after it has finished)."""

    #: Successful subscriptions (the first connection and every reconnection).
    connections: int = 0
    #: Outages: runs of failures ended by a reconnection (or still going on).
    outages: int = 0
    #: Failed attempts in all (connects, RPC calls, database transactions).
    failures: int = 0
    #: Signatures looked at, from notifications and backfills.
    signatures: int = 0
    #: Ownership changes of mints that are not ours, ignored.
    ignored: int = 0
    #: Changes applied for the first time (rows added to ``blockchain_sync``).
    applied: int = 0
    #: Changes already applied, seen again (replays, overlapping backfills, other listeners).
    duplicates: int = 0
    #: Changes that moved a ticket to a new holder (a ``ticket.transferred`` event each).
    holder_changes: int = 0
    #: Backfill passes over every mint completed.
    backfills: int = 0
    #: Reconcile passes completed, and flagged tickets set back to ``synced`` by them.
    reconcile_passes: int = 0
    reconciled: int = 0
    #: Slot of the newest change applied.
    last_slot: int | None = None

    @property
    def following(self) -> bool:
        """Whether the subscription is up and the backfill after it has finished."""
        return self.state is LoopState.RUNNING


@dataclass(frozen=True, slots=True)
class _TicketRef:
    tenant_id: uuid.UUID
    ticket_id: uuid.UUID
    mint: str


class _NotVisible(Exception):
    """An announced transaction the RPC would not return: reconnect and backfill."""


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
        was, now = before.get(mint, (None, False)), after.get(mint, (None, False))
        owner_unknown = was[1] or now[1]
        if was[0] == now[0] and not owner_unknown:
            continue
        if was[0] is None and not was[1]:
            kind = ChangeKind.MINT
        elif now[0] is None and not now[1]:
            kind = ChangeKind.BURN
        else:
            kind = ChangeKind.TRANSFER
        changes.append(
            OwnershipChange(
                mint=mint,
                signature=signature,
                slot=transaction.slot,
                block_time=block_time,
                from_wallet=was[0],
                to_wallet=now[0],
                kind=kind,
                owner_unknown=owner_unknown,
            )
        )
    return changes


def _holders(balances: Sequence[UiTransactionTokenBalance]) -> dict[str, tuple[str | None, bool]]:
    """mint → (the owner of the account holding 1, whether some owner was not given), for the
    mints with only 0-or-1, decimals-0 balances in the list."""
    holders: dict[str, tuple[str | None, bool]] = {}
    excluded: set[str] = set()
    for balance in balances:
        mint = str(balance.mint)
        amount = balance.ui_token_amount
        if amount.decimals != 0 or amount.amount not in {"0", "1"}:
            excluded.add(mint)
            continue
        holder, unknown = holders.get(mint, (None, False))
        if amount.amount == "1":
            if balance.owner is None:
                unknown = True
            else:
                holder = str(balance.owner)
        holders[mint] = (holder, unknown)
    return {mint: value for mint, value in holders.items() if mint not in excluded}


def holder_label(wallet: str) -> str:
    """What the gate shows as the name of a holder we know only by wallet: ``Wallet 7xKX…3fGh``.

    A name is required of every holder (the API's ``Holder.name`` is at least one character,
    and scanners cache and show it); the wallet's ends are what the holder can show from their
    own wallet app, so staff can still match a person to the ticket.
    """
    return f"Wallet {wallet[:4]}…{wallet[-4:]}"


class ChainListener(BackgroundLoop[ListenerStats]):
    """Follows the chain until ``stop()``, applying transfers of our NFTs to Postgres.

    ``settings`` is the chain section (``settings.chain``); ``keys`` default to the configured
    issuer and custody (only the custody address is used: it is whom the database expects to
    hold the NFT of a holder without a wallet). Several listeners may run at once (one per
    worker): every change is applied once whoever sees it first, in the ticket's row lock.
    """

    def __init__(
        self,
        database: Database,
        settings: ChainSettings,
        config: ListenerConfig | None = None,
        *,
        keys: ChainKeys | None = None,
        clock: Clock | None = None,
        name: str = "chain-listener",
    ) -> None:
        config = config or ListenerConfig()
        super().__init__(name, ListenerStats(), Backoff(config.backoff_initial, config.backoff_max))
        self._database = database
        self._settings = settings
        self._config = config
        self._keys = keys or ChainKeys.from_settings(settings)
        self._clock: Clock = clock or SystemClock()
        self._name = name
        self._commitment = Commitment(settings.commitment)
        # History (getTransaction, getSignaturesForAddress) starts at ``confirmed``.
        self._history_commitment = Commitment(
            "confirmed" if settings.commitment == "processed" else settings.commitment
        )
        self._reconcile_after = _NIL_UUID
        self._rpc: AsyncClient | None = None

    # ``stop()``: whatever change is being applied is rolled back (applying is idempotent, so
    # the next run does it again).

    async def _start(self) -> None:
        self._rpc = rpc_client(self._settings)

    async def _finish(self) -> None:
        if self._rpc is not None:
            await self._rpc.close()

    async def _attempt(self) -> None:
        """One connection: whatever breaks it is raised; ``run`` reconnects and backfills."""
        assert self._rpc is not None
        await self._until_stopped(self._follow(self._rpc))

    # --- one connection ---------------------------------------------------------------------

    async def _follow(self, rpc: AsyncClient) -> None:
        """Subscribe, backfill, then apply notifications (and reconcile between them) until the
        connection or a call fails (raised)."""
        timeout = self._settings.rpc_timeout_seconds
        async with SolanaWsClient(
            self._settings.websocket_url(), request_timeout=timeout, open_timeout=timeout
        ) as ws:
            await ws.logs_subscribe(
                filter_=RpcTransactionLogsFilterMentions(TOKEN_2022_PROGRAM_ID),
                commitment=self._commitment,
            )
            await self.backfill(rpc)
            self._backoff.reset()
            recovered = self._mark_up()
            self._set(connections=self._stats.connections + 1)
            if recovered:
                log.info("%s is following the chain again (backfilled)", self._name)
            else:
                log.info("%s is following the chain", self._name)
            next_reconcile = self._clock.monotonic() + self._config.reconcile_seconds
            while True:
                wait = max(0.0, next_reconcile - self._clock.monotonic())
                try:
                    # Cancelling recv() keeps queued notifications (solana's client says so).
                    notification = await asyncio.wait_for(ws.recv(), wait)
                except TimeoutError:
                    await self.reconcile(rpc)
                    next_reconcile = self._clock.monotonic() + self._config.reconcile_seconds
                    continue
                if isinstance(notification, LogsNotification):
                    value = notification.result.value
                    if value.err is None:
                        await self._handle_signature(rpc, value.signature)

    async def _until_stopped(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` until it ends or ``stop()`` is called (then it is cancelled)."""
        task = asyncio.create_task(work, name=f"{self._name}-follow")
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if not task.cancelled():
            task.result()

    # --- transactions -----------------------------------------------------------------------

    async def _handle_signature(self, rpc: AsyncClient, signature: Signature) -> None:
        self._set(signatures=self._stats.signatures + 1)
        transaction = await self._transaction(rpc, signature)
        for change in ownership_changes(str(signature), transaction):
            ticket = await self._ticket_of(change.mint)
            if ticket is None:
                self._set(ignored=self._stats.ignored + 1)
                continue
            await self._apply(ticket, change)

    async def _transaction(
        self, rpc: AsyncClient, signature: Signature
    ) -> EncodedConfirmedTransactionWithStatusMeta:
        delay = self._config.transaction_retry_seconds
        for attempt in range(self._config.transaction_attempts):
            found = await rpc.get_transaction(
                signature,
                encoding="json",
                commitment=self._history_commitment,
                max_supported_transaction_version=0,
            )
            if found.value is not None:
                return found.value
            if attempt + 1 < self._config.transaction_attempts:
                await asyncio.sleep(delay)
                delay *= 2
        raise _NotVisible(f"the RPC does not show transaction {signature}")

    async def _ticket_of(self, mint: str) -> _TicketRef | None:
        async with self._database.untenanted() as session:
            row = (await session.execute(_TICKET_OF_MINT, {"mint": mint})).first()
        return None if row is None else _TicketRef(row.tenant_id, row.ticket_id, mint)

    # --- applying ---------------------------------------------------------------------------

    async def _apply(self, ref: _TicketRef, change: OwnershipChange) -> Outcome:
        """Apply one change in the ticket's tenant transaction; see the module docstring and
        ``docs/chain.md`` for the rules. Idempotent per (signature, ticket)."""
        async with self._database.tenant(ref.tenant_id) as session:
            ticket = await locked_ticket(session, ref.ticket_id)
            if ticket is None or ticket.nft_mint != ref.mint:
                outcome = Outcome.NOT_OURS  # the mint was reassigned since the lookup
            elif change.owner_unknown:
                outcome = await self._flag(session, ticket, change)
            else:
                outcome = await self._record(session, ticket, change)
        self._count(outcome, change)
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
            assert change.to_wallet is not None
            self._follow_holder(session, ticket, change)
        if ticket.blockchain_sync_status == "out_of_sync":
            ticket.blockchain_sync_status = "synced"
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
        previous = {
            "user_id": ticket.user_id,
            "name": ticket.holder_name,
            "wallet": ticket.holder_wallet,
        }
        ticket.holder_wallet = change.to_wallet
        ticket.user_id = f"wallet:{change.to_wallet}"
        ticket.holder_name = holder_label(change.to_wallet)
        ticket.secret_version += 1
        record_change(
            session,
            ticket,
            "transferred",
            "ticket.transferred",
            actor=ACTOR,
            now=self._clock.now(),
            from_status=ticket.status,
            details={
                "previous_holder": previous,
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
        if ticket.blockchain_sync_status != "out_of_sync":
            ticket.blockchain_sync_status = "out_of_sync"
            ticket.updated_at = self._clock.now()
            ticket_written(session, ticket.id)
        log.warning(
            "%s: transaction %s moved ticket %s without naming the owner; reconciling",
            self._name,
            change.signature,
            ticket.id,
        )
        return Outcome.FLAGGED

    def _count(self, outcome: Outcome, change: OwnershipChange) -> None:
        stats = self._stats
        if outcome is Outcome.NOT_OURS:
            self._set(ignored=stats.ignored + 1)
        elif outcome is Outcome.DUPLICATE:
            self._set(duplicates=stats.duplicates + 1)
        elif outcome in {Outcome.RECORDED, Outcome.HOLDER_CHANGED, Outcome.STALE}:
            self._set(
                applied=stats.applied + 1,
                holder_changes=stats.holder_changes + (outcome is Outcome.HOLDER_CHANGED),
                last_slot=max(stats.last_slot or 0, change.slot),
            )

    # --- backfill ---------------------------------------------------------------------------

    async def backfill(self, rpc: AsyncClient) -> int:
        """Apply, for every mint of ours, the signatures newer than the newest logged for its
        ticket, oldest first. Returns how many changes were applied for the first time.

        Raises what the RPC or the database raise (``run`` then reconnects and starts over:
        what was applied stays applied, so the next pass is shorter).
        """
        before = self._stats.applied
        after = _NIL_UUID
        while not self._stopping.is_set():
            page = await self._mints(only_out_of_sync=False, after=after)
            for ref in page:
                if self._stopping.is_set():
                    break
                await self._backfill_mint(rpc, ref)
            if len(page) < self._config.mint_page_size:
                break
            after = page[-1].ticket_id
        self._set(backfills=self._stats.backfills + 1)
        return self._stats.applied - before

    async def _backfill_mint(self, rpc: AsyncClient, ref: _TicketRef) -> None:
        async with self._database.tenant(ref.tenant_id) as session:
            newest = (
                await session.execute(_NEWEST_SIGNATURE, {"ticket_id": ref.ticket_id})
            ).scalar()
        until = Signature.from_string(newest) if newest else None
        mint = Pubkey.from_string(ref.mint)
        missed: list[Signature] = []
        before: Signature | None = None
        while True:  # newest first, page by page, down to ``until``
            page = (
                await rpc.get_signatures_for_address(
                    mint,
                    before=before,
                    until=until,
                    limit=self._config.signature_page_size,
                    commitment=self._history_commitment,
                )
            ).value
            missed.extend(row.signature for row in page if row.err is None)
            if len(page) < self._config.signature_page_size:
                break
            before = page[-1].signature
        for signature in reversed(missed):
            await self._handle_signature(rpc, signature)

    async def _mints(self, *, only_out_of_sync: bool, after: uuid.UUID) -> list[_TicketRef]:
        limit = self._config.reconcile_batch if only_out_of_sync else self._config.mint_page_size
        async with self._database.untenanted() as session:
            rows = (
                await session.execute(
                    _MINTS_PAGE,
                    {"only_out_of_sync": only_out_of_sync, "after": after, "limit": limit},
                )
            ).all()
        return [_TicketRef(row.tenant_id, row.ticket_id, row.mint) for row in rows]

    # --- reconcile --------------------------------------------------------------------------

    async def reconcile(self, rpc: AsyncClient) -> int:
        """One pass over at most ``reconcile_batch`` tickets flagged ``out_of_sync``: backfill
        the mint, read its holder from the chain, apply it if the database still disagrees, and
        mark the ticket ``synced``. Returns how many tickets it set back to ``synced``.

        Passes go round the flagged tickets (each starts after the last one the previous pass
        looked at), so tickets that cannot be settled (a mint the node does not know) never
        starve the others. Raises what the RPC or the database raise when they are down.
        """
        done = 0
        page = await self._mints(only_out_of_sync=True, after=self._reconcile_after)
        if not page and self._reconcile_after != _NIL_UUID:
            self._reconcile_after = _NIL_UUID  # round the end: start again from the beginning
            page = await self._mints(only_out_of_sync=True, after=_NIL_UUID)
        for ref in page:
            if self._stopping.is_set():
                break
            self._reconcile_after = ref.ticket_id
            try:
                await self._backfill_mint(rpc, ref)
                owner, frozen, slot = await self._holder_on_chain(rpc, ref.mint)
            except RPCException as refused:  # the node answered, but not for this mint
                log.warning(
                    "%s cannot reconcile ticket %s (mint %s): %s",
                    self._name,
                    ref.ticket_id,
                    ref.mint,
                    describe(refused),
                )
                continue
            outcome = await self._reconcile_ticket(ref, owner, frozen, slot)
            done += outcome not in {Outcome.NOT_OURS, Outcome.DUPLICATE}
        self._set(
            reconcile_passes=self._stats.reconcile_passes + 1,
            reconciled=self._stats.reconciled + done,
        )
        return done

    async def _holder_on_chain(self, rpc: AsyncClient, mint: str) -> tuple[str | None, bool, int]:
        """(owner, frozen, slot read at) of the account holding the NFT; owner ``None`` when no
        account holds it (burned)."""
        mint_key = Pubkey.from_string(mint)
        largest = await rpc.get_token_largest_accounts(mint_key, commitment=self._commitment)
        for row in largest.value:
            if row.amount.amount != "1":
                continue
            info = await rpc.get_account_info(
                row.address, commitment=self._commitment, encoding="base64"
            )
            if info.value is None:
                continue
            try:
                holding = read_ticket_holding(bytes(info.value.data))
            except AccountLayoutError:
                continue
            if holding.mint == mint_key and holding.amount == 1:
                return str(holding.owner), holding.frozen, info.context.slot
        return None, False, largest.context.slot

    async def _reconcile_ticket(
        self, ref: _TicketRef, owner: str | None, frozen: bool, slot: int
    ) -> Outcome:
        async with self._database.tenant(ref.tenant_id) as session:
            ticket = await locked_ticket(session, ref.ticket_id)
            if ticket is None or ticket.nft_mint != ref.mint:
                return Outcome.NOT_OURS
            if ticket.blockchain_sync_status != "out_of_sync":
                return Outcome.UNCHANGED  # the backfill (or another listener) settled it
            change = OwnershipChange(
                mint=ref.mint,
                signature=None,
                slot=slot,
                block_time=None,
                from_wallet=ticket.chain_owner,
                to_wallet=owner,
                kind=ChangeKind.RECONCILE,
            )
            expected = str(self._keys.expected_owner(ticket.holder_wallet))
            disagrees = ticket.chain_owner != owner or (
                owner is not None and owner != expected and ticket.status in FOLLOWING_STATUSES
            )
            ticket.chain_frozen = frozen
            if disagrees:
                await _log(session, ticket, change)
                outcome = await self._record(session, ticket, change)
            else:
                outcome = Outcome.UNCHANGED
            ticket.blockchain_sync_status = "synced"
            ticket.updated_at = self._clock.now()
            ticket_written(session, ticket.id)
        self._count(outcome, change)
        if disagrees:
            log.info(
                "%s reconciled ticket %s with the chain: held by %s",
                self._name,
                ref.ticket_id,
                owner,
            )
        return outcome

    # --- bookkeeping ------------------------------------------------------------------------

    async def _failed(self, error: Exception) -> None:
        first = self._mark_down(error)
        self._set(failures=self._stats.failures + 1, outages=self._stats.outages + first)
        if first:
            log.warning(
                "%s lost the chain (%s); reconnecting with backoff, then backfilling",
                self._name,
                describe(error),
            )
        else:
            log.debug("%s still cannot follow the chain: %s", self._name, describe(error))


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
