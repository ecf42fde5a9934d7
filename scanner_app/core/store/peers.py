"""Peer sync in the store (issue 18, docs/peer-sync.md): this device's peer credentials, the
devices the server revoked, and the records gates tell each other.

Every record — made here or heard from a peer — is kept as its sealed envelope in
``peer_records``, keyed by (origin device, seq), so anti-entropy can serve it to a peer that
lacks it and a record stored twice changes nothing. A peer's admission or exit is also a
``scans`` row of origin 'peer', exactly as the changes feed stores other gates' admissions
(``cache._UPSERT_ADMISSION``), so the offline verdict reads both the same way; when the feed later
brings the same scan id, its upsert merges into that row (one scan, counted once).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection

from scanner_app.core.store.sealing import Sealer
from scanner_app.core.store.times import from_micros, to_micros
from shared.domain import Direction
from shared.peers import Credentials, DeviceKey, Opened, Record, RecordKind, read_certificate

_SEED_PURPOSE = b"peer_credentials.sealed_seed"
_EVENT_KEY_PURPOSE = b"peer_credentials.sealed_event_key"

# A peer's admission: inserted unless the feed (or an earlier path) brought it already — the
# feed's row is the server's word and is left as it is. Annulled at once when an undo of it from
# the same origin arrived first (two paths deliver in any order).
_INSERT_PEER_SCAN = """
INSERT INTO scans (scan_id, origin, ticket_lookup, device_id, gate, direction, at,
                   clock_offset_ms, result, mode, on_signature, annulled, recorded_at,
                   checkin_list_id, zone)
VALUES (?, 'peer', ?, ?, ?, ?, ?, 0, 'admitted', 'peer', 0,
        EXISTS (SELECT 1 FROM peer_records
                WHERE scan_id = ? AND origin = ? AND kind = 'undo'),
        ?, ?, ?)
ON CONFLICT (scan_id) DO NOTHING
"""

#: More origins than any event has devices; a digest beyond it is cut (its rest is sent again).
_MAX_DIGEST = 10_000

_DIRECTIONS = {RecordKind.ADMISSION: Direction.ENTRY, RecordKind.EXIT: Direction.EXIT}


def save_peer_credentials(
    conn: Connection, sealer: Sealer, credentials: Credentials, expires_at: datetime
) -> None:
    """Keep ``credentials`` (replacing any before): the device key's seed and the event key
    sealed, the certificate and the issuer's public key as they are."""
    conn.exec_driver_sql(
        "INSERT INTO peer_credentials (id, certificate, issuer_public_key, sealed_seed, "
        "sealed_event_key, expires_at) VALUES (1, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET certificate = excluded.certificate, "
        "issuer_public_key = excluded.issuer_public_key, sealed_seed = excluded.sealed_seed, "
        "sealed_event_key = excluded.sealed_event_key, expires_at = excluded.expires_at",
        (
            credentials.certificate,
            credentials.issuer_public_key,
            sealer.seal(_SEED_PURPOSE, credentials.device_key.seed),
            sealer.seal(_EVENT_KEY_PURPOSE, credentials.event_key),
            to_micros(expires_at),
        ),
    )


def load_peer_credentials(conn: Connection, sealer: Sealer) -> Credentials | None:
    """This device's peer credentials; None when it has none (enrolled at a server without
    peer sync) or they no longer open here (``SealError`` — the file's salt is not theirs)."""
    row = conn.exec_driver_sql(
        "SELECT certificate, issuer_public_key, sealed_seed, sealed_event_key "
        "FROM peer_credentials WHERE id = 1"
    ).first()
    if row is None:
        return None
    try:
        seed = sealer.unseal(_SEED_PURPOSE, row[2])
        event_key = sealer.unseal(_EVENT_KEY_PURPOSE, row[3])
        device_key = DeviceKey.from_seed(seed)
    except ValueError:  # SealError is one
        return None
    return Credentials(
        device_key=device_key,
        certificate=row[0],
        issuer_public_key=row[1],
        event_key=event_key,
    )


def peer_credentials_expire_at(conn: Connection) -> datetime | None:
    """When the stored certificate stops being accepted by peers; None without one."""
    micros = conn.exec_driver_sql("SELECT expires_at FROM peer_credentials WHERE id = 1").scalar()
    return None if micros is None else from_micros(int(micros))


def save_revoked_peers(conn: Connection, ids: Iterable[uuid.UUID]) -> None:
    """Replace the set of revoked devices with ``ids`` (the server's whole list)."""
    conn.exec_driver_sql("DELETE FROM peer_revoked")
    rows = [(device_id.bytes,) for device_id in set(ids)]
    if rows:
        conn.exec_driver_sql("INSERT INTO peer_revoked (device_id) VALUES (?)", rows)


def revoked_peers(conn: Connection) -> frozenset[uuid.UUID]:
    rows = conn.exec_driver_sql("SELECT device_id FROM peer_revoked").scalars()
    return frozenset(uuid.UUID(bytes=raw) for raw in rows)


