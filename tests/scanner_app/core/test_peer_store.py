"""Peer sync in the scanner's store: credentials kept sealed, the revoked set, own records
numbered and sealed, peers' records stored once and counted by the offline verdict like the
feed's other-gate admissions, undo, the merge with the feed's copy, the anti-entropy digest,
and the upgrade of a version 5 file."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scanner_app.core.store import LocalStore, schema
from scanner_app.core.store.cache import admissions_of, apply_changes
from scanner_app.core.store.peers import (
    append_own_record,
    load_peer_credentials,
    peer_credentials_expire_at,
    peer_digest,
    peer_records_after,
    revoked_peers,
    save_peer_credentials,
    save_revoked_peers,
    store_peer_record,
)
from shared import wire
from shared.domain import Direction
from shared.peers import Credentials, Opened, RecordKind
from testkit.peers import TestEvent

NOW = datetime(2026, 11, 24, 20, 14, tzinfo=UTC)
LIST_ID = str(uuid.uuid4())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    opened = LocalStore.open(tmp_path / "data")
    yield opened
    opened.close()


@pytest.fixture
def event() -> TestEvent:
    return TestEvent()


@pytest.fixture
def mine(store: LocalStore, event: TestEvent) -> Credentials:
    _, credentials = event.device(NOW, gate="North")
    with store.write() as conn:
        save_peer_credentials(conn, store.sealer, credentials, NOW + timedelta(days=1))
    return credentials


def _made(
    credentials: Credentials,
    store: LocalStore,
    *,
    kind: RecordKind = RecordKind.ADMISSION,
    scan_id: uuid.UUID | None = None,
    ticket_id: uuid.UUID | None = None,
    gate: str = "Gate B",
) -> bytes:
    """An envelope made by another device's store (as that gate does it)."""
    with store.write() as conn:
        return append_own_record(
            conn,
            credentials,
            kind=kind,
            scan_id=scan_id or uuid.uuid4(),
            ticket_id=ticket_id or uuid.uuid4(),
            at=NOW,
            gate=gate,
            checkin_list_id=LIST_ID,
            zone="arena",
        )


def _open(event: TestEvent, envelope: bytes) -> Opened:
    opened = event.trust().open(envelope, NOW)
    assert isinstance(opened, Opened), opened
    return opened


def _store(store: LocalStore, opened: Opened) -> bool:
    with store.write() as conn:
        return store_peer_record(conn, store.sealer, opened, NOW)


@pytest.fixture
def gate_b(tmp_path: Path, event: TestEvent) -> Iterator[tuple[LocalStore, Credentials]]:
    other = LocalStore.open(tmp_path / "gate-b")
    _, credentials = event.device(NOW, gate="Gate B")
    with other.write() as conn:
        save_peer_credentials(conn, other.sealer, credentials, NOW + timedelta(days=1))
    yield other, credentials
    other.close()


# --- credentials and revocations ---------------------------------------------------------------


def test_credentials_come_back_as_saved_and_their_secrets_are_not_in_the_file(
    store: LocalStore, mine: Credentials
) -> None:
    with store.read() as conn:
        loaded = load_peer_credentials(conn, store.sealer)
        expires = peer_credentials_expire_at(conn)
    assert loaded is not None
    assert loaded.device_key.seed == mine.device_key.seed
    assert loaded.event_key == mine.event_key
    assert (loaded.certificate, loaded.issuer_public_key) == (
        mine.certificate,
        mine.issuer_public_key,
    )
    assert expires == NOW + timedelta(days=1)
    store.checkpoint()
    raw = store.path.read_bytes()
    assert mine.device_key.seed not in raw
    assert mine.event_key not in raw


def test_no_credentials_is_none(store: LocalStore) -> None:
    with store.read() as conn:
        assert load_peer_credentials(conn, store.sealer) is None


def test_credentials_sealed_in_another_file_do_not_open(
    store: LocalStore, mine: Credentials, tmp_path: Path
) -> None:
    other = LocalStore.open(tmp_path / "other")
    try:
        with store.read() as conn:
            row = conn.exec_driver_sql("SELECT * FROM peer_credentials").one()
        with other.write() as conn:
            conn.exec_driver_sql(
                "INSERT INTO peer_credentials VALUES (?, ?, ?, ?, ?, ?)", tuple(row)
            )
        with other.read() as conn:
            assert load_peer_credentials(conn, other.sealer) is None
    finally:
        other.close()


def test_the_revoked_set_is_replaced(store: LocalStore) -> None:
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with store.write() as conn:
        save_revoked_peers(conn, [first, second, first])
    with store.read() as conn:
        assert revoked_peers(conn) == {first, second}
    with store.write() as conn:
        save_revoked_peers(conn, [third])
    with store.read() as conn:
        assert revoked_peers(conn) == {third}
    with store.write() as conn:
        save_revoked_peers(conn, [])
    with store.read() as conn:
        assert revoked_peers(conn) == frozenset()


