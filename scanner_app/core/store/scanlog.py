"""The local scan log and the upload queue.

A scan and its queue entry are written in one transaction (the scanner's twin of the server's
outbox): either both are on disk or neither is, so a scan that was shown is uploaded, and a scan
that was not shown never is. The queue entry is removed only in the transaction that records the
server's answer, so a crash between upload and answer means one more upload, which the server
recognises by the scan id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from scanner_app.core.store import schema
from scanner_app.core.store.cache import find_ticket
from scanner_app.core.store.sealing import Sealer
from scanner_app.core.store.times import from_micros, opt_datetime, to_micros
from shared import wire
from shared.domain import Direction, VerdictReason, VerdictResult
from shared.timeline import AdmittedScan, replay
from shared.wire import CodeText

#: Longest text kept from a scan (the wire's limit); longer input is not a ticket code anyway.
MAX_CODE_CHARS = 2048


@dataclass(frozen=True, slots=True)
class ScanRecord:
    """One scan made on this device, as it is recorded before its verdict is shown."""

    scan_id: uuid.UUID
    gate: str
    direction: Direction
    #: Corrected time (device clock + measured offset): what the server orders by.
    at: datetime
    device_time: datetime
    clock_offset_ms: int
    result: VerdictResult
    reason: VerdictReason | None
    #: ``offline`` or ``online``.
    mode: str
    code: str
    device_id: uuid.UUID | None = None
    ticket_lookup: bytes | None = None
    ticket_id: uuid.UUID | None = None
    ticket_type: str | None = None
    on_signature: bool = False
    #: For an online verdict, the server's own record of it.
    server_result: VerdictResult | None = None
    server_reason: VerdictReason | None = None
    conflict_of: uuid.UUID | None = None


def record_scan(
    conn: Connection, scan: ScanRecord, *, upload: bool, now: datetime, if_new: bool = False
) -> None:
    """Write ``scan`` to the log and, when ``upload``, queue it for the server. With
    ``if_new``, a scan already in the log is left as it is (a verdict recorded twice by two
    paths that both learnt it from the server)."""
    conflict = " ON CONFLICT (scan_id) DO NOTHING" if if_new else ""
    conn.exec_driver_sql(
        "INSERT INTO scans (scan_id, origin, ticket_lookup, ticket_id, device_id, gate, "
        "direction, at, device_time, clock_offset_ms, result, reason, mode, on_signature, code, "
        "ticket_type, conflict_of, annulled, server_result, server_reason, recorded_at) "
        "VALUES (?, 'local', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)" + conflict,
        (
            scan.scan_id.bytes,
            scan.ticket_lookup,
            scan.ticket_id.bytes if scan.ticket_id else None,
            scan.device_id.bytes if scan.device_id else None,
            scan.gate,
            scan.direction.value,
            to_micros(scan.at),
            to_micros(scan.device_time),
            scan.clock_offset_ms,
            scan.result.value,
            scan.reason.value if scan.reason else None,
            scan.mode,
            scan.on_signature,
            scan.code[:MAX_CODE_CHARS],
            scan.ticket_type,
            scan.conflict_of.bytes if scan.conflict_of else None,
            scan.server_result.value if scan.server_result else None,
            scan.server_reason.value if scan.server_reason else None,
            to_micros(now),
        ),
    )
    if upload:
        enqueue(conn, scan.scan_id, "scan", now)


def enqueue(conn: Connection, scan_id: uuid.UUID, kind: str, now: datetime) -> None:
    conn.exec_driver_sql(
        "INSERT INTO upload_queue (scan_id, kind, enqueued_at, attempts) VALUES (?, ?, ?, 0) "
        "ON CONFLICT (scan_id, kind) DO NOTHING",
        (scan_id.bytes, kind, to_micros(now)),
    )


# --- online verdicts in flight ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingOnline:
    scan_id: uuid.UUID
    code: str
    direction: Direction
    device_time: datetime


def begin_online(conn: Connection, pending: PendingOnline) -> None:
    """Note that the server is being asked about this scan (before asking it)."""
    conn.exec_driver_sql(
        "INSERT INTO pending_online (scan_id, code, direction, device_time) VALUES (?, ?, ?, ?)",
        (
            pending.scan_id.bytes,
            pending.code[:MAX_CODE_CHARS],
            pending.direction.value,
            to_micros(pending.device_time),
        ),
    )


def end_online(conn: Connection, scan_id: uuid.UUID) -> None:
    conn.exec_driver_sql("DELETE FROM pending_online WHERE scan_id = ?", (scan_id.bytes,))


def unresolved_online(conn: Connection, started_before: datetime) -> list[PendingOnline]:
    """Questions to the server that a crash left without an answer (older than
    ``started_before``, so that one still in flight in this process is not among them)."""
    rows = conn.exec_driver_sql(
        "SELECT scan_id, code, direction, device_time FROM pending_online "
        "WHERE device_time < ? ORDER BY device_time",
        (to_micros(started_before),),
    ).all()
    return [
        PendingOnline(uuid.UUID(bytes=r[0]), r[1], Direction(r[2]), from_micros(r[3])) for r in rows
    ]


# --- the upload side ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueuedScan:
    seq: int
    upload: wire.ScanUpload


@dataclass(frozen=True, slots=True)
class QueuedAnnulment:
    seq: int
    scan_id: uuid.UUID


def queued_scans(conn: Connection, limit: int) -> list[QueuedScan]:
    """The oldest queued scans, as the server's upload endpoint takes them."""
    rows = conn.exec_driver_sql(
        "SELECT q.seq, s.scan_id, s.code, s.gate, s.direction, s.device_time, "
        "s.clock_offset_ms, s.result, s.reason, s.mode "
        "FROM upload_queue q JOIN scans s ON s.scan_id = q.scan_id "
        "WHERE q.kind = 'scan' ORDER BY q.seq LIMIT ?",
        (limit,),
    ).all()
    return [
        QueuedScan(
            seq=r[0],
            upload=wire.ScanUpload(
                scan_id=uuid.UUID(bytes=r[1]),
                code=_code_text(r[2]),
                gate=r[3],
                direction=Direction(r[4]),
                scanned_at=from_micros(r[5]),
                clock_offset_ms=r[6],
                device_result=VerdictResult(r[7]),
                device_reason=VerdictReason(r[8]) if r[8] else None,
                offline=r[9] != "online",
            ),
        )
        for r in rows
    ]


