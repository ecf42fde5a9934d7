"""Who this scanner is, what event it admits to, its keys, its settings and its sync bookkeeping.

All functions take the ``Connection`` of a transaction from ``LocalStore``, so a caller can make
several of them one atomic change.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TypeVar

import msgspec
from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects.sqlite import insert

from scanner_app.core.store import schema
from scanner_app.core.store.times import from_micros, opt_datetime, opt_micros, to_micros
from shared import wire
from shared.domain import Direction
from shared.keys import EncryptionKey, ScannerKeyRing, VerifyKey


class Enrollment(msgspec.Struct, kw_only=True, frozen=True):
    """This device as the server enrolled it. Its bearer token is not part of it: that secret
    lives in the store's token vault (``LocalStore.vault``), never in the SQLite file."""

    device_id: uuid.UUID
    name: str
    server_url: str
    tenant_id: uuid.UUID
    event_id: uuid.UUID
    gate: str
    enrolled_at: datetime


#: The port a gate listens on for its peers unless its settings name another.
DEFAULT_PEER_PORT = 47_650


def parse_peer_address(text: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port`` too) as a peer address; None for anything else."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or any(c.isspace() for c in host):
        return None
    number = int(port)
    return (host, number) if 0 < number < 65_536 else None


class GateSettings(msgspec.Struct, kw_only=True, frozen=True):
    """How this gate decides. Stored on the device; changed in the app's settings."""

    direction: Direction = Direction.ENTRY
    #: Refuse genuine codes for tickets the cache does not know yet (instead of admitting them
    #: on their signature alone).
    strict: bool = False
    #: The same code again within this many seconds is the same scan, not a second one.
    debounce_seconds: float = 3.0
    #: Ask the server first when it is reachable; otherwise decide offline at once.
    online_validation: bool = True
    #: How long an online verdict may take before the gate decides offline instead.
    online_timeout_seconds: float = 0.8
    #: Seconds between background syncs while all is well.
    sync_interval_seconds: float = 5.0
    #: Seconds the verdict stays on screen (the app's concern; stored with the rest).
    verdict_seconds: float = 3.0
    #: Camera index, device path, video file or folder of images.
    camera: str = "0"
    sounds: bool = True
    #: Peer sync (docs/peer-sync.md): tell the other gates of the event every admission and
    #: exit over the local network, and hear theirs. Needs the server's peer certificate.
    peer_sync: bool = True
    #: The UDP/TCP port the gate listens on for its peers.
    peer_port: int = DEFAULT_PEER_PORT
    #: Peers to talk to without discovery ("host:port"), for networks that block multicast.
    static_peers: tuple[str, ...] = ()
    #: Find the other gates by zeroconf (mDNS) on the local network.
    peer_discovery: bool = True


class SyncState(msgspec.Struct, kw_only=True):
    """What the sync engine knows about its link to the server."""

    cursor: str | None = None
    #: Last time any request reached the server and got an answer.
    last_contact_at: datetime | None = None
    #: Last time a full sync (upload + download) finished.
    last_sync_at: datetime | None = None
    #: Server time minus device time, as last measured.
    clock_offset_ms: int = 0
    #: Why the device is offline now (None: online, or never tried).
    offline_reason: str | None = None
    next_retry_at: datetime | None = None
    failures: int = 0
    #: The server said this device was revoked.
    revoked: bool = False
    #: The check-in setup's version the server last named (``ChangesPage``), to tell whether
    #: this device's setup is the server's.
    server_setup_version: int | None = None


_S = TypeVar("_S", bound=msgspec.Struct)


def get_value(conn: Connection, name: str, kind: type[_S]) -> _S | None:
    raw = conn.scalar(select(schema.state.c.value).where(schema.state.c.name == name))
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.DecodeError:
        # A value from an older shape that no longer decodes: fall back to defaults rather
        # than refuse to start a gate.
        return None


def set_value(conn: Connection, name: str, value: msgspec.Struct) -> None:
    text = msgspec.json.encode(value).decode()
    statement = insert(schema.state).values(name=name, value=text)
    conn.execute(statement.on_conflict_do_update(index_elements=["name"], set_={"value": text}))


def load_settings(conn: Connection) -> GateSettings:
    return get_value(conn, "settings", GateSettings) or GateSettings()


def save_settings(conn: Connection, settings: GateSettings) -> None:
    set_value(conn, "settings", settings)


def load_sync_state(conn: Connection) -> SyncState:
    return get_value(conn, "sync", SyncState) or SyncState()


