"""The write side of the scan log: recording scans, the upload queue, online verdicts in flight
and undo — what the gate and the sync engine write — and the counts the device status shows.

A scan and its queue entry are written in one transaction (the scanner's twin of the server's
outbox): either both are on disk or neither is, so a scan that was shown is uploaded, and a scan
that was not shown never is. The queue entry is removed only in the transaction that records the
server's answer, so a crash between upload and answer means one more upload, which the server
recognises by the scan id.

The gate screen's lookups are in ``lookups``; the managers' paged log in ``scanlog``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select

from scanner_app.core.store import schema
from scanner_app.core.store.sealing import Sealer
from scanner_app.core.store.state import Enrollment
from scanner_app.core.store.times import from_micros, to_micros
from shared import wire
from shared.domain import Direction, VerdictReason, VerdictResult
from shared.wire import CodeText

#: Why this device undoes an admission the server recorded for an online question whose answer
#: it never got (the app stopped first): its verdict was never shown, so it let nobody in.
NEVER_SHOWN = "app stopped before the verdict was shown"

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
    #: The scanned code's name secret (GH2): opens the holder's name in the scan log.
    name_secret: bytes | None = None
    on_signature: bool = False
    #: For an online verdict, the server's own record of it.
    server_result: VerdictResult | None = None
    server_reason: VerdictReason | None = None
    conflict_of: uuid.UUID | None = None
    #: The check-in list it counted on (a ``CheckinList.id``: a UUID) and that list's zone.
    checkin_list_id: str | None = None
    zone: str | None = None


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
        "name_secret, ticket_type, conflict_of, annulled, server_result, server_reason, "
        "recorded_at, checkin_list_id, zone) "
        "VALUES (?, 'local', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)"
        + conflict,
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
            scan.name_secret,
            scan.ticket_type,
            scan.conflict_of.bytes if scan.conflict_of else None,
            scan.server_result.value if scan.server_result else None,
            scan.server_reason.value if scan.server_reason else None,
            to_micros(now),
            uuid.UUID(scan.checkin_list_id).bytes if scan.checkin_list_id else None,
            scan.zone,
        ),
    )
    if upload:
        enqueue(conn, scan.scan_id, "scan", now)


def enqueue(
    conn: Connection, scan_id: uuid.UUID, kind: str, now: datetime, reason: str | None = None
) -> None:
    conn.exec_driver_sql(
        "INSERT INTO upload_queue (scan_id, kind, enqueued_at, attempts, reason) "
        "VALUES (?, ?, ?, 0, ?) ON CONFLICT (scan_id, kind) DO NOTHING",
        (scan_id.bytes, kind, to_micros(now), reason),
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
        PendingOnline(
            scan_id=uuid.UUID(bytes=r.scan_id),
            code=r.code,
            direction=Direction(r.direction),
            device_time=from_micros(r.device_time),
        )
        for r in rows
    ]


def record_online_verdict(
    conn: Connection,
    sealer: Sealer,
    enrollment: Enrollment,
    *,
    scan_id: uuid.UUID,
    answer: wire.Verdict,
    code: str,
    direction: Direction,
    device_time: datetime,
    name_secret: bytes | None = None,
    checkin_list_id: str | None = None,
    zone: str | None = None,
) -> None:
    """Log a verdict the server gave (already on the server: not queued) and clear its
    pending row, in the caller's transaction. The gate calls it for an online verdict (with
    the check-in list and zone its own lists agree on); the sync engine for one whose answer a
    crash kept from being recorded (``unresolved_online``)."""
    at = answer.scanned_at or device_time
    record = ScanRecord(
        scan_id=scan_id,
        device_id=enrollment.device_id,
        gate=answer.gate or enrollment.gate,
        direction=direction,
        at=at,
        device_time=device_time,
        clock_offset_ms=_offset_ms(at, device_time),
        result=answer.result,
        reason=answer.reason,
        mode="online",
        code=code,
        ticket_lookup=sealer.lookup(answer.ticket_id) if answer.ticket_id else None,
        ticket_id=answer.ticket_id,
        ticket_type=answer.ticket_type,
        name_secret=name_secret,
        server_result=answer.result,
        server_reason=answer.reason,
        checkin_list_id=checkin_list_id,
        zone=zone,
    )
    record_scan(conn, record, upload=False, now=device_time, if_new=True)
    end_online(conn, scan_id)


def _offset_ms(server: datetime, device: datetime) -> int:
    return round((server - device).total_seconds() * 1000)


# --- the upload side ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueuedScan:
    seq: int
    upload: wire.ScanUpload


@dataclass(frozen=True, slots=True)
class QueuedAnnulment:
    seq: int
    scan_id: uuid.UUID
    #: Why, when the device says (``NEVER_SHOWN``); None for staff's undo.
    reason: str | None = None


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
            seq=r.seq,
            upload=wire.ScanUpload(
                scan_id=uuid.UUID(bytes=r.scan_id),
                code=_code_text(r.code),
                gate=r.gate,
                direction=Direction(r.direction),
                scanned_at=from_micros(r.device_time),
                clock_offset_ms=r.clock_offset_ms,
                device_result=VerdictResult(r.result),
                device_reason=VerdictReason(r.reason) if r.reason else None,
                offline=r.mode != "online",
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
        "SELECT q.seq, q.scan_id, q.reason FROM upload_queue q WHERE q.kind = 'annul' "
        "AND NOT EXISTS "
        "(SELECT 1 FROM upload_queue u WHERE u.kind = 'scan' AND u.scan_id = q.scan_id) "
        "ORDER BY q.seq LIMIT ?",
        (limit,),
    ).all()
    return [
        QueuedAnnulment(seq=r.seq, scan_id=uuid.UUID(bytes=r.scan_id), reason=r.reason)
        for r in rows
    ]


def has_unsent_admission(conn: Connection, lookup: bytes) -> bool:
    """Whether this device has an admission of the ticket (or its undoing) that the server has
    not heard of yet: then the server's word on the ticket is out of date, and this device's
    own log decides."""
    row = conn.exec_driver_sql(
        "SELECT 1 FROM scans s JOIN upload_queue q ON q.scan_id = s.scan_id "
        # The literal 'admitted' lets SQLite use the partial index (a parameter would not).
        "WHERE s.ticket_lookup = ? AND s.result = 'admitted' LIMIT 1",
        (lookup,),
    ).first()
    return row is not None


def queue_length(conn: Connection) -> int:
    return int(conn.scalar(select(func.count()).select_from(schema.upload_queue)) or 0)


@dataclass(frozen=True, slots=True)
class QueueSummary:
    """What waits to be sent, for the heartbeat."""

    scans: int
    annulments: int
    #: When the oldest queued scan was made, in server time as the device reckoned it then
    #: (its clock plus the offset it had measured); None when no scan waits.
    oldest_scan_at: datetime | None


def queue_summary(conn: Connection) -> QueueSummary:
    """Queued scans and annulments, and the oldest queued scan's time: one query."""
    row = conn.exec_driver_sql(
        "SELECT COALESCE(SUM(q.kind = 'scan'), 0), COALESCE(SUM(q.kind = 'annul'), 0), "
        "MIN(CASE WHEN q.kind = 'scan' THEN s.device_time + s.clock_offset_ms * 1000 END) "
        "FROM upload_queue q LEFT JOIN scans s ON s.scan_id = q.scan_id"
    ).one()
    return QueueSummary(
        scans=int(row[0]),
        annulments=int(row[1]),
        oldest_scan_at=from_micros(row[2]) if row[2] is not None else None,
    )


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