def _code_text(code: str | None) -> CodeText:
    # The wire needs at least one character; an empty read (a scanner sending only Enter) is
    # recorded as what it was, and must not block the queue.
    return code or "?"


def queued_annulments(conn: Connection, limit: int) -> list[QueuedAnnulment]:
    """Annulments waiting, oldest first — only those whose scan has itself been uploaded (the
    server can only undo what it has)."""
    rows = conn.exec_driver_sql(
        "SELECT q.seq, q.scan_id FROM upload_queue q WHERE q.kind = 'annul' AND NOT EXISTS "
        "(SELECT 1 FROM upload_queue u WHERE u.kind = 'scan' AND u.scan_id = q.scan_id) "
        "ORDER BY q.seq LIMIT ?",
        (limit,),
    ).all()
    return [QueuedAnnulment(seq=r[0], scan_id=uuid.UUID(bytes=r[1])) for r in rows]


def queue_length(conn: Connection) -> int:
    return int(conn.scalar(select(func.count()).select_from(schema.upload_queue)) or 0)


def record_outcomes(conn: Connection, batch: wire.ScanBatchOutcome) -> int:
    """Store the server's answer to an upload and take the answered scans off the queue.
    Returns how many of this device's scans the server found to be conflicts."""
    if batch.outcomes:
        conn.exec_driver_sql(
            "DELETE FROM upload_queue WHERE kind = 'scan' AND scan_id = ?",
            [(outcome.scan_id.bytes,) for outcome in batch.outcomes],
        )
    answers = [*batch.outcomes, *batch.reclassified]
    if answers:
        # One statement for the whole answer (up to 1,000 scans), not one per scan.
        conn.exec_driver_sql(
            "UPDATE scans SET server_result = ?, server_reason = ?, conflict_of = ? "
            "WHERE scan_id = ?",
            [
                (
                    outcome.result.value,
                    reason.value if (reason := outcome.server_reason or outcome.reason) else None,
                    outcome.conflict_of.bytes if outcome.conflict_of else None,
                    outcome.scan_id.bytes,
                )
                for outcome in answers
            ],
        )
    return sum(1 for outcome in answers if outcome.conflict_of is not None)


