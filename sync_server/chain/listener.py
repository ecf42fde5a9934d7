"""The chain listener: follows Solana over WebSocket and keeps Postgres in step with who holds
each ticket NFT. The chain is the source of truth for ownership (``docs/chain.md``).

How it follows the chain:

* **Subscribe**: ``logsSubscribe({"mentions": [Token-2022]})`` at the configured commitment.
  Every successful transaction that touches the Token-2022 program is announced by signature
  (failed ones are skipped: they moved nothing).
* **Parse**: ``getTransaction`` (json) gives the token balances before and after; the pure
  :func:`~sync_server.chain.ownership_changes.ownership_changes` turns them into the mints that
  changed hands, from whom to whom.
* **Ours?** ``gatehouse_chain_ticket(mint)`` names the ticket's tenant and id; an unknown mint
  is someone else's token and is ignored.
* **Apply** one change in the ticket's tenant transaction
  (:class:`~sync_server.chain.ticket_updates.TicketUpdates`): logged to ``blockchain_sync`` once
  per signature; when the NFT moved outside our API, the ticket follows the chain — new holder,
  new secret version, through the tickets domain's ``change_ticket``.
* **Backfill**: after every (re)connect, once the subscription is made (so nothing falls in the
  gap; seeing a transaction twice is harmless), every mint's signatures newer than the newest
  one logged for its ticket are applied, oldest first.
* **Reconcile**: every ``reconcile_seconds``, tickets flagged ``out_of_sync`` (the gate saw the
  chain disagree) are backfilled, then their current holder is read from the chain; if the
  database still disagrees, the chain's owner is applied (``kind = 'reconcile'``, no
  signature). Either way the ticket ends ``synced``.

The loop runs on :class:`~sync_server.background.BackgroundLoop`. Outages (the node, the
WebSocket, the database) are never raised: a failure anywhere drops the connection, waits with
backoff and starts again with a backfill, which also picks up whatever notification failed
half-way. The rules, limits at scale and operator notes are in
``docs/chain.md`` ("The chain listener").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment
from solana.rpc.core import RPCException
from solana.rpc.websocket_api import SolanaWsClient
from solders.pubkey import Pubkey
from solders.rpc.config import RpcTransactionLogsFilterMentions
from solders.rpc.responses import LogsNotification
from solders.signature import Signature
from solders.transaction_status import EncodedConfirmedTransactionWithStatusMeta
from spl.token.constants import TOKEN_2022_PROGRAM_ID
from sqlalchemy import text

from shared.backoff import Backoff
from shared.clock import Clock, SystemClock
from sync_server.background import BackgroundLoop, LoopState, LoopStats, describe
from sync_server.chain.client import ChainKeys, rpc_client
from sync_server.chain.nft import read_ticket_holding
from sync_server.chain.ownership_changes import OwnershipChange, ownership_changes
from sync_server.chain.ticket_updates import ChainHolding, Outcome, TicketRef, TicketUpdates
from sync_server.chain.token2022 import AccountLayoutError
from sync_server.db.engine import Database
from sync_server.settings import ChainSettings

log = logging.getLogger(__name__)

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


class _NotVisible(Exception):
    """An announced transaction the RPC would not return: reconnect and backfill."""


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
        self._updates = TicketUpdates(database, self._keys, self._clock, name)

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

    async def _ticket_of(self, mint: str) -> TicketRef | None:
        async with self._database.untenanted() as session:
            row = (await session.execute(_TICKET_OF_MINT, {"mint": mint})).first()
        return None if row is None else TicketRef(row.tenant_id, row.ticket_id, mint)

    # --- applying ---------------------------------------------------------------------------

    async def _apply(self, ref: TicketRef, change: OwnershipChange) -> Outcome:
        outcome = await self._updates.apply(ref, change)
        self._count(outcome, change.slot)
        return outcome

    def _count(self, outcome: Outcome, slot: int) -> None:
        stats = self._stats
        if outcome is Outcome.NOT_OURS:
            self._set(ignored=stats.ignored + 1)
        elif outcome is Outcome.DUPLICATE:
            self._set(duplicates=stats.duplicates + 1)
        elif outcome in {Outcome.RECORDED, Outcome.HOLDER_CHANGED, Outcome.STALE}:
            self._set(
                applied=stats.applied + 1,
                holder_changes=stats.holder_changes + (outcome is Outcome.HOLDER_CHANGED),
                last_slot=max(stats.last_slot or 0, slot),
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

    async def _backfill_mint(self, rpc: AsyncClient, ref: TicketRef) -> None:
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

    async def _mints(self, *, only_out_of_sync: bool, after: uuid.UUID) -> list[TicketRef]:
        limit = self._config.reconcile_batch if only_out_of_sync else self._config.mint_page_size
        async with self._database.untenanted() as session:
            rows = (
                await session.execute(
                    _MINTS_PAGE,
                    {"only_out_of_sync": only_out_of_sync, "after": after, "limit": limit},
                )
            ).all()
        return [TicketRef(row.tenant_id, row.ticket_id, row.mint) for row in rows]

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
                holding = await self._holder_on_chain(rpc, ref.mint)
            except RPCException as refused:  # the node answered, but not for this mint
                log.warning(
                    "%s cannot reconcile ticket %s (mint %s): %s",
                    self._name,
                    ref.ticket_id,
                    ref.mint,
                    describe(refused),
                )
                continue
            outcome = await self._updates.reconcile(ref, holding)
            if outcome is not Outcome.NOT_OURS:  # a reassigned mint is not counted as ignored
                self._count(outcome, holding.slot)
            done += outcome not in {Outcome.NOT_OURS, Outcome.DUPLICATE}
        self._set(
            reconcile_passes=self._stats.reconcile_passes + 1,
            reconciled=self._stats.reconciled + done,
        )
        return done

    async def _holder_on_chain(self, rpc: AsyncClient, mint: str) -> ChainHolding:
        """Who holds the NFT now (nobody: burned), whether frozen, and the slot read at."""
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
                return ChainHolding(str(holding.owner), holding.frozen, info.context.slot)
        return ChainHolding(None, False, largest.context.slot)

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