def save_sync_state(conn: Connection, sync: SyncState) -> None:
    set_value(conn, "sync", sync)


# --- identity and event ----------------------------------------------------------------------


def save_enrollment(conn: Connection, enrollment: Enrollment) -> None:
    """Record this device's identity, replacing any earlier one."""
    conn.execute(delete(schema.device))
    conn.execute(
        schema.device.insert().values(
            id=1,
            device_id=enrollment.device_id.bytes,
            name=enrollment.name,
            server_url=enrollment.server_url,
            tenant_id=enrollment.tenant_id.bytes,
            event_id=enrollment.event_id.bytes,
            gate=enrollment.gate,
            enrolled_at=to_micros(enrollment.enrolled_at),
        )
    )


def load_enrollment(conn: Connection) -> Enrollment | None:
    row = conn.execute(select(schema.device)).first()
    if row is None:
        return None
    return Enrollment(
        device_id=uuid.UUID(bytes=row.device_id),
        name=row.name,
        server_url=row.server_url,
        tenant_id=uuid.UUID(bytes=row.tenant_id),
        event_id=uuid.UUID(bytes=row.event_id),
        gate=row.gate,
        enrolled_at=from_micros(row.enrolled_at),
    )


def save_event(conn: Connection, gate_event: wire.GateEvent) -> None:
    values = {
        "name": gate_event.name,
        "venue": gate_event.venue,
        "starts_at": to_micros(gate_event.starts_at),
        "ends_at": to_micros(gate_event.ends_at),
        "admission_opens_at": opt_micros(gate_event.admission_opens_at),
        "allow_reentry": gate_event.allow_reentry,
    }
    statement = insert(schema.event).values(event_id=gate_event.event_id.bytes, **values)
    conn.execute(statement.on_conflict_do_update(index_elements=["event_id"], set_=values))


def load_event(conn: Connection, event_id: uuid.UUID) -> wire.GateEvent | None:
    row = conn.execute(
        select(schema.event).where(schema.event.c.event_id == event_id.bytes)
    ).first()
    if row is None:
        return None
    return wire.GateEvent(
        event_id=event_id,
        name=row.name,
        venue=row.venue,
        starts_at=from_micros(row.starts_at),
        ends_at=from_micros(row.ends_at),
        admission_opens_at=opt_datetime(row.admission_opens_at),
        allow_reentry=bool(row.allow_reentry),
    )


# --- keys --------------------------------------------------------------------------------------


def merge_keys(conn: Connection, keys: wire.ScannerKeys, now: datetime) -> int:
    """Make the device's keys the server's ring ``keys`` (which is always the event's whole
    ring, from ``/v1/devices/me`` or the changes feed): add the keys this device did not have
    (a key id, once known, keeps its key) and drop those the ring no longer holds — a key the
    manager retired after a loss, whose codes must be refused offline too. Returns how many
    keys were added or dropped. Raises ``KeyMaterialError`` when a key has the wrong size."""
    ScannerKeyRing.from_wire(keys)  # validate before storing anything
    rows = [
        {"kind": "verify", "key_id": k.key_id, "key": k.key, "added_at": to_micros(now)}
        for k in keys.verify_keys
    ] + [
        {"kind": "encryption", "key_id": k.key_id, "key": k.key, "added_at": to_micros(now)}
        for k in keys.encryption_keys
    ]
    if not rows:
        return 0  # an empty ring is no ring: never left without keys by a server's slip
    held = {(row["kind"], row["key_id"]) for row in rows}
    present = conn.execute(select(schema.keys.c.kind, schema.keys.c.key_id)).all()
    retired = [(r.kind, r.key_id) for r in present if (r.kind, r.key_id) not in held]
    for kind, key_id in retired:
        conn.execute(
            delete(schema.keys).where(schema.keys.c.kind == kind, schema.keys.c.key_id == key_id)
        )
    result = conn.execute(insert(schema.keys).on_conflict_do_nothing(), rows)
    return max(result.rowcount, 0) + len(retired)


def load_keys(conn: Connection) -> ScannerKeyRing:
    rows = conn.execute(select(schema.keys.c.kind, schema.keys.c.key_id, schema.keys.c.key)).all()
    return ScannerKeyRing(
        (VerifyKey.from_bytes(r.key_id, r.key) for r in rows if r.kind == "verify"),
        (EncryptionKey(r.key_id, r.key) for r in rows if r.kind == "encryption"),
    )