def refuse_queued(conn: Connection, seq: int, error: str) -> None:
    """The server refused this entry for good (it will never accept it as sent): keep the scan
    in the log with the reason, take it off the queue so the rest can go."""
    row = conn.exec_driver_sql("SELECT scan_id FROM upload_queue WHERE seq = ?", (seq,)).first()
    if row is None:
        return
    conn.exec_driver_sql(
        "UPDATE scans SET server_result = 'refused', server_reason = ? WHERE scan_id = ?",
        (error[:500], row[0]),
    )
    conn.exec_driver_sql("DELETE FROM upload_queue WHERE seq = ?", (seq,))


def note_failed_attempt(conn: Connection, seqs: list[int], error: str) -> None:
    conn.exec_driver_sql(
        "UPDATE upload_queue SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
        [(error[:500], seq) for seq in seqs],
    )


def drop_from_queue(conn: Connection, seq: int) -> None:
    conn.exec_driver_sql("DELETE FROM upload_queue WHERE seq = ?", (seq,))


# --- undo ---------------------------------------------------------------------------------------


def annul(conn: Connection, scan_id: uuid.UUID, now: datetime) -> bool:
    """Undo an entry admitted here: it no longer counts, and the server is told. False when
    there is no such admitted local entry (or it was annulled already, or the server refused
    the scan and so has nothing to undo)."""
    result = conn.exec_driver_sql(
        "UPDATE scans SET annulled = 1 WHERE scan_id = ? AND origin = 'local' "
        "AND result = 'admitted' AND direction = 'entry' AND NOT annulled "
        "AND server_result IS NOT 'refused'",
        (scan_id.bytes,),
    )
    if result.rowcount != 1:
        return False
    enqueue(conn, scan_id, "annul", now)
    return True


# --- reading the log ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoggedScan:
    """A row of the scan log as managers and the status screen see it."""

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


_LOG_COLUMNS = (
    "s.scan_id, s.origin, s.gate, s.direction, s.at, s.result, s.reason, s.mode, "
    "s.on_signature, s.ticket_id, s.ticket_type, s.conflict_of, s.annulled, s.server_result, "
    "s.server_reason, NOT EXISTS (SELECT 1 FROM upload_queue q WHERE q.scan_id = s.scan_id "
    "AND q.kind = 'scan')"
)


def _logged(r: Any) -> LoggedScan:
    return LoggedScan(
        scan_id=uuid.UUID(bytes=r[0]),
        origin=str(r[1]),
        gate=str(r[2]),
        direction=Direction(r[3]),
        at=from_micros(r[4]),
        result=VerdictResult(r[5]),
        reason=VerdictReason(r[6]) if r[6] else None,
        mode=str(r[7]),
        on_signature=bool(r[8]),
        ticket_id=uuid.UUID(bytes=r[9]) if r[9] else None,
        ticket_type=r[10],
        conflict_of=uuid.UUID(bytes=r[11]) if r[11] else None,
        annulled=bool(r[12]),
        server_result=r[13],
        server_reason=r[14],
        uploaded=bool(r[15]),
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


def conflict_count(conn: Connection) -> int:
    return int(
        conn.scalar(
            select(func.count())
            .select_from(schema.scans)
            .where(schema.scans.c.conflict_of.is_not(None))
        )
        or 0
    )


def scan_count(conn: Connection, origin: str = "local") -> int:
    return int(
        conn.scalar(
            select(func.count()).select_from(schema.scans).where(schema.scans.c.origin == origin)
        )
        or 0
    )


def last_scan_time(conn: Connection) -> datetime | None:
    return opt_datetime(
        conn.scalar(select(func.max(schema.scans.c.at)).where(schema.scans.c.origin == "local"))
    )


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
    f"s.rowid, {_LOG_COLUMNS}, s.device_id, s.device_time, s.clock_offset_ms, "  # noqa: S608
    "t.sealed_holder, t.lookup IS NOT NULL, EXISTS (SELECT 1 FROM upload_queue q "
    "WHERE q.scan_id = s.scan_id AND q.kind = 'scan')"
)
_ENTRY_FROM = "FROM scans s LEFT JOIN tickets t ON t.lookup = s.ticket_lookup"
_HOLDER_FUNCTION = "gatehouse_holder_has"
_HEX_DIGITS = frozenset("0123456789ABCDEF")


