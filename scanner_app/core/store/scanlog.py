"""The managers' scan log: the scans this device knows (its own and other gates' admissions
from the feed), filtered in SQL, paged by key, counted per gate, with the details of one scan
(the admission a refused scan collided with).

What the gate writes is in ``scans``; the gate screen's lookups in ``lookups``. ``local_scans``
and ``conflicts`` read the log plainly, without paging: the app does not call them, the tests
observe the log through them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row

from scanner_app.core.store.lookups import inside_by_gate
from scanner_app.core.store.times import from_micros, opt_datetime, to_micros
from shared.checkin_lists import GENERAL_AREA
from shared.domain import Direction, VerdictReason, VerdictResult
from shared.holder_name import open_name
from shared.timeline import AdmittedScan, prior_scan

# --- logged scans ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoggedScan:
    """A row of the scan log: the scan and what became of it (the managers' log shows one a row,
    as ``LogEntry.scan``; a scan's details show the admission it collided with as one)."""

    scan_id: uuid.UUID
    origin: str
    gate: str
    direction: Direction
    at: datetime
    result: VerdictResult
    reason: VerdictReason | None
    mode: str
    on_signature: bool
    ticket_id: uuid.UUID | None
    ticket_type: str | None
    conflict_of: uuid.UUID | None
    annulled: bool
    server_result: str | None
    server_reason: str | None
    uploaded: bool
    #: The check-in list it counted on (or that refused it) and that list's zone (issue 16).
    checkin_list_id: uuid.UUID | None = None
    zone: str | None = None


_LOG_COLUMNS = (
    "s.scan_id, s.origin, s.gate, s.direction, s.at, s.result, s.reason, s.mode, "
    "s.on_signature, s.ticket_id, s.ticket_type, s.conflict_of, s.annulled, s.server_result, "
    "s.server_reason, s.checkin_list_id, s.zone, NOT EXISTS (SELECT 1 FROM upload_queue q "
    "WHERE q.scan_id = s.scan_id AND q.kind = 'scan') AS uploaded"
)


def _logged(r: Row[Any]) -> LoggedScan:
    return LoggedScan(
        scan_id=uuid.UUID(bytes=r.scan_id),
        origin=str(r.origin),
        gate=str(r.gate),
        direction=Direction(r.direction),
        at=from_micros(r.at),
        result=VerdictResult(r.result),
        reason=VerdictReason(r.reason) if r.reason else None,
        mode=str(r.mode),
        on_signature=bool(r.on_signature),
        ticket_id=uuid.UUID(bytes=r.ticket_id) if r.ticket_id else None,
        ticket_type=r.ticket_type,
        conflict_of=uuid.UUID(bytes=r.conflict_of) if r.conflict_of else None,
        annulled=bool(r.annulled),
        server_result=r.server_result,
        server_reason=r.server_reason,
        uploaded=bool(r.uploaded),
        checkin_list_id=uuid.UUID(bytes=r.checkin_list_id) if r.checkin_list_id else None,
        zone=r.zone,
    )


def local_scans(conn: Connection, limit: int = 100) -> list[LoggedScan]:
    """This device's scans, newest first."""
    rows = conn.exec_driver_sql(
        f"SELECT {_LOG_COLUMNS} FROM scans s WHERE s.origin = 'local' "  # noqa: S608
        "ORDER BY s.at DESC LIMIT ?",
        (limit,),
    ).all()
    return [_logged(r) for r in rows]


def find_scan(conn: Connection, scan_id: uuid.UUID) -> LoggedScan | None:
    row = conn.exec_driver_sql(
        f"SELECT {_LOG_COLUMNS} FROM scans s WHERE s.scan_id = ?",  # noqa: S608
        (scan_id.bytes,),
    ).first()
    return _logged(row) if row else None


def conflicts(conn: Connection) -> list[LoggedScan]:
    """Double entries the server found among the scans this device knows (its own and other
    gates'), newest first."""
    rows = conn.exec_driver_sql(
        f"SELECT {_LOG_COLUMNS} FROM scans s WHERE s.conflict_of IS NOT NULL "  # noqa: S608
        "ORDER BY s.at DESC"
    ).all()
    return [_logged(r) for r in rows]


# --- the manager's scan log: filtered, paged by key, counted per gate ---------------------------


@dataclass(frozen=True, slots=True)
class ScanFilter:
    """Which scans the manager's log shows. Empty sets mean "any". Every condition is applied
    in SQL, so a page of the log is a page of the *filtered* log, however many rows it holds.

    ``text`` matches a gate or ticket type containing it, a ticket id starting with it (with or
    without dashes), or — for tickets this device scanned, whose names it can open — a holder
    name containing it (case-insensitive)."""

    results: frozenset[VerdictResult] = frozenset()
    reasons: frozenset[VerdictReason] = frozenset()
    gates: frozenset[str] = frozenset()
    #: Inclusive lower bound on the scan time.
    since: datetime | None = None
    #: Exclusive upper bound on the scan time.
    until: datetime | None = None
    text: str = ""
    conflicts_only: bool = False
    #: Check-in lists (issue 16): scans that counted on (or were refused by) one of these.
    lists: frozenset[uuid.UUID] = frozenset()
    #: Zones: scans on a list leading into one of these (``GENERAL_AREA``, "", for lists
    #: without a zone).
    zones: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class LogKey:
    """Where a page of the log ends: its last row's time and sequence number. The next page
    starts strictly after it, so rows inserted meanwhile never shift or repeat a page."""

    at_micros: int
    seq: int


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One row of the manager's scan log: the logged scan and what else the device knows."""

    #: Insertion order on this device (SQLite's rowid; scans are never deleted).
    seq: int
    scan: LoggedScan
    device_id: uuid.UUID | None
    device_time: datetime | None
    clock_offset_ms: int
    #: Only for tickets this device scanned (the ticket id opens the sealed name).
    holder_name: str | None
    has_ticket_row: bool
    #: False on a device without a server: its scans are never queued.
    queued: bool

    @property
    def key(self) -> LogKey:
        return LogKey(to_micros(self.scan.at), self.seq)

    @property
    def upload_state(self) -> str:
        """``refused`` (the server turned the upload down for good), ``queued`` (waiting),
        ``uploaded`` (the server has it: answered, or decided online), ``from server`` (another
        gate's admission, learnt from the feed) or ``local only`` (never queued: a device
        without a server)."""
        scan = self.scan
        if scan.origin == "peer":
            return "from server"
        if scan.server_result == "refused":
            return "refused"
        if self.queued:
            return "queued"
        if scan.server_result is not None or scan.mode == "online":
            return "uploaded"
        return "local only"


@dataclass(frozen=True, slots=True)
class GateCount:
    """Live counts of one gate, by the server's counting rules (``sync_server.domain.scans``):
    an entry counts when admitted, not annulled and not a double entry; an exit when admitted
    and not annulled; a ticket is inside on the gate of its latest counted entry when that is
    later than its latest counted exit."""

    gate: str
    entries: int
    exits: int
    inside: int
    rejected: int
    conflicts: int


_ENTRY_COLUMNS = (
    f"s.rowid AS seq, {_LOG_COLUMNS}, s.device_id, s.device_time, s.clock_offset_ms, "  # noqa: S608
    "s.name_secret, t.sealed_holder, t.secret_version AS cached_version, "
    "t.lookup IS NOT NULL AS has_ticket_row, EXISTS (SELECT 1 FROM "
    "upload_queue q WHERE q.scan_id = s.scan_id AND q.kind = 'scan') AS queued"
)
_ENTRY_FROM = "FROM scans s LEFT JOIN tickets t ON t.lookup = s.ticket_lookup"
_HOLDER_FUNCTION = "gatehouse_holder_has"
_HEX_DIGITS = frozenset("0123456789ABCDEF")


class HolderNames:
    """Opens the holder names of tickets this device scanned, remembering them: the text filter
    asks for the same few thousand names on every keystroke, and opening one costs a key
    derivation and an AES-GCM decryption. A name opens with the name secret of the code that
    was scanned (kept with the scan) and only for the ticket's current secret version; names
    only stay in memory (on disk they are as the server sealed them)."""

    def __init__(self) -> None:
        self._names: dict[tuple[bytes, bytes, bytes, int], str | None] = {}

    def open(
        self,
        ticket_id: bytes | None,
        name_secret: bytes | None,
        sealed: bytes | None,
        secret_version: int | None,
    ) -> str | None:
        if ticket_id is None or name_secret is None or sealed is None or secret_version is None:
            return None
        key = (ticket_id, name_secret, sealed, secret_version)
        if key not in self._names:
            if len(self._names) > 200_000:
                self._names.clear()
            self._names[key] = open_name(
                name_secret,
                sealed,
                ticket_id=uuid.UUID(bytes=ticket_id),
                secret_version=secret_version,
            )
        return self._names[key]


def _conditions(
    flt: ScanFilter, holders: HolderNames | None, conn: Connection
) -> tuple[list[str], list[object]]:
    where: list[str] = []
    params: list[object] = []
    if flt.results:
        where.append(f"s.result IN ({', '.join('?' * len(flt.results))})")
        params.extend(sorted(r.value for r in flt.results))
    if flt.reasons:
        where.append(f"s.reason IN ({', '.join('?' * len(flt.reasons))})")
        params.extend(sorted(r.value for r in flt.reasons))
    if flt.gates:
        where.append(f"s.gate IN ({', '.join('?' * len(flt.gates))})")
        params.extend(sorted(flt.gates))
    if flt.since is not None:
        where.append("s.at >= ?")
        params.append(to_micros(flt.since))
    if flt.until is not None:
        where.append("s.at < ?")
        params.append(to_micros(flt.until))
    if flt.conflicts_only:
        where.append("s.conflict_of IS NOT NULL")
    if flt.lists:
        where.append(f"s.checkin_list_id IN ({', '.join('?' * len(flt.lists))})")
        params.extend(sorted(item.bytes for item in flt.lists))
    if flt.zones:
        named = sorted(zone for zone in flt.zones if zone != GENERAL_AREA)
        either = [f"s.zone IN ({', '.join('?' * len(named))})"] if named else []
        params.extend(named)
        if GENERAL_AREA in flt.zones:
            either.append("(s.zone IS NULL AND s.checkin_list_id IS NOT NULL)")
        where.append("(" + " OR ".join(either) + ")")
    text = flt.text.strip()
    if text:
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        alternatives = ["s.gate LIKE ? ESCAPE '\\'", "s.ticket_type LIKE ? ESCAPE '\\'"]
        params.extend([like, like])
        hex_prefix = text.replace("-", "").upper()
        if hex_prefix and set(hex_prefix) <= _HEX_DIGITS and len(hex_prefix) <= 32:
            alternatives.append("substr(hex(s.ticket_id), 1, ?) = ?")
            params.extend([len(hex_prefix), hex_prefix])
        if holders is not None:
            needle = text.casefold()

            def holder_has(
                ticket_id: bytes | None,
                name_secret: bytes | None,
                sealed: bytes | None,
                secret_version: int | None,
            ) -> bool:
                name = holders.open(ticket_id, name_secret, sealed, secret_version)
                return name is not None and needle in name.casefold()

            # Names are sealed on disk, so SQL cannot compare them; SQLite calls back into
            # Python for the rows the cheaper alternatives did not already match.
            conn.connection.driver_connection.create_function(  # type: ignore[union-attr]
                _HOLDER_FUNCTION, 4, holder_has, deterministic=True
            )
            alternatives.append(
                f"{_HOLDER_FUNCTION}(s.ticket_id, s.name_secret, t.sealed_holder, t.secret_version)"
            )
        where.append("(" + " OR ".join(alternatives) + ")")
    return where, params


def _entry(r: Row[Any], holders: HolderNames) -> LogEntry:
    return LogEntry(
        seq=int(r.seq),
        scan=_logged(r),
        device_id=uuid.UUID(bytes=r.device_id) if r.device_id else None,
        device_time=opt_datetime(r.device_time),
        clock_offset_ms=int(r.clock_offset_ms),
        holder_name=holders.open(r.ticket_id, r.name_secret, r.sealed_holder, r.cached_version),
        has_ticket_row=bool(r.has_ticket_row),
        queued=bool(r.queued),
    )


def log_page(
    conn: Connection,
    holders: HolderNames,
    flt: ScanFilter = ScanFilter(),
    *,
    after: LogKey | None = None,
    newest_first: bool = True,
    limit: int = 200,
) -> list[LogEntry]:
    """Up to ``limit`` scans matching ``flt`` (this device's and other gates'), by time then
    sequence, starting after ``after`` (keyset paging: each page costs the same however deep,
    and rows added meanwhile never shift a page)."""
    where, params = _conditions(flt, holders, conn)
    if after is not None:
        cmp = "<" if newest_first else ">"
        where.append(f"(s.at {cmp} ? OR (s.at = ? AND s.rowid {cmp} ?))")
        params.extend([after.at_micros, after.at_micros, after.seq])
    order = "DESC" if newest_first else "ASC"
    rows = conn.exec_driver_sql(
        f"SELECT {_ENTRY_COLUMNS} {_ENTRY_FROM} "
        f"{'WHERE ' + ' AND '.join(where) if where else ''} "
        f"ORDER BY s.at {order}, s.rowid {order} LIMIT ?",
        (*params, limit),
    ).all()
    return [_entry(r, holders) for r in rows]


def log_added_since(
    conn: Connection,
    holders: HolderNames,
    flt: ScanFilter,
    after_seq: int,
    limit: int = 1000,
) -> list[LogEntry]:
    """Scans matching ``flt`` written after sequence number ``after_seq``, oldest first: what a
    log on screen lacks since it last looked (a new verdict, another gate's admission)."""
    where, params = _conditions(flt, holders, conn)
    where.append("s.rowid > ?")
    rows = conn.exec_driver_sql(
        f"SELECT {_ENTRY_COLUMNS} {_ENTRY_FROM} WHERE {' AND '.join(where)} "
        "ORDER BY s.rowid LIMIT ?",
        (*params, after_seq, limit),
    ).all()
    return [_entry(r, holders) for r in rows]


def log_entries(conn: Connection, holders: HolderNames, seqs: list[int]) -> list[LogEntry]:
    """The current state of the scans with these sequence numbers (their upload state, conflict
    and annulment change after they were first read)."""
    found: list[LogEntry] = []
    for start in range(0, len(seqs), 500):
        chunk = seqs[start : start + 500]
        rows = conn.exec_driver_sql(
            f"SELECT {_ENTRY_COLUMNS} {_ENTRY_FROM} "
            f"WHERE s.rowid IN ({', '.join('?' * len(chunk))})",
            tuple(chunk),
        ).all()
        found.extend(_entry(r, holders) for r in rows)
    return found


def log_count(
    conn: Connection,
    flt: ScanFilter = ScanFilter(),
    holders: HolderNames | None = None,
) -> int:
    """How many scans match ``flt``. Without ``holders`` the text filter does not look at
    holder names."""
    where, params = _conditions(flt, holders, conn)
    return int(
        conn.exec_driver_sql(
            f"SELECT count(*) {_ENTRY_FROM} {'WHERE ' + ' AND '.join(where) if where else ''}",
            tuple(params),
        ).scalar_one()
    )


def latest_seq(conn: Connection) -> int:
    """The sequence number of the newest scan row (0 for an empty log)."""
    return int(conn.exec_driver_sql("SELECT coalesce(max(rowid), 0) FROM scans").scalar_one())


def gate_counts(conn: Connection) -> list[GateCount]:
    """Entries, exits, who is inside, rejections and conflicts per gate (see ``GateCount``)."""
    counts = {
        r.gate: [int(r.entries), int(r.exits), 0, int(r.rejected), int(r.conflicts)]
        for r in conn.exec_driver_sql(
            "SELECT gate, "
            "count(*) FILTER (WHERE result = 'admitted' AND direction = 'entry' "
            "  AND NOT annulled AND conflict_of IS NULL) AS entries, "
            "count(*) FILTER (WHERE result = 'admitted' AND direction = 'exit' AND NOT annulled) "
            "  AS exits, "
            "count(*) FILTER (WHERE result = 'rejected') AS rejected, "
            "count(*) FILTER (WHERE conflict_of IS NOT NULL AND NOT annulled) AS conflicts "
            "FROM scans GROUP BY gate"
        )
    }
    for gate, number in inside_by_gate(conn).items():
        counts.setdefault(gate, [0, 0, 0, 0, 0])[2] = number
    return [GateCount(gate, *values) for gate, values in sorted(counts.items())]


def prior_admission(conn: Connection, scan_id: uuid.UUID) -> LoggedScan | None:
    """For a scan refused as ``already_checked_in``: the admission it collided with, replayed
    from the ticket's admissions this device knows *now* before that scan (a conflict or an
    annulment learnt since may make it differ from the one the gate named at the time)."""
    row = conn.exec_driver_sql(
        "SELECT s.ticket_lookup, s.at, coalesce(e.allow_reentry, 0) AS allow_reentry FROM scans s "
        "LEFT JOIN device d ON d.id = 1 LEFT JOIN event e ON e.event_id = d.event_id "
        "WHERE s.scan_id = ?",
        (scan_id.bytes,),
    ).first()
    if row is None or row.ticket_lookup is None:
        return None
    earlier = conn.exec_driver_sql(
        "SELECT scan_id, at, direction FROM scans WHERE ticket_lookup = ? "
        "AND result = 'admitted' AND NOT annulled AND conflict_of IS NULL AND at <= ? "
        "AND scan_id != ?",
        (row.ticket_lookup, row.at, scan_id.bytes),
    ).all()
    prior = prior_scan(
        [
            AdmittedScan(uuid.UUID(bytes=r.scan_id), from_micros(r.at), Direction(r.direction))
            for r in earlier
        ],
        allow_reentry=bool(row.allow_reentry),
    )
    return find_scan(conn, prior.scan_id) if prior else None