def append_own_record(
    conn: Connection,
    credentials: Credentials,
    *,
    kind: RecordKind,
    scan_id: uuid.UUID,
    ticket_id: uuid.UUID,
    at: datetime,
    gate: str,
    checkin_list_id: str | None,
    zone: str | None,
) -> bytes:
    """Number, seal and keep one of this device's own admissions, exits or undos, and return
    its envelope to announce. Call it inside the write transaction that records the scan (so
    the record and the scan commit together, and seqs never repeat). Raises ``ValueError``
    when the credentials' certificate cannot be read (they came from this device's server)."""
    certificate = read_certificate(credentials.certificate)
    if certificate is None:
        raise ValueError("this device's peer certificate cannot be read")
    origin = certificate.device_id
    last = conn.exec_driver_sql(
        "SELECT max(seq) FROM peer_records WHERE origin = ?", (origin.bytes,)
    ).scalar()
    seq = int(last or 0) + 1
    envelope = credentials.seal(
        Record(
            origin=origin,
            seq=seq,
            kind=kind,
            scan_id=scan_id,
            ticket_id=ticket_id,
            at_ms=to_micros(at) // 1000,
            gate=gate,
            checkin_list_id=checkin_list_id,
            zone=zone,
        )
    )
    conn.exec_driver_sql(
        "INSERT INTO peer_records (origin, seq, kind, scan_id, envelope, received_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (origin.bytes, seq, kind.value, scan_id.bytes, envelope, to_micros(at)),
    )
    return envelope


def _own_device(conn: Connection) -> bytes | None:
    row = conn.exec_driver_sql("SELECT certificate FROM peer_credentials WHERE id = 1").first()
    certificate = read_certificate(row[0]) if row is not None else None
    if certificate is not None:
        return certificate.device_id.bytes
    device = conn.exec_driver_sql("SELECT device_id FROM device").scalar()
    return bytes(device) if device is not None else None


def _list_id(text: str | None) -> bytes | None:
    """A record's check-in list id as ``scans`` keeps it (16 bytes). The gate that sealed it
    wrote a ``CheckinList.id``; a text that is not one counts on no list rather than failing
    the record (the scan still counts for the ticket)."""
    if text is None:
        return None
    try:
        return uuid.UUID(text).bytes
    except ValueError:
        return None


def store_peer_record(
    conn: Connection, sealer: Sealer, opened: Opened, received_at: datetime
) -> bool:
    """Keep a record a peer sent (after ``Trust.open`` passed it). True when it was new; a
    record already held (a replay, a second path) and this device's own records sent back
    change nothing and answer False."""
    record = opened.record
    origin = record.origin.bytes
    if origin == _own_device(conn):
        return False
    inserted = conn.exec_driver_sql(
        "INSERT INTO peer_records (origin, seq, kind, scan_id, envelope, received_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (origin, seq) DO NOTHING",
        (
            origin,
            record.seq,
            record.kind.value,
            record.scan_id.bytes,
            opened.envelope,
            to_micros(received_at),
        ),
    ).rowcount
    if inserted != 1:
        return False
    if record.kind is RecordKind.UNDO:
        # Only a scan this origin made: a peer cannot annul another gate's admission.
        conn.exec_driver_sql(
            "UPDATE scans SET annulled = 1 WHERE scan_id = ? AND origin = 'peer' AND device_id = ?",
            (record.scan_id.bytes, origin),
        )
        return True
    conn.exec_driver_sql(
        _INSERT_PEER_SCAN,
        (
            record.scan_id.bytes,
            sealer.lookup(record.ticket_id),
            origin,
            record.gate,
            _DIRECTIONS[record.kind].value,
            record.at_ms * 1000,
            record.scan_id.bytes,
            origin,
            to_micros(received_at),
            _list_id(record.checkin_list_id),
            record.zone,
        ),
    )
    return True


def peer_digest(conn: Connection) -> dict[uuid.UUID, int]:
    """The highest seq held of each origin with every seq below it held too: what a peer
    needs to know to send what is missing here."""
    rows = conn.exec_driver_sql(
        "SELECT origin, max(seq) FROM ("
        "  SELECT origin, seq, seq - row_number() OVER (PARTITION BY origin ORDER BY seq) AS gap"
        "  FROM peer_records"
        ") WHERE gap = 0 GROUP BY origin"
    ).all()
    return {uuid.UUID(bytes=origin): int(seq) for origin, seq in rows}


def peer_records_after(conn: Connection, digest: dict[uuid.UUID, int], limit: int) -> list[bytes]:
    """Up to ``limit`` envelopes held here beyond a peer's ``digest``, oldest seqs first across
    origins (so each origin's records arrive in order and no origin waits for another); none of
    a revoked device."""
    if limit <= 0:
        return []
    # The digest is one row per device of the event (tens), bound as a VALUES table.
    known = list(digest.items())[:_MAX_DIGEST]
    values = ", ".join("(?, ?)" for _ in known) or "(NULL, 0)"
    params: list[object] = [x for origin, seq in known for x in (origin.bytes, seq)]
    rows = conn.exec_driver_sql(
        f"WITH d(origin, seq) AS (VALUES {values}) "  # noqa: S608 - placeholders only
        "SELECT r.envelope FROM peer_records AS r LEFT JOIN d ON d.origin = r.origin "
        "WHERE r.seq > coalesce(d.seq, 0) "
        # A revoked device's records are refused by every peer: not offered again and again.
        "AND r.origin NOT IN (SELECT device_id FROM peer_revoked) "
        "ORDER BY r.seq, r.origin LIMIT ?",
        (*params, limit),
    ).scalars()
    return [bytes(envelope) for envelope in rows]