class HolderNames:
    """Opens the holder names of tickets this device scanned, remembering them: the text filter
    asks for the same few thousand names on every keystroke, and opening one costs a SHA-512
    and an AES-GCM decryption. Names only stay in memory (they are sealed on disk)."""

    def __init__(self, sealer: Sealer) -> None:
        self._sealer = sealer
        self._names: dict[bytes, str | None] = {}

    def open(self, ticket_id: bytes | None, sealed: bytes | None) -> str | None:
        if ticket_id is None or sealed is None:
            return None
        if ticket_id not in self._names:
            if len(self._names) > 200_000:
                self._names.clear()
            seal = self._sealer.for_ticket(uuid.UUID(bytes=ticket_id))
            self._names[ticket_id] = seal.open(sealed)
        return self._names[ticket_id]


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

            def holder_has(ticket_id: bytes | None, sealed: bytes | None) -> bool:
                name = holders.open(ticket_id, sealed)
                return name is not None and needle in name.casefold()

            # Names are sealed on disk, so SQL cannot compare them; SQLite calls back into
            # Python for the rows the cheaper alternatives did not already match.
            conn.connection.driver_connection.create_function(  # type: ignore[union-attr]
                _HOLDER_FUNCTION, 2, holder_has, deterministic=True
            )
            alternatives.append(f"{_HOLDER_FUNCTION}(s.ticket_id, t.sealed_holder)")
        where.append("(" + " OR ".join(alternatives) + ")")
    return where, params


