"""The ticket lifecycle: purchase, transfer, revoke, expire — each step one transaction that
writes the change, its history row and its outbox event together.

A ticket's status and holder change through one function, :func:`change_ticket`, whoever asks:
the API (transfer, revoke), expiry, check-in (an annulled admission), the chain listener (an NFT
moved outside our API) and the chain tracker (a mint finalized). It writes the change, its
history row and its event in the caller's transaction. (The check-in's batched admissions write
the same rows with raw SQL through :func:`change_rows`, for speed.)
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    exists,
    false,
    func,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from shared.domain import TicketStatus
from shared.ids import new_id
from shared.keys import IssuerKeyRing
from shared.ticket_code import issue_code, new_name_secret
from sync_server.db.engine import Database, ticket_written
from sync_server.db.models import (
    Event,
    Outbox,
    PendingTransaction,
    Ticket,
    TicketStateTransition,
    TicketType,
)
from sync_server.domain.keys.services import KeyStore
from sync_server.domain.tickets.chain_sync import ChainSync
from sync_server.domain.tickets.schemas import (
    Holder,
    PurchaseOut,
    PurchaseRequest,
    RevokeRequest,
    TicketOut,
    TicketPage,
    TicketWithCode,
    TransferRequest,
    TransitionOut,
)
from sync_server.http.auth import Principal
from sync_server.http.idempotency import Redaction
from sync_server.http.pagination import fetch_page
from sync_server.http.problems import Conflict, NotFound, Unprocessable
from sync_server.messaging.outbox import ticket_event_row

log = logging.getLogger(__name__)

EXPIRY_BATCH = 500
#: Tickets given new codes per transaction after a key was retired.
REISSUE_BATCH = 500
#: Tickets that have a code to replace.
_LIVE = (TicketStatus.ACTIVE.value, TicketStatus.CHECKED_IN.value)
#: History kinds that gave a ticket a new secret version (so a new code).
_NEW_CODE_KINDS = ("reissued", "transferred")

#: Chain actions still in flight (``pending_transactions.status``).
_CHAIN_IN_FLIGHT = ("queued", "submitted", "confirmed")
#: Chain actions that put a ticket's NFT into a wallet.
_CHAIN_MOVES = ("mint", "transfer")


def ticket_id_range(prefix: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The lowest and highest ticket ids starting with ``prefix`` (hex digits; dashes and case
    ignored): a range an index on ``ticket_id`` answers. Raises ``ValueError`` for anything
    but 1 to 32 hex digits."""
    digits = prefix.replace("-", "").lower()
    if not 1 <= len(digits) <= 32 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError("a ticket id or its first hex digits")
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


#: Above every character: ``key ~<~ prefix || _LAST`` holds for every ``key`` that starts with
#: ``prefix`` (byte-wise, as ``text_pattern_ops`` compares).
_LAST = "\U0010ffff"


def holder_starts(prefix: str) -> ColumnElement[bool]:
    """Tickets whose holder's name starts with ``prefix``, any case (``lower``): a range of the
    index on ``holder_name_key`` — byte-wise comparisons, which row-level security lets the
    planner use (migration 0016) — checked exactly by ``starts_with``. ``prefix`` is lowered by
    Postgres's ``lower()`` too, as the column is; none of its characters is a wildcard."""
    key = func.lower(literal(prefix, Text))
    return and_(
        Ticket.holder_name_key.op("~>=~", is_comparison=True)(key),
        Ticket.holder_name_key.op("~<~", is_comparison=True)(key.concat(_LAST).self_group()),
        func.starts_with(Ticket.holder_name_key, key),
    )


#: The most tickets a search answers.
SEARCH_LIMIT = 50


