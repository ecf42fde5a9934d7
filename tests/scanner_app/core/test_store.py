"""The scanner's local store: schema and migrations, durability settings, atomic writes, the
ticket cache fed by the changes feed, the scan log and upload queue, and sealing of personal
data. Every test gets a fresh SQLite file of its own."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import Connection, Table
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import IntegrityError

from scanner_app.core.gate import Gate
from scanner_app.core.standalone import load_tickets, set_up_standalone
from scanner_app.core.store import LocalStore, StoreError, schema
from scanner_app.core.store.cache import admissions_of, apply_changes, find_ticket, ticket_count
from scanner_app.core.store.database import DATABASE_FILE
from scanner_app.core.store.scanlog import conflicts, find_scan, local_scans
from scanner_app.core.store.scans import (
    ScanRecord,
    annul,
    note_failed_attempt,
    queue_length,
    queued_annulments,
    queued_scans,
    record_outcomes,
    record_scan,
    refuse_queued,
)
from scanner_app.core.store.sealing import Sealer
from scanner_app.core.store.setup import load_setup
from scanner_app.core.store.state import (
    SyncState,
    load_keys,
    load_sync_state,
    merge_keys,
    save_sync_state,
)
from shared import wire
from shared.clock import ManualClock
from shared.domain import Direction, TicketStatus, VerdictReason, VerdictResult
from shared.holder_name import open_name
from shared.ids import new_id
from shared.keys import IssuerKeyRing, KeyMaterialError
from shared.ticket_code import issue_code
from testkit.names import name_secret_of, sealed_holder

START = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    opened = LocalStore.open(tmp_path / "data")
    yield opened
    opened.close()


# --- helpers -------------------------------------------------------------------------------


def _ticket(
    ticket_id: uuid.UUID,
    event_id: uuid.UUID,
    *,
    status: TicketStatus = TicketStatus.ACTIVE,
    secret_version: int = 1,
    ticket_type: str = "General admission",
    holder_name: str | None = "Ada Lovelace",
) -> wire.TicketChange:
    return wire.TicketChange(
        ticket_id=ticket_id,
        event_id=event_id,
        status=status,
        secret_version=secret_version,
        ticket_type=ticket_type,
        sealed_holder=sealed_holder(ticket_id, holder_name, secret_version),
    )


def _scan(
    *,
    scan_id: uuid.UUID | None = None,
    at: datetime = START,
    result: VerdictResult = VerdictResult.ADMITTED,
    reason: VerdictReason | None = None,
    lookup: bytes | None = b"L" * 16,
    direction: Direction = Direction.ENTRY,
    code: str = "GH1CODE",
) -> ScanRecord:
    return ScanRecord(
        scan_id=scan_id or new_id(),
        gate="North",
        direction=direction,
        at=at,
        device_time=at - timedelta(seconds=2),
        clock_offset_ms=2000,
        result=result,
        reason=reason,
        mode="offline",
        code=code,
        ticket_lookup=lookup,
    )


def _count(conn: Connection, table: str) -> int:
    return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


def _raw_user_version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as raw, raw:
        return int(raw.execute("PRAGMA user_version").fetchone()[0])


def _open_fds_to(path: Path) -> list[str]:
    fd_dir = Path("/proc/self/fd")
    found = []
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(path)):
            found.append(target)
    return found


# --- schema and migrations -----------------------------------------------------------------


def _is_rowid_alias(column: tuple[str, str, int, int], single_pk: bool, with_rowid: bool) -> bool:
    # INTEGER PRIMARY KEY of a rowid table is the rowid: NULL means "assign one", never stored.
    _name, declared, _notnull, pk = column
    return with_rowid and single_pk and pk == 1 and declared.upper() == "INTEGER"


def test_migrating_an_empty_file_builds_the_tables_schema_py_describes(
    store: LocalStore,
) -> None:
    assert store.schema_version() == schema.SCHEMA_VERSION
    assert _raw_user_version(store.path) == schema.SCHEMA_VERSION
    dialect = sqlite_dialect.dialect()
    with store.read() as conn:
        created = {
            row[0]: row[1]
            for row in conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%'"
            )
        }
        assert set(created) == set(schema.metadata.tables)
        for table in schema.metadata.sorted_tables:
            info = [
                (str(r[1]), str(r[2]), int(r[3]), int(r[5]))
                for r in conn.exec_driver_sql(f"PRAGMA table_info({table.name})")
            ]
            _assert_table_matches(table, info, created[table.name], dialect)


def _assert_table_matches(
    table: Table,
    info: list[tuple[str, str, int, int]],
    create_sql: str,
    dialect: sqlite_dialect.base.SQLiteDialect,
) -> None:
    where = f"table {table.name}"
    assert [c[0] for c in info] == [c.name for c in table.columns], where
    with_rowid = "WITHOUT ROWID" not in create_sql.upper()
    assert with_rowid == table.dialect_options["sqlite"]["with_rowid"], where
    migrated_pk = [c[0] for c in sorted((c for c in info if c[3]), key=lambda c: c[3])]
    assert migrated_pk == [c.name for c in table.primary_key.columns], where
    single_pk = len(migrated_pk) == 1
    for column, declared in zip(info, table.columns, strict=True):
        name, sql_type, notnull, pk = column
        what = f"{table.name}.{name}"
        assert sql_type.upper() == declared.type.compile(dialect=dialect).upper(), what
        # A primary key of a WITHOUT ROWID table is implicitly NOT NULL; so is a rowid alias.
        effectively_not_null = (
            bool(notnull)
            or (pk > 0 and not with_rowid)
            or _is_rowid_alias(column, single_pk, with_rowid)
        )
        assert effectively_not_null == (not declared.nullable), what


def test_primary_keys_of_rowid_tables_refuse_null(store: LocalStore) -> None:
    # SQLite lets a non-INTEGER primary key of a rowid table hold NULL unless it says NOT NULL.
    with pytest.raises(IntegrityError), store.write() as conn:
        conn.exec_driver_sql("INSERT INTO state (name, value) VALUES (NULL, 'x')")


def test_reopening_does_not_run_migrations_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    first = LocalStore.open(data)
    salt = first.sealer.lookup(uuid.UUID(int=1))
    with first.write() as conn:
        conn.exec_driver_sql("INSERT INTO state (name, value) VALUES ('marker', '\"kept\"')")
    first.close()

    def must_not_run(_conn: Connection) -> None:
        raise AssertionError("a migration ran on an up-to-date file")

    monkeypatch.setattr(schema, "MIGRATIONS", (must_not_run,) * schema.SCHEMA_VERSION)
    again = LocalStore.open(data)
    try:
        assert again.schema_version() == schema.SCHEMA_VERSION
        # Same salt (the first step's salt was not replaced), and the data is still there.
        assert again.sealer.lookup(uuid.UUID(int=1)) == salt
        with again.read() as conn:
            marker = conn.exec_driver_sql("SELECT value FROM state WHERE name = 'marker'")
            assert marker.scalar_one() == '"kept"'
    finally:
        again.close()


def test_an_older_file_runs_only_the_missing_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    LocalStore.open(data).close()
    ran: list[int] = []

    def next_step(conn: Connection) -> None:
        ran.append(int(conn.exec_driver_sql("PRAGMA user_version").scalar_one()))
        conn.exec_driver_sql("CREATE TABLE added_later (x INTEGER)")

    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, next_step))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    upgraded = LocalStore.open(data)
    try:
        assert ran == [schema.SCHEMA_VERSION - 1]  # only the new step, on the old file
        assert upgraded.schema_version() == schema.SCHEMA_VERSION
        with upgraded.read() as conn:
            assert _count(conn, "added_later") == 0
    finally:
        upgraded.close()


def test_a_file_from_a_newer_program_is_refused_and_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    LocalStore.open(data).close()
    path = data / DATABASE_FILE
    newer = schema.SCHEMA_VERSION + 1
    with closing(sqlite3.connect(path)) as raw, raw:
        raw.execute(f"PRAGMA user_version = {newer}")
    with pytest.raises(StoreError) as refused:
        LocalStore.open(data)
    message = str(refused.value)
    assert "newer" in message
    assert f"data version {newer}" in message
    assert f"knows up to {schema.SCHEMA_VERSION}" in message
    assert _raw_user_version(path) == newer
    if Path("/proc/self/fd").is_dir():
        # Refused means closed: the user may want to move the file aside at once.
        assert _open_fds_to(path) == []


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    path = data / DATABASE_FILE
    junk = b"PK\x03\x04 this is a zip, or a photo, or anything but a database " * 64
    path.write_bytes(junk)
    with pytest.raises(StoreError, match="is not a scanner data file"):
        LocalStore.open(data)
    assert path.read_bytes() == junk
    if Path("/proc/self/fd").is_dir():
        assert _open_fds_to(path) == []


def test_a_data_folder_that_cannot_be_created_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("in the way")
    with pytest.raises(StoreError, match="Cannot create the data folder"):
        LocalStore.open(blocker / "data")


# --- durability and transactions ------------------------------------------------------------


def test_every_connection_is_wal_with_full_sync(store: LocalStore) -> None:
    # Several connections at once, so more than one pooled connection is configured.
    with store.read() as first, store.read() as second, store.write() as writer:
        for conn in (first, second, writer):
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1


def test_a_write_holds_the_write_lock_from_its_start(store: LocalStore) -> None:
    other = sqlite3.connect(store.path, timeout=0, isolation_level=None)
    try:
        # Nothing written yet, but the lock is taken: a read-then-write can't be overtaken.
        with store.write(), pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_readers_do_not_wait_for_a_writer(store: LocalStore) -> None:
    with store.write() as writer:
        writer.exec_driver_sql("INSERT INTO state (name, value) VALUES ('n', '1')")
        with store.read() as reader:  # WAL: the snapshot before the write
            assert _count(reader, "state WHERE name = 'n'") == 0
    with store.read() as reader:
        assert _count(reader, "state WHERE name = 'n'") == 1


def test_a_committed_write_is_visible_to_another_connection(store: LocalStore) -> None:
    with store.write() as conn:
        record_scan(conn, _scan(), upload=True, now=START)
    with closing(sqlite3.connect(store.path)) as raw:
        assert raw.execute("SELECT count(*) FROM scans").fetchone()[0] == 1
        assert raw.execute("SELECT count(*) FROM upload_queue").fetchone()[0] == 1


def test_a_write_block_that_raises_leaves_nothing_behind(store: LocalStore) -> None:
    class Interrupted(Exception):
        pass

    with pytest.raises(Interrupted), store.write() as conn:
        record_scan(conn, _scan(), upload=True, now=START)
        assert _count(conn, "scans") == 1
        raise Interrupted
    with store.read() as conn:
        assert _count(conn, "scans") == 0
        assert _count(conn, "upload_queue") == 0


def test_a_scan_is_never_recorded_without_its_queue_entry(store: LocalStore) -> None:
    # The queue insert fails after the scan row went in (as a full disk would fail it).
    with store.write() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER queue_fails BEFORE INSERT ON upload_queue "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    record = _scan()
    with pytest.raises(IntegrityError, match="disk full"), store.write() as conn:
        record_scan(conn, record, upload=True, now=START)
    with store.read() as conn:
        assert find_scan(conn, record.scan_id) is None
        assert _count(conn, "scans") == 0
        assert _count(conn, "upload_queue") == 0
    # Once writing works again, the same scan is recorded whole.
    with store.write() as conn:
        conn.exec_driver_sql("DROP TRIGGER queue_fails")
        record_scan(conn, record, upload=True, now=START)
    with store.read() as conn:
        assert [q.upload.scan_id for q in queued_scans(conn, 10)] == [record.scan_id]


# --- the ticket cache -----------------------------------------------------------------------


def _ticket_rows(conn: Connection, sealer: Sealer, ids: list[uuid.UUID]) -> list[object]:
    rows: list[object] = []
    for ticket_id in ids:
        cached = find_ticket(conn, sealer.lookup(ticket_id))
        assert cached is not None
        name = open_name(
            name_secret_of(ticket_id),
            cached.sealed_holder,
            ticket_id=ticket_id,
            secret_version=cached.secret_version,
        )
        rows.append((cached.status, cached.secret_version, name))
    return rows


def test_applying_the_same_page_twice_changes_nothing(store: LocalStore) -> None:
    event_id = new_id()
    ids = [new_id() for _ in range(3)]
    peer_scan = new_id()
    page: list[wire.Change] = [
        *(_ticket(t, event_id, holder_name=f"Guest {i}") for i, t in enumerate(ids)),
        wire.AdmissionChange(
            scan_id=peer_scan,
            ticket_id=ids[0],
            gate="South",
            direction=Direction.ENTRY,
            scanned_at=START,
        ),
    ]
    sealer = store.sealer
    with store.write() as conn:
        first = apply_changes(conn, sealer, page, START)
    with store.read() as conn:
        before = _ticket_rows(conn, sealer, ids)
        scans_before = conn.exec_driver_sql("SELECT * FROM scans").all()
    with store.write() as conn:
        second = apply_changes(conn, sealer, page, START + timedelta(minutes=1))
    assert first == second
    assert (first.tickets, first.admissions) == (3, 1)
    with store.read() as conn:
        assert ticket_count(conn) == 3
        assert _ticket_rows(conn, sealer, ids) == before
        assert before[1] == (TicketStatus.ACTIVE, 1, "Guest 1")
        # recorded_at is when it was first heard of; nothing else changes either.
        assert conn.exec_driver_sql("SELECT * FROM scans").all() == scans_before


def test_a_later_change_of_a_ticket_wins(store: LocalStore) -> None:
    event_id, ticket_id = new_id(), new_id()
    sealer = store.sealer
    with store.write() as conn:
        # One page naming the ticket twice: sold, then transferred to someone else.
        apply_changes(
            conn,
            sealer,
            [
                _ticket(ticket_id, event_id, holder_name="First Owner"),
                _ticket(ticket_id, event_id, secret_version=2, holder_name="Second Owner"),
            ],
            START,
        )
    with store.read() as conn:
        assert _ticket_rows(conn, sealer, [ticket_id]) == [(TicketStatus.ACTIVE, 2, "Second Owner")]
    with store.write() as conn:  # a later page: revoked
        apply_changes(
            conn,
            sealer,
            [_ticket(ticket_id, event_id, status=TicketStatus.REVOKED, secret_version=2)],
            START,
        )
    with store.read() as conn:
        assert ticket_count(conn) == 1
        assert _ticket_rows(conn, sealer, [ticket_id]) == [
            (TicketStatus.REVOKED, 2, "Ada Lovelace")
        ]


def test_validity_window_and_missing_holder_are_kept(store: LocalStore) -> None:
    ticket_id = new_id()
    opens, ends = START - timedelta(hours=1), START + timedelta(hours=4)
    change = wire.TicketChange(
        ticket_id=ticket_id,
        event_id=new_id(),
        status=TicketStatus.ACTIVE,
        secret_version=0,
        ticket_type="VIP",
        valid_from=opens,
        valid_until=ends,
    )
    with store.write() as conn:
        apply_changes(conn, store.sealer, [change], START)
    with store.read() as conn:
        cached = find_ticket(conn, store.sealer.lookup(ticket_id))
        assert find_ticket(conn, store.sealer.lookup(new_id())) is None
    assert cached is not None
    assert (cached.valid_from, cached.valid_until, cached.ticket_type) == (opens, ends, "VIP")
    assert cached.sealed_holder is None


def test_feed_news_about_own_scans_changes_standing_but_not_origin(store: LocalStore) -> None:
    sealer = store.sealer
    ticket_id = new_id()
    lookup = sealer.lookup(ticket_id)
    own = _scan(lookup=lookup)
    with store.write() as conn:
        record_scan(conn, own, upload=True, now=START)
    winner = new_id()
    echo = wire.AdmissionChange(
        scan_id=own.scan_id,
        ticket_id=ticket_id,
        gate="North",
        direction=Direction.ENTRY,
        scanned_at=START,
        conflict_of=winner,
    )
    with store.write() as conn:
        apply_changes(conn, sealer, [echo], START)
    with store.read() as conn:
        logged = find_scan(conn, own.scan_id)
        assert logged is not None
        assert (logged.origin, logged.mode, logged.conflict_of) == ("local", "offline", winner)
        assert [s.scan_id for s in local_scans(conn)] == [own.scan_id]
        assert admissions_of(conn, lookup) == []  # a double entry no longer counts
        assert queue_length(conn) == 1  # still to be uploaded: the feed doesn't answer uploads
    with store.write() as conn:
        apply_changes(
            conn,
            sealer,
            [
                wire.AdmissionChange(
                    scan_id=own.scan_id,
                    ticket_id=ticket_id,
                    gate="North",
                    direction=Direction.ENTRY,
                    scanned_at=START,
                    annulled=True,
                )
            ],
            START,
        )
    with store.read() as conn:
        logged = find_scan(conn, own.scan_id)
        assert logged is not None
        assert (logged.origin, logged.annulled, logged.conflict_of) == ("local", True, None)


def test_peer_admissions_count_until_annulled_or_found_a_conflict(store: LocalStore) -> None:
    sealer = store.sealer
    ticket_id, other_device = new_id(), new_id()
    entry = wire.AdmissionChange(
        scan_id=new_id(),
        ticket_id=ticket_id,
        gate="South",
        direction=Direction.ENTRY,
        scanned_at=START,
        device_id=other_device,
    )
    with store.write() as conn:
        apply_changes(conn, sealer, [entry], START)
    with store.read() as conn:
        known = admissions_of(conn, sealer.lookup(ticket_id))
        assert local_scans(conn) == []  # not this device's scan
        assert queue_length(conn) == 0  # and never uploaded from here
    assert [(a.scan_id, a.at, a.gate, a.device_id) for a in known] == [
        (entry.scan_id, START, "South", other_device)
    ]
    with store.write() as conn:
        annulled = msgspec.structs.replace(entry, annulled=True)
        apply_changes(conn, sealer, [annulled], START)
    with store.read() as conn:
        assert admissions_of(conn, sealer.lookup(ticket_id)) == []


# --- keys ------------------------------------------------------------------------------------


def test_keys_merge_without_replacing_known_ones(store: LocalStore) -> None:
    issuer = IssuerKeyRing.generate()
    with store.write() as conn:
        assert merge_keys(conn, issuer.scanner_ring.to_wire(), START) == 2
        assert merge_keys(conn, issuer.scanner_ring.to_wire(), START) == 0
    rotated = issuer.rotated()
    with store.write() as conn:
        # The feed's key change carries the whole ring: only the two new keys are new.
        applied = apply_changes(
            conn, store.sealer, [wire.KeysChange(keys=rotated.scanner_ring.to_wire())], START
        )
        assert applied.new_keys == 2
    old_id = issuer.active_encryption_key.key_id
    whole = rotated.scanner_ring.to_wire()
    imposter = wire.ScannerKeys(
        verify_keys=whole.verify_keys,
        encryption_keys=[
            wire.KeyBytes(k.key_id, b"\x00" * 32) if k.key_id == old_id else k
            for k in whole.encryption_keys
        ],
    )
    with store.write() as conn:
        assert merge_keys(conn, imposter, START) == 0
    with store.read() as conn:
        ring = load_keys(conn)
    assert ring.encryption_key_ids == rotated.scanner_ring.encryption_key_ids
    assert ring.verify_key_ids == rotated.scanner_ring.verify_key_ids
    kept = ring.encryption_key(old_id)
    assert kept is not None
    assert kept.secret == issuer.active_encryption_key.secret


def test_a_key_the_servers_ring_no_longer_holds_is_dropped(store: LocalStore) -> None:
    """A key retired after a loss leaves the ring the feed carries: the scanner drops it, so
    its offline verdicts refuse the codes made with it (``unknown_key``)."""
    issuer = IssuerKeyRing.generate()
    rotated = issuer.rotated()
    with store.write() as conn:
        merge_keys(conn, rotated.scanner_ring.to_wire(), START)
    old_signing = issuer.active_signing_key.key_id
    old_encryption = issuer.active_encryption_key.key_id
    retired = rotated.retired(signing_ids={old_signing}, encryption_ids={old_encryption})
    with store.write() as conn:
        applied = apply_changes(
            conn, store.sealer, [wire.KeysChange(keys=retired.scanner_ring.to_wire())], START
        )
        assert applied.new_keys == 2  # two keys changed (dropped)
    with store.read() as conn:
        ring = load_keys(conn)
    assert ring.encryption_key_ids == retired.scanner_ring.encryption_key_ids
    assert old_encryption not in ring.encryption_key_ids
    assert old_signing not in ring.verify_key_ids
    # An empty ring is no ring: the device keeps what it has.
    with store.write() as conn:
        assert merge_keys(conn, wire.ScannerKeys(verify_keys=[], encryption_keys=[]), START) == 0
    with store.read() as conn:
        assert load_keys(conn).encryption_key_ids == ring.encryption_key_ids


def test_a_damaged_key_is_refused_and_nothing_stored(store: LocalStore) -> None:
    good = IssuerKeyRing.generate().scanner_ring.to_wire()
    damaged = wire.ScannerKeys(
        verify_keys=good.verify_keys,
        encryption_keys=[*good.encryption_keys, wire.KeyBytes(7, b"short")],
    )
    with pytest.raises(KeyMaterialError), store.write() as conn:
        merge_keys(conn, damaged, START)
    with store.read() as conn:
        assert _count(conn, "keys") == 0


# --- the scan log and the upload queue ------------------------------------------------------


def _batch(
    *outcomes: wire.ScanOutcome, reclassified: tuple[wire.ScanOutcome, ...] = ()
) -> wire.ScanBatchOutcome:
    return wire.ScanBatchOutcome(
        outcomes=list(outcomes), reclassified=list(reclassified), server_time=START
    )


def test_queued_scans_come_oldest_first_as_the_server_takes_them(store: LocalStore) -> None:
    records = [_scan(at=START + timedelta(seconds=i), code=f"GH1CODE{i}") for i in range(3)] + [
        _scan(
            at=START + timedelta(seconds=9),
            result=VerdictResult.REJECTED,
            reason=VerdictReason.REVOKED,
        )
    ]
    with store.write() as conn:
        for record in records:
            record_scan(conn, record, upload=True, now=START)
        record_scan(conn, _scan(), upload=False, now=START)  # an online scan: not queued
    with store.read() as conn:
        queued = queued_scans(conn, 10)
        assert [q.upload.scan_id for q in queued_scans(conn, 2)] == [r.scan_id for r in records[:2]]
        assert queue_length(conn) == 4
    assert [q.upload.scan_id for q in queued] == [r.scan_id for r in records]
    assert [q.seq for q in queued] == sorted(q.seq for q in queued)
    first = queued[0].upload
    assert first.code == "GH1CODE0"
    assert first.gate == "North"
    assert first.direction is Direction.ENTRY
    # The device's own clock reading and its offset: the server corrects it itself.
    assert first.scanned_at == START - timedelta(seconds=2)
    assert first.clock_offset_ms == 2000
    assert (first.device_result, first.device_reason, first.offline) == (
        VerdictResult.ADMITTED,
        None,
        True,
    )
    assert (queued[3].upload.device_result, queued[3].upload.device_reason) == (
        VerdictResult.REJECTED,
        VerdictReason.REVOKED,
    )


def test_a_long_scanned_text_is_cut_to_what_the_wire_takes(store: LocalStore) -> None:
    with store.write() as conn:
        record_scan(conn, _scan(code="X" * 5000), upload=True, now=START)
    with store.read() as conn:
        (queued,) = queued_scans(conn, 1)
    assert len(queued.upload.code) == 2048


def test_outcomes_are_stored_and_take_scans_off_the_queue(store: LocalStore) -> None:
    fine, doubled, untouched = _scan(), _scan(), _scan()
    winner = new_id()
    with store.write() as conn:
        for record in (fine, doubled, untouched):
            record_scan(conn, record, upload=True, now=START)
    with store.write() as conn:
        found = record_outcomes(
            conn,
            _batch(
                wire.ScanOutcome(scan_id=fine.scan_id, result=VerdictResult.ADMITTED),
                wire.ScanOutcome(
                    scan_id=doubled.scan_id, result=VerdictResult.ADMITTED, conflict_of=winner
                ),
            ),
        )
    assert found == 1
    with store.read() as conn:
        assert [q.upload.scan_id for q in queued_scans(conn, 10)] == [untouched.scan_id]
        logged_fine = find_scan(conn, fine.scan_id)
        logged_doubled = find_scan(conn, doubled.scan_id)
        assert [c.scan_id for c in conflicts(conn)] == [doubled.scan_id]
    assert logged_fine is not None
    assert logged_doubled is not None
    assert (logged_fine.uploaded, logged_fine.server_result) == (True, "admitted")
    assert (logged_doubled.uploaded, logged_doubled.conflict_of) == (True, winner)
    # The person went in: the scan stays admitted in the log, only its standing changed.
    assert logged_doubled.result is VerdictResult.ADMITTED


def test_a_reclassified_scan_is_updated_but_stays_queued(store: LocalStore) -> None:
    # The server heard of this scan from an earlier, interrupted upload and has since found it
    # to be a double entry; the device still has it queued.
    mine = _scan()
    winner = new_id()
    with store.write() as conn:
        record_scan(conn, mine, upload=True, now=START)
        found = record_outcomes(
            conn,
            _batch(
                reclassified=(
                    wire.ScanOutcome(
                        scan_id=mine.scan_id, result=VerdictResult.ADMITTED, conflict_of=winner
                    ),
                )
            ),
        )
    assert found == 1
    with store.read() as conn:
        assert queue_length(conn) == 1
        assert admissions_of(conn, b"L" * 16) == []


def test_a_server_reason_is_kept_for_managers(store: LocalStore) -> None:
    record = _scan()
    with store.write() as conn:
        record_scan(conn, record, upload=True, now=START)
        record_outcomes(
            conn,
            _batch(
                wire.ScanOutcome(
                    scan_id=record.scan_id,
                    result=VerdictResult.ADMITTED,
                    server_reason=VerdictReason.REVOKED,
                )
            ),
        )
    with store.read() as conn:
        logged = find_scan(conn, record.scan_id)
    assert logged is not None
    assert (logged.server_result, logged.server_reason) == ("admitted", "revoked")


def test_a_refused_entry_leaves_the_queue_but_not_the_log(store: LocalStore) -> None:
    refused, waiting = _scan(), _scan()
    with store.write() as conn:
        record_scan(conn, refused, upload=True, now=START)
        record_scan(conn, waiting, upload=True, now=START)
        seq = queued_scans(conn, 1)[0].seq
        note_failed_attempt(conn, [seq], "HTTP 422 scan_id_taken")
        refuse_queued(conn, seq, "scan_id_taken: another device used this scan id")
        refuse_queued(conn, 999_999, "no such entry")  # nothing happens
    with store.read() as conn:
        assert [q.upload.scan_id for q in queued_scans(conn, 10)] == [waiting.scan_id]
        logged = find_scan(conn, refused.scan_id)
    assert logged is not None
    assert logged.server_result == "refused"
    assert logged.server_reason is not None
    assert logged.server_reason.startswith("scan_id_taken")


def test_failed_attempts_are_counted(store: LocalStore) -> None:
    with store.write() as conn:
        record_scan(conn, _scan(), upload=True, now=START)
        seq = queued_scans(conn, 1)[0].seq
        note_failed_attempt(conn, [seq], "timeout")
        note_failed_attempt(conn, [seq], "HTTP 503")
    with store.read() as conn:
        row = conn.exec_driver_sql(
            "SELECT attempts, last_error FROM upload_queue WHERE seq = ?", (seq,)
        ).one()
    assert tuple(row) == (2, "HTTP 503")


def test_an_annulment_waits_for_its_scan_to_reach_the_server(store: LocalStore) -> None:
    admission = _scan()
    with store.write() as conn:
        record_scan(conn, admission, upload=True, now=START)
        assert annul(conn, admission.scan_id, START)
        assert not annul(conn, admission.scan_id, START)  # once is enough
    with store.read() as conn:
        assert queued_annulments(conn, 10) == []  # the server doesn't have the scan yet
        assert admissions_of(conn, b"L" * 16) == []
        logged = find_scan(conn, admission.scan_id)
        assert logged is not None
        assert logged.annulled
    with store.write() as conn:
        record_outcomes(
            conn,
            _batch(wire.ScanOutcome(scan_id=admission.scan_id, result=VerdictResult.ADMITTED)),
        )
    with store.read() as conn:
        (waiting,) = queued_annulments(conn, 10)
        assert queued_scans(conn, 10) == []
    assert waiting.scan_id == admission.scan_id


def test_an_online_admission_can_be_annulled_at_once(store: LocalStore) -> None:
    online = _scan()
    with store.write() as conn:
        record_scan(conn, online, upload=False, now=START)
        assert annul(conn, online.scan_id, START)
    with store.read() as conn:
        assert [a.scan_id for a in queued_annulments(conn, 10)] == [online.scan_id]


def test_only_this_devices_admissions_can_be_annulled(store: LocalStore) -> None:
    rejected = _scan(result=VerdictResult.REJECTED, reason=VerdictReason.REVOKED)
    peer = wire.AdmissionChange(
        scan_id=new_id(),
        ticket_id=new_id(),
        gate="South",
        direction=Direction.ENTRY,
        scanned_at=START,
    )
    with store.write() as conn:
        record_scan(conn, rejected, upload=True, now=START)
        apply_changes(conn, store.sealer, [peer], START)
        assert not annul(conn, rejected.scan_id, START)
        assert not annul(conn, peer.scan_id, START)
        assert not annul(conn, new_id(), START)
        assert _count(conn, "upload_queue WHERE kind = 'annul'") == 0


def test_the_log_lists_this_devices_scans_newest_first(store: LocalStore) -> None:
    older, newer = _scan(at=START), _scan(at=START + timedelta(minutes=5))
    with store.write() as conn:
        record_scan(conn, newer, upload=True, now=START)
        record_scan(conn, older, upload=False, now=START)
        apply_changes(
            conn,
            store.sealer,
            [
                wire.AdmissionChange(
                    scan_id=new_id(),
                    ticket_id=new_id(),
                    gate="South",
                    direction=Direction.ENTRY,
                    scanned_at=START + timedelta(minutes=9),
                )
            ],
            START,
        )
    with store.read() as conn:
        logged = local_scans(conn)
    assert [s.scan_id for s in logged] == [newer.scan_id, older.scan_id]
    assert [s.uploaded for s in logged] == [False, True]


# --- sealing: what a lost scanner gives away -------------------------------------------------


def _file_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob(DATABASE_FILE + "*")))


def _forms(ticket_id: uuid.UUID) -> list[bytes]:
    return [ticket_id.bytes, str(ticket_id).encode(), ticket_id.hex.encode()]


def test_names_and_ids_of_unscanned_tickets_are_not_on_disk(
    tmp_path: Path, clock: ManualClock
) -> None:
    data = tmp_path / "data"
    store = LocalStore.open(data)
    issuer = IssuerKeyRing.generate()
    gate_event = wire.GateEvent(
        event_id=new_id(),
        name="Sealing test",
        venue="Hall",
        starts_at=START,
        ends_at=START + timedelta(hours=5),
    )
    set_up_standalone(
        store, gate_event=gate_event, keys=issuer.scanner_ring, gate="North", now=START
    )
    ids = [new_id() for _ in range(40)]
    names = [f"Quillon Vexmoor-{i:02d}" for i in range(len(ids))]
    load_tickets(
        store,
        (
            _ticket(t, gate_event.event_id, ticket_type="Backstage pass", holder_name=n)
            for t, n in zip(ids, names, strict=True)
        ),
        START,
    )
    gate = Gate(store, clock=clock)
    scanned = ids[0]
    verdict = gate.scan(
        issue_code(
            issuer,
            ticket_id=scanned,
            event_id=gate_event.event_id,
            secret_version=1,
            issued_at=START,
            name_secret=name_secret_of(scanned),
        )
    )
    assert verdict.admitted
    assert verdict.verdict.holder_name == names[0]  # whoever holds the code can read the name

    def assert_sealed(raw: bytes) -> None:
        # Controls: the search does find what the file stores in clear.
        assert b"Backstage pass" in raw
        assert scanned.bytes in raw  # a scanned ticket's id is in the scan log (documented)
        assert b"Vexmoor" not in raw
        for name in names:
            assert name.encode() not in raw
            assert name.encode("utf-16-le") not in raw
        for ticket_id in ids[1:]:
            for form in _forms(ticket_id):
                assert form not in raw, f"ticket id {ticket_id} is readable on disk"

    assert_sealed(_file_bytes(data))  # while open: the newest pages are in the WAL
    store.close()
    assert_sealed(_file_bytes(data))  # after closing: checkpointed into the main file


def test_another_device_salt_gives_other_lookups(tmp_path: Path, clock: ManualClock) -> None:
    first = LocalStore.open(tmp_path / "one")
    second = LocalStore.open(tmp_path / "two")
    try:
        ticket_id = new_id()
        change = _ticket(ticket_id, new_id(), holder_name="Grace Hopper")
        for store in (first, second):
            with store.write() as conn:
                apply_changes(conn, store.sealer, [change], START)

        def stored(store: LocalStore) -> tuple[bytes, bytes]:
            with store.read() as conn:
                row = conn.exec_driver_sql("SELECT lookup, sealed_holder FROM tickets").one()
            return bytes(row[0]), bytes(row[1])

        lookup_one, sealed_one = stored(first)
        lookup_two, sealed_two = stored(second)
        assert lookup_one != lookup_two
        assert lookup_one == first.sealer.lookup(ticket_id)
        assert lookup_two == second.sealer.lookup(ticket_id)
        # The name is kept as the feed sealed it: the ticket's name secret opens it (the server
        # seals it afresh for every feed answer, so two devices' copies differ too).
        for sealed in (sealed_one, sealed_two):
            assert sealed == change.sealed_holder
            assert (
                open_name(name_secret_of(ticket_id), sealed, ticket_id=ticket_id, secret_version=1)
                == "Grace Hopper"
            )
            # Nothing else opens it: not another ticket's secret, not this one's for another id.
            other = new_id()
            assert (
                open_name(name_secret_of(other), sealed, ticket_id=ticket_id, secret_version=1)
                is None
            )
            assert (
                open_name(name_secret_of(ticket_id), sealed, ticket_id=other, secret_version=1)
                is None
            )
    finally:
        first.close()
        second.close()


def test_the_salt_survives_reopening(tmp_path: Path) -> None:
    ticket_id = new_id()
    store = LocalStore.open(tmp_path / "data")
    before = store.sealer.lookup(ticket_id)
    store.close()
    again = LocalStore.open(tmp_path / "data")
    try:
        assert again.sealer.lookup(ticket_id) == before
    finally:
        again.close()


def test_a_lost_salt_is_a_store_error(store: LocalStore) -> None:
    with store.write() as conn:
        conn.exec_driver_sql("DELETE FROM state WHERE name = 'cache_salt'")
    with pytest.raises(StoreError, match="cache salt"):
        _ = store.sealer


def test_a_wrong_size_salt_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Sealer(b"short")


def test_a_version_2_store_drops_its_own_sealed_names_and_fetches_the_feed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Store schema 3 (issue 14 item 8): names the device sealed under SHA-512(salt ‖ ticket id)
    cannot be re-sealed without the codes, so they go — from the file's pages too — and the
    feed cursor is reset, so that the next sync brings every ticket with its server-sealed
    name."""
    data = tmp_path / "data"
    with monkeypatch.context() as old:
        old.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
        old.setattr(schema, "SCHEMA_VERSION", 2)
        store = LocalStore.open(data)
        old_blob = b"\x5a" * 24 + b"an old device-sealed name"
        with store.write() as conn:
            conn.exec_driver_sql(
                "INSERT INTO tickets VALUES (?, 'active', 1, 'Standing', NULL, NULL, ?)",
                (b"L" * 16, old_blob),
            )
            save_sync_state(conn, SyncState(cursor="c4242", failures=2))
        store.close()
    assert old_blob in _file_bytes(data)
    upgraded = LocalStore.open(data)
    try:
        assert upgraded.schema_version() == schema.SCHEMA_VERSION
        with upgraded.read() as conn:
            cached = find_ticket(conn, b"L" * 16)
            assert cached is not None
            assert cached.sealed_holder is None
            assert cached.status is TicketStatus.ACTIVE  # statuses stay until the feed updates
            sync = load_sync_state(conn)
            assert (sync.cursor, sync.failures) == (None, 2)
        upgraded.checkpoint()
        assert old_blob not in _file_bytes(data)
    finally:
        upgraded.close()


