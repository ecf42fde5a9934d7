"""The ticket cache: applying the changes feed, and looking a ticket up at the gate.

Applying is the bulk path (a fresh device takes 100,000 tickets in one go), so it goes through
the driver's ``executemany`` with one upsert statement per kind of change rather than through
SQLAlchemy's statement building, which would cost more than SQLite itself here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select

from scanner_app.core.store import schema
from scanner_app.core.store.sealing import Sealer
from scanner_app.core.store.state import merge_keys
from scanner_app.core.store.times import from_micros, opt_datetime, opt_micros, to_micros
from shared import wire
from shared.checkin_lists import inside_by_zone
from shared.domain import Direction, TicketStatus
from shared.holder_name import open_name
from shared.ticket_code import TicketCode
from shared.timeline import AdmittedScan

_UPSERT_TICKET = """
INSERT INTO tickets (lookup, status, secret_version, ticket_type, valid_from, valid_until,
                     sealed_holder, ticket_type_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (lookup) DO UPDATE SET
    status = excluded.status,
    secret_version = excluded.secret_version,
    ticket_type = excluded.ticket_type,
    valid_from = excluded.valid_from,
    valid_until = excluded.valid_until,
    sealed_holder = excluded.sealed_holder,
    ticket_type_id = excluded.ticket_type_id
"""

# Another gate's admission is inserted; for one of our own scans (already in the log) only the
# server's view changes: a conflict, an annulment, and the list and zone it counted on when the
# server names one (an online verdict's list is known here only from this echo).
_UPSERT_ADMISSION = """
INSERT INTO scans (scan_id, origin, ticket_lookup, device_id, gate, direction, at,
                   clock_offset_ms, result, mode, on_signature, conflict_of, annulled,
                   recorded_at, checkin_list_id, zone)
VALUES (?, 'peer', ?, ?, ?, ?, ?, 0, 'admitted', 'peer', 0, ?, ?, ?, ?, ?)
ON CONFLICT (scan_id) DO UPDATE SET
    conflict_of = excluded.conflict_of,
    checkin_list_id = coalesce(excluded.checkin_list_id, scans.checkin_list_id),
    zone = CASE WHEN excluded.checkin_list_id IS NULL THEN scans.zone ELSE excluded.zone END,
    -- An annulment made here and not uploaded yet must not be undone by an older echo.
    annulled = max(scans.annulled, excluded.annulled)
"""


@dataclass(frozen=True, slots=True)
class AppliedChanges:
    tickets: int = 0
    admissions: int = 0
    new_keys: int = 0


@dataclass(frozen=True, slots=True)
class CachedTicket:
    status: TicketStatus
    secret_version: int
    ticket_type: str
    valid_from: datetime | None
    valid_until: datetime | None
    #: The holder's name as the feed brought it, sealed under the ticket's name secret.
    sealed_holder: bytes | None
    #: The ticket type's id, which check-in lists name; None until the feed says.
    ticket_type_id: str | None = None

    def holder_name(self, code: TicketCode) -> str | None:
        """The holder's name, opened with the name secret of ``code`` (a code of this ticket);
        None for a GH1 code (it has no name secret), a superseded code, or no name."""
        return open_name(
            code.name_secret,
            self.sealed_holder,
            ticket_id=code.ticket_id,
            secret_version=code.secret_version,
        )


def apply_changes(
    conn: Connection, sealer: Sealer, changes: list[wire.Change], now: datetime
) -> AppliedChanges:
    """Apply one page of the feed, in its order. Applying a page twice changes nothing more
    (every change says how things now are), so a page whose cursor was not saved is simply
    applied again."""
    ticket_rows: list[tuple[object, ...]] = []
    admission_rows: list[tuple[object, ...]] = []
    new_keys = 0
    recorded = to_micros(now)
    for change in changes:
        if isinstance(change, wire.TicketChange):
            ticket_rows.append(
                (
                    sealer.lookup(change.ticket_id),
                    change.status.value,
                    change.secret_version,
                    change.ticket_type,
                    opt_micros(change.valid_from),
                    opt_micros(change.valid_until),
                    # As the server sealed it: only the ticket's own code opens it.
                    change.sealed_holder,
                    change.ticket_type_id,
                )
            )
        elif isinstance(change, wire.AdmissionChange):
            admission_rows.append(
                (
                    change.scan_id.bytes,
                    sealer.lookup(change.ticket_id),
                    change.device_id.bytes if change.device_id else None,
                    change.gate,
                    change.direction.value,
                    to_micros(change.scanned_at),
                    change.conflict_of.bytes if change.conflict_of else None,
                    change.annulled,
                    recorded,
                    change.checkin_list_id.bytes if change.checkin_list_id else None,
                    change.zone,
                )
            )
        else:
            # Keys first, so that a later ticket's codes read — but keys never depend on the
            # order of anything else, so they can be stored as they come.
            new_keys += merge_keys(conn, change.keys, now)
    # Ticket changes of one page may name one ticket twice; executemany keeps their order.
    if ticket_rows:
        conn.exec_driver_sql(_UPSERT_TICKET, ticket_rows)
    if admission_rows:
        conn.exec_driver_sql(_UPSERT_ADMISSION, admission_rows)
    return AppliedChanges(len(ticket_rows), len(admission_rows), new_keys)


def find_ticket(conn: Connection, lookup: bytes) -> CachedTicket | None:
    row = conn.exec_driver_sql(
        "SELECT status, secret_version, ticket_type, valid_from, valid_until, sealed_holder, "
        "ticket_type_id FROM tickets WHERE lookup = ?",
        (lookup,),
    ).first()
    if row is None:
        return None
    return CachedTicket(
        status=TicketStatus(row[0]),
        secret_version=row[1],
        ticket_type=row[2],
        valid_from=opt_datetime(row[3]),
        valid_until=opt_datetime(row[4]),
        sealed_holder=row[5],
        ticket_type_id=row[6],
    )


def ticket_count(conn: Connection) -> int:
    return int(conn.scalar(select(func.count()).select_from(schema.tickets)) or 0)


@dataclass(frozen=True, slots=True)
class KnownAdmission:
    """An admitted scan of one ticket that still counts (not annulled, not a conflict)."""

    scan_id: uuid.UUID
    at: datetime
    direction: Direction
    gate: str
    device_id: uuid.UUID | None
    #: The check-in list it counted on (as ``CheckinList.id``) and that list's zone.
    list_id: str | None = None
    zone: str | None = None


def admissions_of(conn: Connection, lookup: bytes) -> list[KnownAdmission]:
    """This ticket's admitted entries and exits, here and at gates this device heard of."""
    rows = conn.exec_driver_sql(
        "SELECT scan_id, at, direction, gate, device_id, checkin_list_id, zone FROM scans "
        # The literal 'admitted' lets SQLite use the partial index (a parameter would not).
        "WHERE ticket_lookup = ? AND result = 'admitted' AND NOT annulled "
        "AND conflict_of IS NULL",
        (lookup,),
    ).all()
    return [
        KnownAdmission(
            scan_id=uuid.UUID(bytes=r[0]),
            at=from_micros(r[1]),
            direction=Direction(r[2]),
            gate=r[3],
            device_id=uuid.UUID(bytes=r[4]) if r[4] else None,
            list_id=str(uuid.UUID(bytes=r[5])) if r[5] else None,
            zone=r[6],
        )
        for r in rows
    ]


def inside_now(conn: Connection) -> dict[str, int]:
    """How many people are inside each zone (``GENERAL_AREA``: the event's general area), from
    every admission this device knows — its own and those the feed brought — replayed per ticket
    by ``shared.checkin_lists.inside_by_zone``, as the server counts them. Exact when the device
    is in sync; offline, it misses what other gates did since."""
    rows = conn.exec_driver_sql(
        "SELECT ticket_lookup, scan_id, at, direction, zone FROM scans "
        "WHERE result = 'admitted' AND NOT annulled AND conflict_of IS NULL "
        "AND ticket_lookup IS NOT NULL ORDER BY ticket_lookup"
    )
    histories: list[list[AdmittedScan]] = []
    current: bytes | None = None
    for lookup, scan_id, at, direction, zone in rows:
        if lookup != current or not histories:
            histories.append([])
            current = lookup
        histories[-1].append(
            AdmittedScan(uuid.UUID(bytes=scan_id), from_micros(at), Direction(direction), zone=zone)
        )
    return inside_by_zone(histories)
