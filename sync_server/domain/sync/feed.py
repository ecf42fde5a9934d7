"""The changes feed: what a scanner must learn about its event, in change-sequence order.

Rows carry ``change_seq``, numbered after commit by ``gatehouse_sequence_changes`` (see
migration 0002), so a cursor is the last number a device has applied — and the incarnation of
the database that numbered it (migration 0021): ``c<seq>.<incarnation>``. A database restored
from a backup numbers again from where the backup was taken, so a cursor from another
incarnation, or ahead of the sequence, is answered 409 ``feed_reset``: the device downloads
the feed from the start and uploads its own scans again (docs/sync-protocol.md). A cursor without
an incarnation (``c<seq>``, from a server before 0021) is taken as it is, once.

Each request first numbers what has been committed since (in its own short transaction), then
reads the next page.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared import wire
from shared.domain import Direction, TicketStatus, VerdictResult
from shared.holder_name import seal_name
from sync_server.db.engine import Database
from sync_server.db.models import Event, Ticket, TicketKey, TicketScan, TicketType
from sync_server.db.raw import driver
from sync_server.domain.checkin.setup import read_setup
from sync_server.domain.keys.services import KeyStore
from sync_server.http.problems import BadRequest, Conflict

MAX_PAGE = 10_000
DEFAULT_PAGE = 5_000
#: Rows numbered per request at most; the rest are numbered by the next request.
SEQUENCE_BATCH = 50_000


def _sealed_holder(keys: KeyStore, row: Any, tenant_id: uuid.UUID) -> bytes | None:
    """The holder's name sealed under the ticket's name secret; None without a secret."""
    secret = keys.opened_name_secret(
        row.name_secret_sealed,
        tenant_id=tenant_id,
        ticket_id=row.id,
        secret_version=row.secret_version,
    )
    if secret is None:
        return None
    return seal_name(secret, row.holder_name, ticket_id=row.id, secret_version=row.secret_version)


#: The problem code of a cursor this database did not number (docs/sync-protocol.md).
FEED_RESET = "feed_reset"
_INCARNATION_DIGITS = frozenset("0123456789abcdef")


def encode_cursor(seq: int, incarnation: str) -> str:
    return f"c{seq}.{incarnation}"


def decode_cursor(cursor: str | None) -> tuple[int, str | None]:
    """The last change a device has applied and the incarnation that numbered it (None: a
    cursor from before incarnations). Raises ``BadRequest`` for a foreign cursor."""
    if not cursor:
        return 0, None
    seq, dot, incarnation = cursor.partition(".")
    if not (
        seq.startswith("c")
        and seq[1:].isdigit()
        and len(seq) <= 20
        and (not dot or (len(incarnation) == 16 and set(incarnation) <= _INCARNATION_DIGITS))
    ):
        raise BadRequest(
            "invalid_cursor", "The cursor is not one this feed returned; start without one."
        )
    return int(seq[1:]), incarnation if dot else None


async def feed_position(session: AsyncSession, cursor: str | None) -> tuple[int, str]:
    """Where ``cursor`` resumes, and this database's incarnation. Raises 409 ``feed_reset``
    for a cursor this database did not number: another incarnation's (a restored backup), or
    one past the last number drawn (a restore that kept the database's identity)."""
    after, theirs = decode_cursor(cursor)
    query = text("SELECT incarnation, last_seq FROM gatehouse_feed_incarnation()")
    row = (await session.execute(query)).one()
    incarnation, last_seq = str(row.incarnation), int(row.last_seq)
    if (theirs is not None and theirs != incarnation) or after > last_seq:
        raise Conflict(
            FEED_RESET,
            "This server's data was restored from a backup since this cursor was given: "
            "download the feed again from the start and upload this device's scans again.",
        )
    return after, incarnation


async def sequence_pending(database: Database, tenant_id: uuid.UUID) -> int:
    """Number the tenant's committed, not yet numbered changes. -1 when another request is
    numbering right now (its numbers will come after everything visible now)."""
    async with database.tenant(tenant_id) as session:
        numbered = await session.scalar(select(func.gatehouse_sequence_changes(SEQUENCE_BATCH)))
    return int(numbered or 0)


async def read_changes(
    session: AsyncSession,
    keys: KeyStore,
    *,
    tenant_id: uuid.UUID,
    event_id: uuid.UUID,
    device_id: uuid.UUID | None,
    cursor: str | None,
    limit: int,
    server_time: datetime,
    setup_version: int | None = None,
) -> wire.ChangesPage:
    """The next ``limit`` changes after ``cursor`` for a scanner of ``event_id``: tickets as
    they now are (sales, transfers, revocations, expiry; the holder's name only sealed under
    the ticket's name secret), admissions at other gates (and this device's own scans whose
    standing changed), and key material after a rotation. The event's check-in setup rides on
    the page when its version differs from the device's ``setup_version`` (issue 16)."""
    after, incarnation = await feed_position(session, cursor)
    tickets = (
        await session.execute(
            select(
                Ticket.change_seq,
                Ticket.id,
                Ticket.status,
                Ticket.secret_version,
                Ticket.holder_name,
                Ticket.name_secret_sealed,
                Ticket.ticket_type_id,
                TicketType.name.label("ticket_type"),
                Event.admission_opens_at,
                Event.ends_at,
            )
            .join(TicketType, TicketType.id == Ticket.ticket_type_id)
            .join(Event, Event.id == Ticket.event_id)
            .where(Ticket.event_id == event_id, Ticket.change_seq > after)
            .order_by(Ticket.change_seq)
            .limit(limit + 1)
        )
    ).all()
    scans = (
        await session.execute(
            select(
                TicketScan.change_seq,
                TicketScan.id,
                TicketScan.ticket_id,
                TicketScan.gate,
                TicketScan.direction,
                TicketScan.scanned_at,
                TicketScan.device_id,
                TicketScan.conflict_of,
                TicketScan.annulled_at,
                TicketScan.conflict_resolution,
                TicketScan.checkin_list_id,
                TicketScan.zone,
            )
            .where(
                TicketScan.event_id == event_id,
                TicketScan.change_seq > after,
                TicketScan.result == VerdictResult.ADMITTED.value,
                TicketScan.ticket_id.is_not(None),
                or_(
                    TicketScan.device_id.is_distinct_from(device_id),
                    TicketScan.conflict_of.is_not(None),
                    TicketScan.annulled_at.is_not(None),
                ),
            )
            .order_by(TicketScan.change_seq)
            .limit(limit + 1)
        )
    ).all()
    keys_seq = await session.scalar(
        select(func.max(TicketKey.change_seq)).where(
            TicketKey.event_id == event_id, TicketKey.change_seq > after
        )
    )

    merged: list[tuple[int, wire.Change]] = [
        (
            row.change_seq,
            wire.TicketChange(
                ticket_id=row.id,
                event_id=event_id,
                status=TicketStatus(row.status),
                secret_version=row.secret_version,
                ticket_type=row.ticket_type,
                valid_from=row.admission_opens_at,
                valid_until=row.ends_at,
                sealed_holder=_sealed_holder(keys, row, tenant_id),
                ticket_type_id=str(row.ticket_type_id),
            ),
        )
        for row in tickets
    ]
    merged += [
        (
            row.change_seq,
            wire.AdmissionChange(
                scan_id=row.id,
                ticket_id=row.ticket_id,
                gate=row.gate,
                direction=Direction(row.direction),
                scanned_at=row.scanned_at,
                device_id=row.device_id,
                conflict_of=row.conflict_of if row.conflict_resolution is None else None,
                annulled=row.annulled_at is not None,
                checkin_list_id=row.checkin_list_id,
                zone=row.zone,
                conflict_resolved=row.conflict_resolution is not None,
            ),
        )
        for row in scans
    ]
    if keys_seq is not None:
        ring = await keys.scanner_ring(session, event_id, tenant_id=tenant_id)
        merged.append((keys_seq, wire.KeysChange(keys=ring.to_wire())))
    merged.sort(key=lambda item: item[0])
    truncated = len(tickets) > limit or len(scans) > limit or len(merged) > limit
    page = merged[:limit]
    version = await session.scalar(select(Event.setup_version).where(Event.id == event_id))
    setup: wire.CheckinSetup | None = None
    if version is not None and version != setup_version:
        row = await read_setup(await driver(session), event_id)
        if row is not None:
            setup, version = row.setup, row.setup.version
    return wire.ChangesPage(
        changes=[change for _, change in page],
        next_cursor=encode_cursor(page[-1][0] if page else after, incarnation),
        has_more=truncated,
        server_time=server_time,
        checkin_setup=setup,
        checkin_setup_version=version or 0,
    )
