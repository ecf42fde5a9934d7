"""The minting worker's decisions: what the chain should do next for a ticket, and the
``chain`` consumer that queues it. The tracker that carries the queued actions out is
:mod:`sync_server.chain.tracker`; the design and the operator's view: ``docs/chain.md``
(minting).

* :func:`reconcile` decides a ticket's next chain action from the database alone (see
  :func:`next_action`) and queues it as a ``pending_transactions`` row. It compares states, so
  it is idempotent: any event may trigger it any number of times.
* The ``chain`` consumer (:func:`chain_consumers`) runs :func:`reconcile` for
  ``ticket.purchased``, ``ticket.transferred`` and ``ticket.revoked``, in the consumer's
  exactly-once transaction. It never calls the chain: an unreachable node must not make
  messages retry into the dead-letter queue; the queued row simply waits for the tracker.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import Clock, SystemClock
from shared.domain import TicketStatus
from shared.ids import new_id
from sync_server.chain.actions import ActionKind
from sync_server.chain.client import ChainKeys
from sync_server.db.engine import Database, ticket_written
from sync_server.db.models import PendingTransaction, Ticket
from sync_server.domain.tickets.chain_sync import ChainSync, move_chain_sync
from sync_server.domain.tickets.services import locked_ticket
from sync_server.messaging.consumers import (
    Consumer,
    EventHandler,
    RetryPolicy,
    TicketEvent,
    consumer_metrics,
)
from sync_server.settings import Settings

log = logging.getLogger(__name__)

#: Who the history and events name as the actor of what the chain worker does.
ACTOR = "system:chain"
#: The consumer's name: its queue is ``gatehouse.chain``.
CONSUMER_NAME = "chain"
ROUTING_KEYS = ("ticket.purchased", "ticket.transferred", "ticket.revoked")

QUEUED, SUBMITTED, CONFIRMED, FINALIZED, FAILED = (
    "queued",
    "submitted",
    "confirmed",
    "finalized",
    "failed",
)
OPEN_STATUSES = (QUEUED, SUBMITTED, CONFIRMED)
#: Tickets that are still worth an NFT (a revoked or expired ticket is not minted).
_MINTABLE = (TicketStatus.ACTIVE.value, TicketStatus.CHECKED_IN.value)


# --- deciding --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Action:
    """A chain action to queue: ``destination`` is the wallet that receives the ticket (mint,
    transfer) or, for a freeze, the wallet last seen holding it (for the record)."""

    kind: ActionKind
    destination: str


def next_action(ticket: Ticket, *, custody: str, in_flight: bool) -> Action | None:
    """What the chain should do next for ``ticket``, or None when it is as it should be.

    * an action in flight → nothing: wait for it (its outcome reconciles again);
    * no NFT yet and the ticket is active or checked in → mint to the holder's wallet, or to
      custody when the holder has none;
    * minted, revoked and not frozen → freeze (the issuer is the freeze authority; a frozen
      account cannot transfer or burn);
    * minted, in custody, not revoked, and the holder now has a wallet → custody transfers it
      to that wallet.
    """
    if in_flight:
        return None
    if ticket.nft_mint is None:
        if ticket.status not in _MINTABLE:
            return None
        return Action(ActionKind.MINT, ticket.holder_wallet or custody)
    if ticket.status == TicketStatus.REVOKED:
        if ticket.chain_frozen:
            return None
        return Action(ActionKind.FREEZE, ticket.chain_owner or custody)
    if ticket.chain_owner == custody and ticket.holder_wallet and ticket.holder_wallet != custody:
        return Action(ActionKind.TRANSFER, ticket.holder_wallet)
    return None


async def open_action(session: AsyncSession, ticket_id: uuid.UUID) -> PendingTransaction | None:
    """The ticket's queued, submitted or confirmed action, if any (at most one by design)."""
    found: PendingTransaction | None = await session.scalar(
        select(PendingTransaction)
        .where(
            PendingTransaction.ticket_id == ticket_id,
            PendingTransaction.status.in_(OPEN_STATUSES),
        )
        .limit(1)
    )
    return found