def test_a_version_3_store_keeps_everything_and_gains_lists_zones_and_the_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Store schema 4 (issue 16): tickets, scans, the queue, keys and settings stay as they were;
    tickets gain a type id, scans a list and a zone (unknown for what came before), and the feed
    starts over so that every ticket comes again with its type id."""
    data = tmp_path / "data"
    clock = ManualClock(datetime(2026, 6, 5, 18, 0, tzinfo=UTC))
    issuer = IssuerKeyRing.generate()
    gate_event = wire.GateEvent(
        event_id=new_id(),
        name="Summer Festival",
        venue="Riverside",
        starts_at=clock.now(),
        ends_at=clock.now() + timedelta(hours=6),
    )
    ticket_id = new_id()
    with monkeypatch.context() as old:
        old.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:3])
        old.setattr(schema, "SCHEMA_VERSION", 3)
        store = LocalStore.open(data)
        set_up_standalone(
            store, gate_event=gate_event, keys=issuer.scanner_ring, gate="Main", now=clock.now()
        )
        lookup = store.sealer.lookup(ticket_id)
        scan_id = new_id()
        at = clock.now().timestamp() * 1_000_000
        with store.write() as conn:
            # Version 3's rows, written as version 3 wrote them.
            conn.exec_driver_sql(
                "INSERT INTO tickets VALUES (?, 'active', 1, 'Day pass', NULL, NULL, ?)",
                (lookup, sealed_holder(ticket_id, "Grace Hopper", 1)),
            )
            conn.exec_driver_sql(
                "INSERT INTO scans (scan_id, origin, ticket_lookup, ticket_id, gate, direction, "
                "at, clock_offset_ms, result, mode, on_signature, code, annulled, recorded_at, "
                "name_secret) VALUES (?, 'local', ?, ?, 'Main', 'entry', ?, 0, 'admitted', "
                "'offline', 0, 'GH2...', 0, ?, ?)",
                (scan_id.bytes, lookup, ticket_id.bytes, int(at), int(at), b"s" * 16),
            )
            conn.exec_driver_sql(
                "INSERT INTO upload_queue (scan_id, kind, enqueued_at, attempts) "
                "VALUES (?, 'scan', ?, 0)",
                (scan_id.bytes, int(at)),
            )
            save_sync_state(conn, SyncState(cursor="c99", clock_offset_ms=12))
            before = {
                table: conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
                for table in ("tickets", "scans", "upload_queue", "keys", "device", "event")
            }
        store.close()
    upgraded = LocalStore.open(data)
    try:
        assert upgraded.schema_version() == schema.SCHEMA_VERSION
        with upgraded.read() as conn:
            after = {
                table: conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
                for table in before
            }
            assert after == before
            assert before["scans"] == before["upload_queue"] == 1
            cached = find_ticket(conn, upgraded.sealer.lookup(ticket_id))
            assert cached is not None
            assert (cached.ticket_type, cached.ticket_type_id) == ("Day pass", None)
            (known,) = admissions_of(conn, upgraded.sealer.lookup(ticket_id))
            assert (known.scan_id, known.list_id, known.zone) == (scan_id, None, None)
            sync = load_sync_state(conn)
            assert (sync.cursor, sync.clock_offset_ms) == (None, 12)
            assert load_setup(conn) is None
        # The gate still decides as before lists: the same ticket again is a double entry.
        code = issue_code(
            issuer,
            ticket_id=ticket_id,
            event_id=gate_event.event_id,
            secret_version=1,
            issued_at=clock.now() - timedelta(days=3),
            name_secret=name_secret_of(ticket_id),
        )
        again = Gate(upgraded, clock=clock).scan(code)
        assert again.verdict.reason is VerdictReason.ALREADY_CHECKED_IN
    finally:
        upgraded.close()
