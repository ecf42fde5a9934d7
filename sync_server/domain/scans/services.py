"""What managers see of the scans: the scan log (a page, or all of it as CSV) and an event's
gate counts (read from the counts that migration 0020's triggers keep as scans are written).

Counting rules:
- an *admission* is an admitted entry that is neither a double entry (``conflict_of``) nor
  undone by staff (``annulled_at``) — or a double entry a manager accepted
  (``conflict_resolution = 'accepted'``: both admissions stand);
- a *conflict* is a double entry that still stands (not annulled, not resolved:
  ``conflict_resolved_at`` is NULL);
- an exit counts when it was admitted and not annulled;
- a ticket is *inside* when its latest admission or counted exit (by ``scanned_at``, then id)
  is an entry, and inside that entry's zone (check-in lists, issue 16).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Row,
    and_,
    exists,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from shared.domain import Direction, VerdictResult
from shared.wire import TIME_OUT_OF_RANGE, out_of_range
from sync_server.db.engine import Database
from sync_server.db.models import (
    CheckinList,
    Device,
    Event,
    GateCount,
    GateMinute,
    Ticket,
    TicketScan,
    TicketType,
    ZoneCount,
)
from sync_server.domain.checkin.claims import TIME_ADJUSTED
from sync_server.domain.scans.schemas import (
    EventCounts,
    EventStats,
    GateCounts,
    GateStats,
    MinuteStats,
    ScanFilter,
    ScanOut,
    ScanPage,
)
from sync_server.domain.tickets.services import holder_starts, ticket_id_range
from sync_server.http.pagination import decode_cursor, encode_cursor
from sync_server.http.problems import BadRequest, NotFound

#: Rows per query of a CSV export: memory stays flat however many rows match.
EXPORT_CHUNK = 5000

_ENTRY = Direction.ENTRY.value
_ADMITTED = VerdictResult.ADMITTED.value

ADMISSION = and_(
    TicketScan.direction == _ENTRY,
    TicketScan.result == _ADMITTED,
    or_(TicketScan.conflict_of.is_(None), TicketScan.conflict_resolution == "accepted"),
    TicketScan.annulled_at.is_(None),
)
CONFLICT = and_(
    TicketScan.conflict_of.is_not(None),
    TicketScan.annulled_at.is_(None),
    TicketScan.conflict_resolved_at.is_(None),
)


def _log_column(name: str) -> ColumnElement[Any]:
    if name == "holder_name":
        return Ticket.holder_name.label(name)
    if name == "ticket_type":
        return TicketType.name.label(name)
    if name == "time_adjusted":
        return TIME_ADJUSTED
    column: ColumnElement[Any] = getattr(TicketScan, name)
    return column


#: The CSV header: the fields of ``ScanOut``, in order.
CSV_COLUMNS: tuple[str, ...] = ScanOut.__struct_fields__
# The scan log reads each scan with its ticket's holder and type in one query (outer joins:
# a scan of an unreadable or unknown code has no ticket).
_LOG = (
    select(*(_log_column(name) for name in CSV_COLUMNS))
    .select_from(TicketScan)
    .outerjoin(Ticket, Ticket.id == TicketScan.ticket_id)
    .outerjoin(TicketType, TicketType.id == Ticket.ticket_type_id)
)
_OFFLINE = CSV_COLUMNS.index("offline")
# Free text that buyers or staff typed: a spreadsheet must not run it as a formula.
_FREE_TEXT = tuple(
    CSV_COLUMNS.index(name)
    for name in (
        "holder_name",
        "ticket_type",
        "gate",
        "scanned_by",
        "annulled_by",
        "conflict_resolved_by",
        "conflict_resolution_note",
    )
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _ticket_conditions(filters: ScanFilter) -> list[ColumnElement[bool]]:
    """The scans of the tickets a manager looked for: by the start of the id, by the start of
    the holder's name (the names' index finds the tickets, their scans by ``ticket_id``)."""
    where: list[ColumnElement[bool]] = []
    if filters.ticket_id_prefix is not None:
        try:
            low, high = ticket_id_range(filters.ticket_id_prefix)
        except ValueError as error:
            raise BadRequest("invalid_ticket_id", "A ticket id is hex digits.") from error
        where.append(TicketScan.ticket_id.between(low, high))
    if filters.holder_prefix is not None:
        where.append(
            TicketScan.ticket_id.in_(select(Ticket.id).where(holder_starts(filters.holder_prefix)))
        )
    return where


def scan_conditions(filters: ScanFilter) -> list[ColumnElement[bool]]:
    """The WHERE clauses for ``filters``. Raises ``BadRequest`` (``validation_failed``) for a
    time without a UTC offset or outside ``shared.wire.TIME_YEARS``, and
    (``invalid_time_range``) when ``since`` is after ``until``."""
    for name, when in (("since", filters.since), ("until", filters.until)):
        if when is not None and when.utcoffset() is None:
            raise BadRequest(
                "validation_failed",
                "The request is not valid: see errors.",
                errors=[
                    {
                        "message": "An RFC 3339 time with a UTC offset (Z or ±hh:mm) is needed.",
                        "key": name,
                        "source": "query",
                    }
                ],
            )
    outside = out_of_range(since=filters.since, until=filters.until)
    if outside is not None:
        raise BadRequest(
            "validation_failed",
            "The request is not valid: see errors.",
            errors=[{"message": TIME_OUT_OF_RANGE, "key": outside, "source": "query"}],
        )
    if filters.since is not None and filters.until is not None and filters.since > filters.until:
        raise BadRequest("invalid_time_range", "since must not be later than until.")
    where: list[ColumnElement[bool]] = []
    for column, value in (
        (TicketScan.event_id, filters.event_id),
        (TicketScan.ticket_id, filters.ticket_id),
        (TicketScan.gate, filters.gate),
        (TicketScan.device_id, filters.device_id),
        (TicketScan.result, filters.result),
        (TicketScan.reason, filters.reason),
        (TicketScan.direction, filters.direction),
    ):
        if value is not None:
            where.append(column == value)
    if filters.checkin_list_id is not None:
        where.append(TicketScan.checkin_list_id == filters.checkin_list_id)
    if filters.zone is not None:
        where.append(ADMISSION)
        where.append(TicketScan.checkin_list_id.is_not(None))
        where.append(func.coalesce(TicketScan.zone, "") == filters.zone)
    if filters.conflicts_only:
        where.append(CONFLICT)
    where.extend(_ticket_conditions(filters))
    if filters.since is not None:
        where.append(TicketScan.scanned_at >= filters.since)
    if filters.until is not None:
        where.append(TicketScan.scanned_at < filters.until)
    return where


async def _log_rows(
    session: AsyncSession,
    where: Sequence[ColumnElement[bool]],
    after: uuid.UUID | None,
    limit: int,
    *,
    newest_first: bool = False,
) -> Sequence[Row[Any]]:
    """Up to ``limit`` scans matching ``where`` with ids after ``after``, in id order (scan ids
    are UUIDv7, so roughly the order the scans happened); ``newest_first``: the other way,
    ids before ``after``."""
    query = _LOG.where(*where)
    if after is not None:
        query = query.where(TicketScan.id < after if newest_first else TicketScan.id > after)
    order = TicketScan.id.desc() if newest_first else TicketScan.id
    return (await session.execute(query.order_by(order).limit(limit))).all()


class ScanLog:
    """The scans of the caller's tenant, as managers review and count them."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def page(
        self, filters: ScanFilter, cursor: str | None, limit: int, *, newest_first: bool = False
    ) -> ScanPage:
        """One page of the scans matching ``filters`` and the next page's cursor (None on the
        last): oldest first, or ``newest_first`` (the console's log; its cursor pages on to
        older scans). Raises ``BadRequest`` for bad times or a cursor we did not make."""
        where = scan_conditions(filters)
        rows = await _log_rows(
            self._session, where, decode_cursor(cursor), limit + 1, newest_first=newest_first
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return ScanPage(
            items=msgspec.convert(rows, list[ScanOut], from_attributes=True),
            next_cursor=encode_cursor(rows[-1].id) if more else None,
        )

    async def scans(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, ScanOut]:
        """The scans with these ids (those of the tenant), by id: for a page's double entries,
        the admissions they collided with."""
        if not ids:
            return {}
        rows = (await self._session.execute(_LOG.where(TicketScan.id.in_(ids)))).all()
        found = msgspec.convert(rows, list[ScanOut], from_attributes=True)
        return {scan.id: scan for scan in found}

    async def device_names(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The names of these devices (those of the tenant), by id."""
        if not ids:
            return {}
        rows = await self._session.execute(select(Device.id, Device.name).where(Device.id.in_(ids)))
        return dict(rows.all())

    async def stats(self, event_id: uuid.UUID, now: datetime) -> EventStats:
        """The event's counts as of ``now``: totals, per gate, per minute, who is inside.
        Raises ``NotFound`` when the event is not the tenant's."""
        counts = await self.counts(event_id)
        minutes = await self._session.execute(
            select(
                GateMinute.minute,
                func.sum(GateMinute.admitted).cast(BigInteger),
                func.sum(GateMinute.rejected).cast(BigInteger),
            )
            .where(GateMinute.event_id == event_id)
            .group_by(GateMinute.minute)
            .having(or_(func.sum(GateMinute.admitted) != 0, func.sum(GateMinute.rejected) != 0))
            .order_by(GateMinute.minute)
        )
        return EventStats(
            event_id=event_id,
            admitted=counts.admitted,
            rejected=counts.rejected,
            rejected_by_reason=counts.rejected_by_reason,
            inside_now=counts.inside_now,
            conflicts=counts.conflicts,
            annulled=counts.annulled,
            per_gate=[
                GateStats(
                    gate=g.gate, admitted=g.admitted, rejected=g.rejected, conflicts=g.conflicts
                )
                for g in counts.per_gate
            ],
            per_minute=[
                MinuteStats(minute=minute, admitted=admitted, rejected=rejected)
                for minute, admitted, rejected in minutes
            ],
            generated_at=now,
            inside_by_zone=counts.inside_by_zone if counts.has_lists else None,
        )

    async def counts(self, event_id: uuid.UUID) -> EventCounts:
        """The event's totals, per gate and per zone, from the counts the triggers of migration
        0020 keep (a few hundred small rows however many scans: no pass over the scans).
        Raises ``NotFound`` when the event is not the tenant's."""
        event = await self._session.get(Event, event_id)
        if event is None:
            raise NotFound("event")
        rows = await self._session.execute(
            select(
                GateCount.gate,
                GateCount.reason,
                *(
                    func.sum(getattr(GateCount, name)).cast(BigInteger).label(name)
                    for name in ("admitted", "rejected", "conflicts", "annulled", "exits")
                ),
                func.max(GateCount.last_scan_at).label("last_scan_at"),
            )
            .where(GateCount.event_id == event_id)
            .group_by(GateCount.gate, GateCount.reason)
        )
        gates: dict[str, GateCounts] = {}
        by_reason: dict[str, int] = {}
        for row in rows:
            gate = gates.setdefault(row.gate, GateCounts(gate=row.gate))
            gate.admitted += row.admitted
            gate.rejected += row.rejected
            gate.conflicts += row.conflicts
            gate.annulled += row.annulled
            gate.exits += row.exits
            if row.last_scan_at is not None and (
                gate.last_scan_at is None or row.last_scan_at > gate.last_scan_at
            ):
                gate.last_scan_at = row.last_scan_at
            if row.rejected:
                reason = row.reason or "unspecified"
                by_reason[reason] = by_reason.get(reason, 0) + row.rejected
        zones = await self._session.execute(
            select(ZoneCount.zone, func.sum(ZoneCount.inside).cast(BigInteger))
            .where(ZoneCount.event_id == event_id)
            .group_by(ZoneCount.zone)
            .having(func.sum(ZoneCount.inside) > 0)
        )
        by_zone = {str(zone): int(inside) for zone, inside in zones}
        has_lists = bool(
            await self._session.scalar(select(exists().where(CheckinList.event_id == event_id)))
        )
        return EventCounts(
            per_gate=sorted(gates.values(), key=lambda g: g.gate),
            rejected_by_reason=dict(sorted(by_reason.items())),
            inside_by_zone=dict(sorted(by_zone.items())),
            has_lists=has_lists,
        )

    async def gate_minutes(
        self, event_id: uuid.UUID, since: datetime
    ) -> list[tuple[datetime, str, int, int]]:
        """Admissions and rejections per minute and gate from ``since`` on, in minute order:
        (minute, gate, admitted, rejected). The event is not checked (``counts`` does)."""
        rows = await self._session.execute(
            select(
                GateMinute.minute,
                GateMinute.gate,
                func.sum(GateMinute.admitted).cast(BigInteger),
                func.sum(GateMinute.rejected).cast(BigInteger),
            )
            .where(GateMinute.event_id == event_id, GateMinute.minute >= since)
            .group_by(GateMinute.minute, GateMinute.gate)
            .order_by(GateMinute.minute, GateMinute.gate)
        )
        return [(minute, gate, int(a), int(r)) for minute, gate, a, r in rows]


async def export_csv(
    database: Database, tenant_id: uuid.UUID, filters: ScanFilter, *, chunk: int = EXPORT_CHUNK
) -> AsyncIterator[str]:
    """Every scan matching ``filters`` as CSV text (a header line, then one line per scan in
    id order), produced ``chunk`` rows at a time, each chunk read in its own short transaction
    so a slow download holds no connection. Raises ``BadRequest`` at once for bad filters.

    The first chunk is read before this returns, so whatever the filters do to the query shows
    as an error answer before the status line goes out, never as a 200 with a cut-off body."""
    where = scan_conditions(filters)
    async with database.tenant(tenant_id) as session:
        first = await _log_rows(session, where, None, chunk)
    return _csv_chunks(database, tenant_id, where, chunk, first)


async def _csv_chunks(
    database: Database,
    tenant_id: uuid.UUID,
    where: Sequence[ColumnElement[bool]],
    chunk: int,
    rows: Sequence[Row[Any]],
) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    while True:
        # UUIDs and times as the JSON answer writes them.
        for values in msgspec.to_builtins([list(row) for row in rows]):
            writer.writerow(_csv_cells(values))
        if buffer.tell():
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        if len(rows) < chunk:
            return
        async with database.tenant(tenant_id) as session:
            rows = await _log_rows(session, where, rows[-1].id, chunk)


def _csv_cells(values: list[Any]) -> list[Any]:
    values[_OFFLINE] = "true" if values[_OFFLINE] else "false"
    for index in _FREE_TEXT:
        text = values[index]
        if isinstance(text, str) and text.startswith(_FORMULA_START):
            values[index] = "'" + text
    return values