def requeue_own_scans(conn: Connection, device_id: uuid.UUID, now: datetime) -> int:
    """The server lost what it had from this device: queue every scan made here as
    ``device_id`` again, and the undo of each annulled one, so they go up again. Two cases:

    * it was restored from a backup (409 ``feed_reset``): the scans the backup missed;
    * it does not know the device (401 ``device_unknown``: restored from a backup older than
      the enrollment), so it has none of its scans: they wait in the queue (the status counts
      them) and go up under the new device once the gate is enrolled again.

    The server takes a scan it has already as the same scan (by id, for the same device) and
    answers what it recorded, so nothing is doubled. Only ``device_id``'s scans: a server that
    holds a scan under an earlier enrollment of this store refuses it as another device's.
    Scans the server refused for good stay out. Bounded by this device's own log. Returns how
    many scans were queued."""
    queued = conn.exec_driver_sql(
        "INSERT INTO upload_queue (scan_id, kind, enqueued_at, attempts) "
        "SELECT scan_id, 'scan', ?, 0 FROM scans WHERE origin = 'local' AND device_id = ? "
        "AND code IS NOT NULL AND server_result IS NOT 'refused' ORDER BY recorded_at "
        "ON CONFLICT (scan_id, kind) DO NOTHING",
        (to_micros(now), device_id.bytes),
    ).rowcount
    conn.exec_driver_sql(
        "INSERT INTO upload_queue (scan_id, kind, enqueued_at, attempts) "
        "SELECT scan_id, 'annul', ?, 0 FROM scans WHERE origin = 'local' AND device_id = ? "
        "AND annulled AND server_result IS NOT 'refused' ON CONFLICT (scan_id, kind) DO NOTHING",
        (to_micros(now), device_id.bytes),
    )
    return int(queued)