async def reconcile(
    session: AsyncSession, ticket: Ticket, keys: ChainKeys, now: datetime
) -> PendingTransaction | None:
    """Queue the ticket's next chain action (see :func:`next_action`); returns the new row.

    ``ticket`` must be locked (``FOR UPDATE``) by the caller: every path that queues takes that
    lock, so two reconciliations of one ticket cannot both see "nothing in flight".
    """
    in_flight = await open_action(session, ticket.id) is not None
    action = next_action(ticket, custody=str(keys.custody.pubkey()), in_flight=in_flight)
    if action is None:
        return None
    mint = (
        str(keys.mint_keypair(ticket.id).pubkey())
        if action.kind is ActionKind.MINT
        else ticket.nft_mint
    )
    row = PendingTransaction(
        id=new_id(),
        tenant_id=ticket.tenant_id,
        ticket_id=ticket.id,
        kind=action.kind.value,
        mint=mint,
        destination=action.destination,
        status=QUEUED,
        attempts=0,
        confirmation_count=0,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    move_chain_sync(ticket, ChainSync.PENDING)
    ticket.updated_at = now
    ticket_written(session, ticket.id)
    await session.flush()
    log.info("ticket %s: %s to %s queued", ticket.id, action.kind.value, action.destination)
    return row


# --- the consumer ----------------------------------------------------------------------------


def chain_event_handler(keys: ChainKeys, clock: Clock | None = None) -> EventHandler:
    """The ``chain`` consumer's handler: lock the event's ticket and reconcile it, in the
    consumer's transaction (so the queued row and the processed-event record commit together).

    An event whose ticket this tenant does not have is skipped (logged); one without a
    ``ticket_id`` raises ``ValueError`` (the producer's bug: it ends in the dead-letter queue).
    """
    clock = clock or SystemClock()

    async def handle(event: TicketEvent, session: AsyncSession) -> None:
        try:
            ticket_id = uuid.UUID(str(event.data.get("ticket_id")))
        except ValueError as error:
            raise ValueError(f"event {event.id} carries no ticket_id") from error
        ticket = await locked_ticket(session, ticket_id)
        if ticket is None:
            log.info("chain: event %s names unknown ticket %s; skipped", event.id, ticket_id)
            return
        await reconcile(session, ticket, keys, clock.now())

    return handle


def chain_consumer(
    database: Database,
    settings: Settings,
    *,
    name: str = CONSUMER_NAME,
    keys: ChainKeys | None = None,
    retry: RetryPolicy | None = None,
) -> Consumer:
    """The consumer that queues chain actions (``name`` is for tests that need their own
    queue). Raises ``SettingsError`` when the chain keys are not configured."""
    keys = keys or ChainKeys.from_settings(settings.chain)
    return Consumer(
        name,
        ROUTING_KEYS,
        chain_event_handler(keys),
        database=database,
        amqp_url=settings.amqp.url,
        retry=retry,
        on_outcome=consumer_metrics(name),
    )


def chain_consumers(database: Database, settings: Settings) -> list[Consumer]:
    """The worker's chain consumers: none with the chain off."""
    if not settings.chain.enabled:
        return []
    return [chain_consumer(database, settings)]


async def reconcile_tenant(
    database: Database,
    tenant_id: uuid.UUID,
    keys: ChainKeys,
    now: datetime,
    *,
    batch: int = 500,
) -> int:
    """Reconcile every live ticket of a tenant that has no NFT or whose last action failed —
    after the chain was turned on for tickets sold before, after a first deployment whose
    ``gatehouse.chain`` queue did not exist yet when tickets were bought, or after fixing what
    made actions fail. One transaction per ``batch`` tickets; returns how many were queued."""
    queued = 0
    after = uuid.UUID(int=0)
    while True:
        async with database.tenant(tenant_id) as session:
            tickets = (
                await session.scalars(
                    select(Ticket)
                    .where(
                        Ticket.id > after,
                        Ticket.blockchain_sync_status.in_(
                            (ChainSync.NOT_MINTED.value, ChainSync.FAILED.value)
                        ),
                        Ticket.status.in_((TicketStatus.ACTIVE, TicketStatus.CHECKED_IN)),
                    )
                    .order_by(Ticket.id)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for ticket in tickets:
                if await reconcile(session, ticket, keys, now) is not None:
                    queued += 1
        if len(tickets) < batch:
            return queued
        after = tickets[-1].id


async def retry_ticket(
    database: Database, tenant_id: uuid.UUID, ticket_id: uuid.UUID, keys: ChainKeys, now: datetime
) -> PendingTransaction | None:
    """Reconcile one ticket now (an operator's retry after a ``failed`` action, once its cause
    is fixed — e.g. the issuer funded). Returns the queued row, or None when nothing is due."""
    async with database.tenant(tenant_id) as session:
        ticket = await locked_ticket(session, ticket_id)
        if ticket is None:
            raise LookupError(f"no ticket {ticket_id} in tenant {tenant_id}")
        return await reconcile(session, ticket, keys, now)