class TicketService:
    def __init__(
        self,
        session: AsyncSession,
        keys: KeyStore,
        actor: Principal | str,
        now: datetime,
        *,
        custody: str | None = None,
    ) -> None:
        """``custody`` is the custodial wallet's address when the chain is on (None: off)."""
        self._session = session
        self._keys = keys
        self._actor = actor.actor if isinstance(actor, Principal) else actor
        self._now = now
        self._custody = custody

    # --- reads ------------------------------------------------------------------------------

    async def get(self, ticket_id: uuid.UUID) -> Ticket:
        ticket = await self._session.get(Ticket, ticket_id)
        if ticket is None:
            raise NotFound("ticket")
        return ticket

    async def page(
        self,
        *,
        event_id: uuid.UUID | None,
        status: TicketStatus | None,
        cursor: str | None,
        limit: int,
    ) -> TicketPage:
        where = []
        if event_id is not None:
            where.append(Ticket.event_id == event_id)
        if status is not None:
            where.append(Ticket.status == status.value)
        tickets, next_cursor = await fetch_page(self._session, Ticket, cursor, limit, *where)
        return TicketPage(items=[ticket_out(t) for t in tickets], next_cursor=next_cursor)

    async def search(
        self,
        *,
        ids: tuple[uuid.UUID, uuid.UUID] | None = None,
        holder_prefix: str | None = None,
        limit: int = SEARCH_LIMIT,
    ) -> list[Ticket]:
        """Tickets with an id in ``ids`` (a range, ``ticket_id_range``), or whose holder's
        name starts with ``holder_prefix`` (any case); newest first, at most ``limit``."""
        where: list[ColumnElement[bool]] = []
        if ids is not None:
            where.append(Ticket.id.between(*ids))
        if holder_prefix is not None:
            where.append(holder_starts(holder_prefix))
        if not where:
            return []
        rows = await self._session.scalars(
            select(Ticket).where(*where).order_by(Ticket.id.desc()).limit(limit)
        )
        return list(rows)

    async def history(self, ticket_id: uuid.UUID) -> list[TransitionOut]:
        await self.get(ticket_id)
        rows = await self._session.scalars(
            select(TicketStateTransition)
            .where(TicketStateTransition.ticket_id == ticket_id)
            .order_by(TicketStateTransition.occurred_at, TicketStateTransition.id)
        )
        return [
            TransitionOut(
                id=row.id,
                kind=row.kind,
                from_status=TicketStatus(row.from_status) if row.from_status else None,
                to_status=TicketStatus(row.to_status),
                secret_version=row.secret_version,
                actor=row.actor,
                reason=row.reason,
                details=row.details,
                occurred_at=row.occurred_at,
            )
            for row in rows
        ]

    async def current_code(self, ticket_id: uuid.UUID) -> TicketWithCode:
        """A fresh code for the ticket's current secret version (for re-sending a ticket)."""
        ticket = await self.get(ticket_id)
        if ticket.status not in (TicketStatus.ACTIVE, TicketStatus.CHECKED_IN):
            raise Unprocessable(
                "ticket_not_active", f"The ticket is {ticket.status}; it has no valid code."
            )
        return await self._with_code(ticket)

    # --- writes -----------------------------------------------------------------------------

    async def purchase(self, data: PurchaseRequest, tenant_id: uuid.UUID) -> PurchaseOut:
        """Sell ``quantity`` tickets of a type, never more than its capacity, even when many
        purchases race: the capacity check and the count are one conditional UPDATE."""
        reserved = (
            await self._session.execute(
                update(TicketType)
                .where(
                    TicketType.id == data.ticket_type_id,
                    TicketType.sold + data.quantity <= TicketType.capacity,
                )
                .values(sold=TicketType.sold + data.quantity)
                .returning(TicketType.event_id)
            )
        ).first()
        if reserved is None:
            ticket_type = await self._session.get(TicketType, data.ticket_type_id)
            if ticket_type is None:
                raise NotFound("ticket type")
            left = ticket_type.capacity - ticket_type.sold
            raise Conflict(
                "sold_out",
                f"{ticket_type.name} is sold out."
                if left == 0
                else f"Only {left} {ticket_type.name} tickets are left, not {data.quantity}.",
                available=left,
            )
        event = await self._session.get(Event, reserved.event_id)
        assert event is not None  # the foreign key guarantees it
        if event.ends_at <= self._now:
            raise Unprocessable("event_ended", "The event is over; its tickets are no longer sold.")

        purchase_id = new_id()
        tickets = [
            Ticket(
                id=new_id(),
                tenant_id=tenant_id,
                event_id=event.id,
                ticket_type_id=data.ticket_type_id,
                purchase_id=purchase_id,
                user_id=data.holder.user_id,
                holder_name=data.holder.name,
                holder_wallet=data.holder.wallet,
                status=TicketStatus.ACTIVE.value,
                secret_version=0,
                blockchain_sync_status=ChainSync.NOT_MINTED.value,
                created_at=self._now,
                updated_at=self._now,
            )
            for _ in range(data.quantity)
        ]
        self._session.add_all(tickets)
        await self._session.flush()
        ring = await self._keys.issuer_ring(self._session, event.id, tenant_id=tenant_id)
        for ticket in tickets:
            _record_change(
                self._session,
                ticket,
                "purchased",
                "ticket.purchased",
                actor=self._actor,
                now=self._now,
                from_status=None,
            )
        return PurchaseOut(
            purchase_id=purchase_id,
            # One key ring for the whole purchase: every ticket is of the same event.
            tickets=[await self._with_code(t, ring) for t in tickets],
        )

    async def transfer(self, ticket_id: uuid.UUID, data: TransferRequest) -> TicketWithCode:
        """Give the ticket to a new holder: a new secret version, so the old code is dead.

        With the chain on, a ticket whose NFT is (or is being put) in the holder's own wallet
        cannot be transferred here (409 ``held_in_wallet``): we do not hold that wallet's key,
        and chose not to hold a permanent delegate that could move anyone's ticket. The holder
        transfers the NFT from the wallet, and the ticket follows it.
        """
        ticket = await self._locked(ticket_id)
        if ticket.status != TicketStatus.ACTIVE:
            raise Unprocessable(
                "ticket_not_transferable",
                f"Only an unused, active ticket can be transferred; this one is {ticket.status}.",
            )
        if self._custody is not None and await self._in_own_wallet(ticket, self._custody):
            raise Conflict(
                "held_in_wallet",
                "This ticket's NFT is in the holder's own wallet; the holder transfers it from "
                "the wallet and the ticket follows.",
            )
        change_ticket(
            self._session,
            ticket,
            "transferred",
            "ticket.transferred",
            actor=self._actor,
            now=self._now,
            holder=NewHolder(data.holder.user_id, data.holder.name, data.holder.wallet),
        )
        return await self._with_code(ticket)

    async def revoke(self, ticket_id: uuid.UUID, data: RevokeRequest) -> TicketOut:
        """Revoke the ticket; its seat goes back on sale when the request (``release_seat``)
        or else its type says so. The ticket's lock makes a second revocation a 409, so a
        seat is released once; ``sold`` goes down in this transaction by one statement on the
        ticket type's row, the row every purchase's conditional UPDATE locks, so a purchase at
        the same moment counts either before or after it, never past the capacity."""
        ticket = await self._locked(ticket_id)
        if ticket.status == TicketStatus.REVOKED:
            raise Conflict("already_revoked", "The ticket was already revoked.")
        if ticket.status == TicketStatus.EXPIRED:
            raise Conflict("ticket_expired", "The ticket has expired; there is nothing to revoke.")
        released = await self._release_seat(ticket, data.release_seat)
        change_ticket(
            self._session,
            ticket,
            "revoked",
            "ticket.revoked",
            actor=self._actor,
            now=self._now,
            status=TicketStatus.REVOKED,
            reason=data.reason,
            details={"seat_released": released},
        )
        return ticket_out(ticket)

    async def _release_seat(self, ticket: Ticket, asked: bool | None) -> bool:
        """Count the ticket's seat back into its type's capacity if ``asked`` (None: as the
        type says). Whether it was released."""
        release: ColumnElement[bool]
        if asked is None:
            release = TicketType.release_seat.expression
        else:
            release = true() if asked else false()
        released = await self._session.scalar(
            update(TicketType)
            .where(TicketType.id == ticket.ticket_type_id, TicketType.sold > 0, release)
            .values(sold=TicketType.sold - 1)
            .returning(TicketType.id)
            .execution_options(synchronize_session=False)
        )
        return released is not None

    # --- answers kept for replays ------------------------------------------------------------

    def purchase_redaction(self, tenant_id: uuid.UUID) -> Redaction[PurchaseOut]:
        """A purchase's answer is kept without its codes; a replay issues them again."""

        async def refill(kept: PurchaseOut) -> PurchaseOut:
            tickets = [await self._fresh_code(item, tenant_id) for item in kept.tickets]
            return msgspec.structs.replace(kept, tickets=tickets)

        return Redaction(
            blank=lambda out: msgspec.structs.replace(
                out, tickets=[_without_code(item) for item in out.tickets]
            ),
            refill=refill,
        )

    def code_redaction(self, tenant_id: uuid.UUID) -> Redaction[TicketWithCode]:
        """A ticket with its code (a transfer's answer) is kept without it, like a purchase's."""
        return Redaction(blank=_without_code, refill=lambda kept: self._fresh_code(kept, tenant_id))

    async def _fresh_code(self, kept: TicketWithCode, tenant_id: uuid.UUID) -> TicketWithCode:
        """The kept ticket with a new code for the secret version it had when first answered.
        Issuing draws a fresh nonce, so the text differs from the first answer's; any code of
        the ticket's current version admits alike (the validator checks the issuer's signature,
        the ticket and its version, not the text), and one of an older version is superseded
        exactly as the first answer's code would be by now."""
        ticket = kept.ticket
        ring = await self._keys.issuer_ring(self._session, ticket.event_id, tenant_id=tenant_id)
        current = await self._session.get(Ticket, ticket.id)
        if current is None or current.secret_version != ticket.secret_version:
            # Superseded since: the code cannot admit, and no feed seals a name for it.
            return msgspec.structs.replace(kept, code=self._issue(ring, ticket, new_name_secret()))
        return msgspec.structs.replace(kept, code=await self._code(ring, current))

    # --- helpers ----------------------------------------------------------------------------

    async def _in_own_wallet(self, ticket: Ticket, custody: str) -> bool:
        """Whether the ticket's NFT sits in a wallet other than custody, or an action in flight
        is putting it there (once it lands we could no longer move it either)."""
        if ticket.chain_owner is not None and ticket.chain_owner != custody:
            return True
        moving = await self._session.scalar(
            select(PendingTransaction.id)
            .where(
                PendingTransaction.ticket_id == ticket.id,
                PendingTransaction.status.in_(_CHAIN_IN_FLIGHT),
                PendingTransaction.kind.in_(_CHAIN_MOVES),
                PendingTransaction.destination != custody,
            )
            .limit(1)
        )
        return moving is not None

    async def _locked(self, ticket_id: uuid.UUID) -> Ticket:
        ticket = await locked_ticket(self._session, ticket_id)
        if ticket is None:
            raise NotFound("ticket")
        return ticket

    async def _with_code(self, ticket: Ticket, ring: IssuerKeyRing | None = None) -> TicketWithCode:
        if ring is None:
            ring = await self._keys.issuer_ring(
                self._session, ticket.event_id, tenant_id=ticket.tenant_id
            )
        return TicketWithCode(ticket=ticket_out(ticket), code=await self._code(ring, ticket))

    async def _code(self, ring: IssuerKeyRing, ticket: Ticket) -> str:
        """A new code (GH2, a fresh nonce each time) for the ticket's current secret version,
        carrying that version's name secret (made now if the ticket has none yet)."""
        return self._issue(ring, ticket, await self._keys.name_secret(self._session, ticket))

    def _issue(self, ring: IssuerKeyRing, ticket: Ticket | TicketOut, name_secret: bytes) -> str:
        return issue_code(
            ring,
            ticket_id=ticket.id,
            event_id=ticket.event_id,
            secret_version=ticket.secret_version,
            issued_at=self._now,
            name_secret=name_secret,
        )