def refuse_queued(conn: Connection, seq: int, error: str) -> None:
    """The server refused this entry for good (it will never accept it as sent): keep the scan
    in the log with the reason, take it off the queue so the rest can go."""
    row = conn.exec_driver_sql("SELECT scan_id FROM upload_queue WHERE seq = ?", (seq,)).first()
    if row is None:
        return
    conn.exec_driver_sql(
        "UPDATE scans SET server_result = 'refused', server_reason = ? WHERE scan_id = ?",
        (error[:500], row.scan_id),
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


def annul(conn: Connection, scan_id: uuid.UUID, now: datetime, reason: str | None = None) -> bool:
    """Undo an entry admitted here: it no longer counts, and the server is told (with
    ``reason``, when given). False when there is no such admitted local entry (or it was
    annulled already, or the server refused the scan and so has nothing to undo).

    Double entries found against it stop being conflicts here, as the server lifts them when it
    replays the ticket without it: one of them is now the ticket's admission (the offline gate
    counts it). The feed's echo corrects one that the server makes a conflict of another
    admission instead (it sends this device its own scans only while they are conflicts or
    annulled, so a lifted one would otherwise never hear)."""
    result = conn.exec_driver_sql(
        "UPDATE scans SET annulled = 1 WHERE scan_id = ? AND origin = 'local' "
        "AND result = 'admitted' AND direction = 'entry' AND NOT annulled "
        "AND server_result IS NOT 'refused'",
        (scan_id.bytes,),
    )
    if result.rowcount != 1:
        return False
    conn.exec_driver_sql(
        "UPDATE scans SET conflict_of = NULL WHERE conflict_of = ?", (scan_id.bytes,)
    )
    enqueue(conn, scan_id, "annul", now, reason)
    return True


@dataclass(frozen=True, slots=True)
class LocalEntry:
    """What peers are told of a local admission this device undid (``annul``)."""

    ticket_id: uuid.UUID
    at: datetime
    gate: str
    checkin_list_id: str | None
    zone: str | None


def local_entry(conn: Connection, scan_id: uuid.UUID) -> LocalEntry | None:
    """The ticket, time, gate, list and zone of this device's scan ``scan_id``; None when it
    is not a local scan of a known ticket."""
    row = conn.exec_driver_sql(
        "SELECT ticket_id, at, gate, checkin_list_id, zone FROM scans "
        "WHERE scan_id = ? AND origin = 'local' AND ticket_id IS NOT NULL",
        (scan_id.bytes,),
    ).first()
    if row is None:
        return None
    return LocalEntry(
        ticket_id=uuid.UUID(bytes=row[0]),
        at=from_micros(row[1]),
        gate=row[2],
        checkin_list_id=str(uuid.UUID(bytes=row[3])) if row[3] is not None else None,
        zone=row[4],
    )


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