# --- own records --------------------------------------------------------------------------------


def test_own_records_are_numbered_sealed_and_kept(
    store: LocalStore, mine: Credentials, event: TestEvent
) -> None:
    scan_id, ticket_id = uuid.uuid4(), uuid.uuid4()
    with store.write() as conn:
        first = append_own_record(
            conn,
            mine,
            kind=RecordKind.ADMISSION,
            scan_id=scan_id,
            ticket_id=ticket_id,
            at=NOW,
            gate="North",
            checkin_list_id=LIST_ID,
            zone="arena",
        )
    second = _made(mine, store, kind=RecordKind.UNDO, scan_id=scan_id, gate="North")
    opened = _open(event, first)
    assert (opened.record.seq, _open(event, second).record.seq) == (1, 2)
    assert opened.record.ticket_id == ticket_id
    assert opened.record.at_ms == int(NOW.timestamp() * 1000)
    assert ticket_id.bytes not in first  # sealed under the event key
    with store.read() as conn:
        origin = opened.record.origin
        assert peer_digest(conn) == {origin: 2}
        assert peer_records_after(conn, {}, 10) == [first, second]
        assert peer_records_after(conn, {origin: 1}, 10) == [second]
        # Our own records never become peer scans here.
        assert conn.exec_driver_sql("SELECT count(*) FROM scans").scalar() == 0


def test_own_records_sent_back_are_ignored(
    store: LocalStore, mine: Credentials, event: TestEvent
) -> None:
    envelope = _made(mine, store, gate="North")
    assert _store(store, _open(event, envelope)) is False
    with store.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM scans").scalar() == 0


# --- peers' records -----------------------------------------------------------------------------


def test_a_peers_admission_counts_for_the_offline_verdict_once(
    store: LocalStore,
    mine: Credentials,
    event: TestEvent,
    gate_b: tuple[LocalStore, Credentials],
) -> None:
    other, theirs = gate_b
    ticket_id, scan_id = uuid.uuid4(), uuid.uuid4()
    envelope = _made(theirs, other, scan_id=scan_id, ticket_id=ticket_id)
    opened = _open(event, envelope)
    assert _store(store, opened) is True
    assert _store(store, opened) is False  # a replay, or a second path: nothing more
    with store.read() as conn:
        known = admissions_of(conn, store.sealer.lookup(ticket_id))
        assert conn.exec_driver_sql("SELECT count(*) FROM peer_records").scalar() == 1
        mode, origin = conn.exec_driver_sql("SELECT mode, origin FROM scans").one()
    assert [(a.scan_id, a.at, a.direction, a.gate, a.list_id, a.zone) for a in known] == [
        (scan_id, NOW, Direction.ENTRY, "Gate B", LIST_ID, "arena")
    ]
    assert known[0].device_id == opened.record.origin
    assert (mode, origin) == ("peer", "peer")


def test_an_exit_is_an_admitted_exit(
    store: LocalStore,
    mine: Credentials,
    event: TestEvent,
    gate_b: tuple[LocalStore, Credentials],
) -> None:
    other, theirs = gate_b
    ticket_id = uuid.uuid4()
    _store(store, _open(event, _made(theirs, other, kind=RecordKind.EXIT, ticket_id=ticket_id)))
    with store.read() as conn:
        known = admissions_of(conn, store.sealer.lookup(ticket_id))
    assert [a.direction for a in known] == [Direction.EXIT]


def test_an_undo_annuls_the_admission_in_either_order(
    store: LocalStore,
    mine: Credentials,
    event: TestEvent,
    gate_b: tuple[LocalStore, Credentials],
) -> None:
    other, theirs = gate_b
    in_order, reversed_ = (uuid.uuid4(), uuid.uuid4()), (uuid.uuid4(), uuid.uuid4())
    for ticket_id, scan_id in (in_order, reversed_):
        admission = _made(theirs, other, scan_id=scan_id, ticket_id=ticket_id)
        undo = _made(theirs, other, kind=RecordKind.UNDO, scan_id=scan_id, ticket_id=ticket_id)
        first, then = (admission, undo) if ticket_id == in_order[0] else (undo, admission)
        assert _store(store, _open(event, first)) is True
        assert _store(store, _open(event, then)) is True
    with store.read() as conn:
        for ticket_id, _ in (in_order, reversed_):
            assert admissions_of(conn, store.sealer.lookup(ticket_id)) == []


def test_an_undo_cannot_annul_another_gates_admission(
    store: LocalStore,
    mine: Credentials,
    event: TestEvent,
    gate_b: tuple[LocalStore, Credentials],
) -> None:
    other, theirs = gate_b
    ticket_id, scan_id = uuid.uuid4(), uuid.uuid4()
    feed = wire.AdmissionChange(
        scan_id=scan_id,
        ticket_id=ticket_id,
        gate="South",
        direction=Direction.ENTRY,
        scanned_at=NOW,
        device_id=uuid.uuid4(),
    )
    with store.write() as conn:
        apply_changes(conn, store.sealer, [feed], NOW)
    _store(store, _open(event, _made(theirs, other, kind=RecordKind.UNDO, scan_id=scan_id)))
    with store.read() as conn:
        assert len(admissions_of(conn, store.sealer.lookup(ticket_id))) == 1