def _entry(r: Any, holders: HolderNames) -> LogEntry:
    return LogEntry(
        seq=int(r[0]),
        scan=_logged(r[1:17]),
        device_id=uuid.UUID(bytes=r[17]) if r[17] else None,
        device_time=opt_datetime(r[18]),
        clock_offset_ms=int(r[19]),
        holder_name=holders.open(r[10], r[20]),
        has_ticket_row=bool(r[21]),
        queued=bool(r[22]),
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


def log_gates(conn: Connection) -> list[str]:
    """Every gate the log names, for the gate filter."""
    return [r[0] for r in conn.exec_driver_sql("SELECT DISTINCT gate FROM scans ORDER BY gate")]


def gate_counts(conn: Connection) -> list[GateCount]:
    """Entries, exits, who is inside, rejections and conflicts per gate (see ``GateCount``)."""
    counts = {
        r[0]: [int(r[1]), int(r[2]), 0, int(r[3]), int(r[4])]
        for r in conn.exec_driver_sql(
            "SELECT gate, "
            "count(*) FILTER (WHERE result = 'admitted' AND direction = 'entry' "
            "  AND NOT annulled AND conflict_of IS NULL), "
            "count(*) FILTER (WHERE result = 'admitted' AND direction = 'exit' AND NOT annulled), "
            "count(*) FILTER (WHERE result = 'rejected'), "
            "count(*) FILTER (WHERE conflict_of IS NOT NULL AND NOT annulled) "
            "FROM scans GROUP BY gate"
        )
    }
    for gate, number in inside_by_gate(conn).items():
        counts.setdefault(gate, [0, 0, 0, 0, 0])[2] = number
    return [GateCount(gate, *values) for gate, values in sorted(counts.items())]


def inside_by_gate(conn: Connection) -> dict[str, int]:
    """Who is inside now, as this device knows it, by the gate they came in through: tickets
    whose latest counted admission (this device's or another gate's from the feed; not undone;
    an entry that was a double entry does not count) is an entry. Per ticket, not entries minus
    exits, because an exit gate lets out anyone with a genuine code — including people it never
    saw come in. The gate screen's "inside now" is the sum; the scan log shows it per gate."""
    # Each ticket's latest counted entry or exit (the partial index on admitted scans serves
    # this); the ticket is inside on that entry's gate.
    inside = conn.exec_driver_sql(
        "SELECT gate, count(*) FROM ("
        "  SELECT gate, direction, row_number() OVER ("
        "    PARTITION BY ticket_lookup ORDER BY at DESC, scan_id DESC) AS n"
        "  FROM scans WHERE result = 'admitted' AND ticket_lookup IS NOT NULL AND NOT annulled"
        "  AND (direction = 'exit' OR conflict_of IS NULL)"
        ") WHERE n = 1 AND direction = 'entry' GROUP BY gate"
    )
    return {gate: int(number) for gate, number in inside}


def prior_admission(conn: Connection, scan_id: uuid.UUID) -> LoggedScan | None:
    """For a scan refused as ``already_checked_in``: the admission it collided with, replayed
    from the ticket's admissions this device knows *now* before that scan (a conflict or an
    annulment learnt since may make it differ from the one the gate named at the time)."""
    row = conn.exec_driver_sql(
        "SELECT s.ticket_lookup, s.at, coalesce(e.allow_reentry, 0) FROM scans s "
        "LEFT JOIN device d ON d.id = 1 LEFT JOIN event e ON e.event_id = d.event_id "
        "WHERE s.scan_id = ?",
        (scan_id.bytes,),
    ).first()
    if row is None or row[0] is None:
        return None
    earlier = conn.exec_driver_sql(
        "SELECT scan_id, at, direction FROM scans WHERE ticket_lookup = ? "
        "AND result = 'admitted' AND NOT annulled AND conflict_of IS NULL AND at <= ? "
        "AND scan_id != ?",
        (row[0], row[1], scan_id.bytes),
    ).all()
    timeline = replay(
        (AdmittedScan(uuid.UUID(bytes=r[0]), from_micros(r[1]), Direction(r[2])) for r in earlier),
        allow_reentry=bool(row[2]),
    )
    collides = timeline.entry_collides_with(bool(row[2]))
    return find_scan(conn, collides) if collides else None


@dataclass(frozen=True, slots=True)
class NameMatch:
    """A ticket this device scanned whose holder's name matches a search."""

    holder_name: str
    ticket_type: str | None
    last_scan_at: datetime
    last_result: VerdictResult
    last_direction: Direction
    #: The code text as it was read: scanning it again is what "check in" from a search does.
    code: str


def find_scanned_holders(
    conn: Connection, sealer: Sealer, query: str, limit: int = 50
) -> list[NameMatch]:
    """Tickets scanned at this device whose holder's name contains ``query`` (case-insensitive).

    Names in the cache are sealed per ticket and open only with the ticket's id, which is in
    its code (docs/scanner.md): a device can read the names of tickets it has scanned (its own
    log keeps their ids) and of no others. So this searches those, and only those.
    """
    needle = query.strip().casefold()
    if not needle:
        return []
    rows = conn.exec_driver_sql(
        "SELECT ticket_id, code, at, result, direction FROM scans "
        "WHERE origin = 'local' AND ticket_id IS NOT NULL ORDER BY at DESC"
    ).all()
    matches: list[NameMatch] = []
    seen: set[bytes] = set()
    for ticket_bytes, code, at, result, direction in rows:
        if ticket_bytes in seen:
            continue
        seen.add(ticket_bytes)
        seal = sealer.for_ticket(uuid.UUID(bytes=ticket_bytes))
        cached = find_ticket(conn, seal.lookup)
        name = seal.open(cached.sealed_holder) if cached else None
        if name is None or needle not in name.casefold():
            continue
        matches.append(
            NameMatch(
                holder_name=name,
                ticket_type=cached.ticket_type if cached else None,
                last_scan_at=from_micros(at),
                last_result=VerdictResult(result),
                last_direction=Direction(direction),
                code=code or "",
            )
        )
        if len(matches) >= limit:
            break
    return matches