def _awaiting_new_code(event_id: uuid.UUID, since: datetime) -> list[Any]:
    """The event's live tickets sold by ``since`` that have had no new code since then."""
    renewed = exists().where(
        TicketStateTransition.ticket_id == Ticket.id,
        TicketStateTransition.kind.in_(_NEW_CODE_KINDS),
        TicketStateTransition.occurred_at >= since,
    )
    return [
        Ticket.event_id == event_id,
        Ticket.status.in_(_LIVE),
        Ticket.created_at <= since,
        ~renewed,
    ]


async def reissue_codes(
    session: AsyncSession,
    *,
    event_id: uuid.UUID,
    since: datetime,
    actor: str,
    now: datetime,
    details: dict[str, Any],
    limit: int = REISSUE_BATCH,
) -> int:
    """Give up to ``limit`` of the event's live tickets whose codes were issued before
    ``since`` (a key's retirement) a new secret version, in the caller's transaction: each
    gets its history row (``reissued``) and its ``ticket.reissued`` event, so whoever sends
    tickets fetches the new code (``GET /v1/tickets/{id}/code``). Returns how many; safe to
    repeat (a ticket given a new code since ``since`` is not taken again)."""
    tickets = list(
        await session.scalars(
            select(Ticket)
            .where(*_awaiting_new_code(event_id, since))
            .order_by(Ticket.id)
            .limit(limit)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
    for ticket in tickets:
        change_ticket(
            session,
            ticket,
            "reissued",
            "ticket.reissued",
            actor=actor,
            now=now,
            new_code=True,
            reason="key_retired",
            details=details,
        )
    return len(tickets)


async def awaiting_new_code(session: AsyncSession, *, event_id: uuid.UUID, since: datetime) -> int:
    """How many of the event's tickets ``reissue_codes`` has still to give a new code."""
    count = await session.scalar(
        select(func.count()).select_from(Ticket).where(*_awaiting_new_code(event_id, since))
    )
    return int(count or 0)


def _without_code(item: TicketWithCode) -> TicketWithCode:
    return msgspec.structs.replace(item, code="")


async def locked_ticket(session: AsyncSession, ticket_id: uuid.UUID) -> Ticket | None:
    """The ticket row, locked ``FOR UPDATE`` (every writer of a ticket takes this lock first) and
    re-read even if the session holds an older copy; None when the tenant has no such ticket."""
    ticket: Ticket | None = await session.scalar(
        select(Ticket)
        .where(Ticket.id == ticket_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return ticket


def change_rows(
    ticket: Any,
    kind: str,
    routing_key: str,
    *,
    actor: str,
    now: datetime,
    from_status: str | None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The history row and the outbox row (as column values) for a change of ``ticket`` (a
    ``Ticket`` or any row with the same attributes, as it is after the change)."""
    details = details or {}
    history = {
        "id": new_id(),
        "tenant_id": ticket.tenant_id,
        "ticket_id": ticket.id,
        "kind": kind,
        "from_status": from_status,
        "to_status": ticket.status,
        "secret_version": ticket.secret_version,
        "actor": actor,
        "reason": reason,
        "details": details,
        "occurred_at": now,
    }
    event = ticket_event_row(
        routing_key=routing_key,
        tenant_id=ticket.tenant_id,
        ticket_id=ticket.id,
        time=now,
        data={**ticket_event_data(ticket), "actor": actor, "reason": reason, **details},
    )
    return history, event


@dataclass(frozen=True, slots=True)
class NewHolder:
    """Whom a ticket goes to."""

    user_id: str
    name: str
    wallet: str | None = None


def change_ticket(
    session: AsyncSession,
    ticket: Ticket,
    kind: str,
    routing_key: str,
    *,
    actor: str,
    now: datetime,
    status: TicketStatus | None = None,
    holder: NewHolder | None = None,
    new_code: bool = False,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """The one way a ticket's status, holder or secret version changes: ``ticket`` (locked by
    the caller, see :func:`locked_ticket`) takes the new ``status`` and/or ``holder``, and its
    history row (``kind``) and outbox event (``routing_key``) are added, in the caller's
    transaction.

    A new holder comes with a new secret version, so the old holder's code is ``superseded``,
    and without a name secret until the next code is made;
    the details then name the ``previous_holder`` (first, before the caller's ``details``).
    ``new_code`` gives the same holder a new secret version (codes already issued are then
    superseded: a key retired after a loss).
    With neither a status nor a holder, the change is only recorded (e.g. ``minted``).
    Once the transaction commits, the ticket cache forgets the ticket.
    """
    from_status = ticket.status
    if holder is not None:
        details = {"previous_holder": _holder(ticket), **(details or {})}
        ticket.user_id = holder.user_id
        ticket.holder_name = holder.name
        ticket.holder_wallet = holder.wallet
    if holder is not None or new_code:
        ticket.secret_version += 1
        # The old holder's code carries the old name secret: the new holder gets a new one
        # with the next code made (``KeyStore.name_secret``).
        ticket.name_secret_sealed = None
    if status is not None:
        ticket.status = status.value
    ticket.updated_at = now
    _record_change(
        session,
        ticket,
        kind,
        routing_key,
        actor=actor,
        now=now,
        from_status=from_status,
        reason=reason,
        details=details,
    )


def _record_change(
    session: AsyncSession,
    ticket: Ticket,
    kind: str,
    routing_key: str,
    *,
    actor: str,
    now: datetime,
    from_status: str | None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """History row and outbox event for a change of ``ticket``, in the current transaction;
    once it commits, the ticket cache forgets the ticket (see ``ticket_written``)."""
    history, event = change_rows(
        ticket,
        kind,
        routing_key,
        actor=actor,
        now=now,
        from_status=from_status,
        reason=reason,
        details=details,
    )
    session.add(TicketStateTransition(**history))
    session.add(Outbox(**event))
    if from_status is not None:  # a new ticket (purchase) has nothing cached to forget
        ticket_written(session, ticket.id)


def ticket_out(ticket: Ticket) -> TicketOut:
    return TicketOut(
        id=ticket.id,
        event_id=ticket.event_id,
        ticket_type_id=ticket.ticket_type_id,
        purchase_id=ticket.purchase_id,
        status=TicketStatus(ticket.status),
        secret_version=ticket.secret_version,
        holder=Holder(user_id=ticket.user_id, name=ticket.holder_name, wallet=ticket.holder_wallet),
        nft_mint=ticket.nft_mint,
        blockchain_sync_status=ticket.blockchain_sync_status,
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
    )


def _holder(ticket: Any) -> dict[str, str | None]:
    return {"user_id": ticket.user_id, "name": ticket.holder_name, "wallet": ticket.holder_wallet}


def ticket_event_data(ticket: Any) -> dict[str, Any]:
    """The ``data`` of a ticket event: the ticket as it is after the change."""
    return {
        "ticket_id": str(ticket.id),
        "event_id": str(ticket.event_id),
        "ticket_type_id": str(ticket.ticket_type_id),
        "purchase_id": str(ticket.purchase_id),
        "status": ticket.status,
        "secret_version": ticket.secret_version,
        "holder": _holder(ticket),
    }


async def expire_tickets(
    session: AsyncSession,
    now: datetime,
    actor: str = "system:expiry",
    *,
    grace: timedelta = timedelta(0),
    batches: int | None = None,
) -> int:
    """Mark the current tenant's tickets of events that ended more than their grace period
    before ``now`` ``expired`` (an event's own ``expiry_grace_seconds``, else ``grace``), in
    batches of ``EXPIRY_BATCH`` (at most ``batches``; None: until none is left), each
    ticket with its history row and ``ticket.expired`` event. Returns how many.

    Safe to run concurrently and to repeat: a ticket is taken ``FOR UPDATE SKIP LOCKED`` and
    only while it is active or checked in, so no ticket is expired (or announced) twice."""
    total = 0
    done = 0
    while batches is None or done < batches:
        tickets = list(
            await session.scalars(
                select(Ticket)
                .join(Event, Event.id == Ticket.event_id)
                .where(
                    # The event's own grace, or the default: one query for every event.
                    Event.ends_at
                    + func.coalesce(
                        Event.expiry_grace_seconds * literal(timedelta(seconds=1)),
                        literal(grace),
                    )
                    < now,
                    Ticket.status.in_([TicketStatus.ACTIVE.value, TicketStatus.CHECKED_IN.value]),
                )
                .order_by(Ticket.id)
                .limit(EXPIRY_BATCH)
                .with_for_update(of=Ticket, skip_locked=True)
            )
        )
        for ticket in tickets:
            change_ticket(
                session,
                ticket,
                "expired",
                "ticket.expired",
                actor=actor,
                now=now,
                status=TicketStatus.EXPIRED,
            )
        await session.flush()
        total += len(tickets)
        done += 1
        if len(tickets) < EXPIRY_BATCH:
            break
    return total


async def expire_ended_events(
    database: Database, now: datetime, *, grace: timedelta = timedelta(0)
) -> int:
    """Expire the tickets of events that ended more than their grace period before ``now``
    (the event's own ``expiry_grace_seconds``; ``grace`` for an event without one), for every
    tenant, one transaction per batch (``gatehouse-server expire`` and the worker's ``expire``
    job): a run cut short keeps what it committed, and the next run carries on. Returns how
    many were expired."""
    async with database.untenanted() as session:
        tenant_ids = list(await session.scalars(select(func.gatehouse_tenant_ids())))
    total = 0
    for tenant_id in tenant_ids:
        expired = 0
        while True:
            async with database.tenant(tenant_id) as session:
                batch = await expire_tickets(session, now, grace=grace, batches=1)
            expired += batch
            if batch < EXPIRY_BATCH:
                break
        if expired:
            log.info("expired %d tickets of tenant %s", expired, tenant_id)
        total += expired
    return total