@pytest.mark.parametrize("feed_first", [True, False])
def test_the_feeds_copy_and_the_gossiped_one_are_one_scan(
    store: LocalStore,
    mine: Credentials,
    event: TestEvent,
    gate_b: tuple[LocalStore, Credentials],
    feed_first: bool,
) -> None:
    other, theirs = gate_b
    ticket_id, scan_id = uuid.uuid4(), uuid.uuid4()
    opened = _open(event, _made(theirs, other, scan_id=scan_id, ticket_id=ticket_id))
    feed = wire.AdmissionChange(
        scan_id=scan_id,
        ticket_id=ticket_id,
        gate="Gate B",
        direction=Direction.ENTRY,
        scanned_at=NOW,
        device_id=opened.record.origin,
        checkin_list_id=uuid.UUID(LIST_ID),
        zone="arena",
    )
    if feed_first:
        with store.write() as conn:
            apply_changes(conn, store.sealer, [feed], NOW)
    assert _store(store, opened) is True  # the record is new to the digest either way
    if not feed_first:
        with store.write() as conn:
            apply_changes(conn, store.sealer, [feed], NOW)
    with store.read() as conn:
        known = admissions_of(conn, store.sealer.lookup(ticket_id))
        assert conn.exec_driver_sql("SELECT count(*) FROM scans").scalar() == 1
    assert [a.scan_id for a in known] == [scan_id]
    # The server's later word (an annulment) still reaches the merged row.
    with store.write() as conn:
        annulled = wire.AdmissionChange(
            scan_id=scan_id,
            ticket_id=ticket_id,
            gate="Gate B",
            direction=Direction.ENTRY,
            scanned_at=NOW,
            device_id=opened.record.origin,
            annulled=True,
        )
        apply_changes(conn, store.sealer, [annulled], NOW)
    with store.read() as conn:
        assert admissions_of(conn, store.sealer.lookup(ticket_id)) == []


def test_the_digest_counts_only_contiguous_seqs_and_serves_what_is_missing(
    store: LocalStore,
    mine: Credentials,
    event: TestEvent,
    gate_b: tuple[LocalStore, Credentials],
) -> None:
    other, theirs = gate_b
    envelopes = [_made(theirs, other) for _ in range(4)]
    origin = _open(event, envelopes[0]).record.origin
    for index in (0, 1, 3):  # seq 3 never arrived
        _store(store, _open(event, envelopes[index]))
    with store.read() as conn:
        assert peer_digest(conn) == {origin: 2}
        assert peer_records_after(conn, {origin: 2}, 10) == [envelopes[3]]
        assert peer_records_after(conn, {}, 2) == envelopes[:2]
        assert peer_records_after(conn, {}, 0) == []
    with other.read() as conn:
        # The origin's store serves the gap to whoever reports the digest above.
        assert peer_records_after(conn, {origin: 2}, 10) == envelopes[2:]


# --- upgrade ------------------------------------------------------------------------------------


def test_a_version_5_file_gains_the_peer_tables_and_keeps_its_scans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    with monkeypatch.context() as patch:
        patch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:5])
        patch.setattr(schema, "SCHEMA_VERSION", 5)
        old = LocalStore.open(data)
        scan = wire.AdmissionChange(
            scan_id=uuid.uuid4(),
            ticket_id=uuid.uuid4(),
            gate="South",
            direction=Direction.ENTRY,
            scanned_at=NOW,
        )
        with old.write() as conn:
            apply_changes(conn, old.sealer, [scan], NOW)
        old.close()
    with closing(sqlite3.connect(data / "scanner.sqlite3")) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 5
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "peer_records" not in tables
    upgraded = LocalStore.open(data)
    try:
        assert upgraded.schema_version() == 6
        with upgraded.read() as conn:
            assert len(admissions_of(conn, upgraded.sealer.lookup(scan.ticket_id))) == 1
            assert peer_digest(conn) == {}
            assert revoked_peers(conn) == frozenset()
            assert load_peer_credentials(conn, upgraded.sealer) is None
    finally:
        upgraded.close()


def test_a_revoked_devices_records_are_not_offered_to_peers(
    store: LocalStore,
    mine: Credentials,
    event: TestEvent,
    gate_b: tuple[LocalStore, Credentials],
) -> None:
    other, theirs = gate_b
    envelope = _made(theirs, other)
    origin = _open(event, envelope).record.origin
    _store(store, _open(event, envelope))
    with store.read() as conn:
        assert peer_records_after(conn, {}, 10) == [envelope]
    with store.write() as conn:
        save_revoked_peers(conn, [origin])
    with store.read() as conn:
        assert peer_records_after(conn, {}, 10) == []
