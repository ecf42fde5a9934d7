"""Backup and restore of a live event (issue 19, docs/operations.md "Backup and restore").

A running server's database is dumped with ``pg_dump -Fc`` while the event is live (tickets
sold, gates scanning, a double entry found, ticket events still in the outbox because no
worker runs), the event goes on after the dump (a gate syncs on past it, a ticket changes),
and the dump is restored with ``pg_restore`` into a *new* database, as the owner. Everything
the dump held is back — tickets, scans, the conflict, the unsent outbox rows, the grants and
row-level security the server's role works under — and a real scanner core syncs on against a
server over the restored database: the feed starts over (``feed_reset``) instead of skipping
the changes the restored database numbers again below the gate's cursor, and the gate's scans
the backup missed go up again, each once.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.server_harness import (
    APP_ROLE,
    PG_HOST,
    BenchDatabase,
    Secrets,
    _drop_database,
    fresh_database,
)
from scanner_app.core.gate import Gate
from scanner_app.core.store import LocalStore
from scanner_app.core.store.cache import ticket_count
from scanner_app.core.store.device_token import DeviceCredentials
from scanner_app.core.store.state import GateSettings, save_settings
from scanner_app.core.sync.engine import (
    DEVICE_UNKNOWN,
    TOKEN_REFUSED,
    SyncEngine,
    SyncReport,
    enroll,
)
from shared.domain import VerdictReason, VerdictResult
from sync_server.http.auth import Role, mint_token
from tests.scanner_app.live_server import BackOffice, LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _pg_tool(name: str) -> str:
    """``pg_dump``/``pg_restore`` of the newest PostgreSQL installed (or on the PATH)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3])
    )
    if found:
        return str(found[-1])
    which = shutil.which(name)
    if which is None:
        pytest.skip(f"{name} is not installed")
    return which


def _libpq(database: BenchDatabase) -> str:
    url = make_url(database.admin_url)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _dump(database: BenchDatabase, to: Path) -> Path:
    """``pg_dump -Fc`` of a live database, as the owner (docs/operations.md)."""
    subprocess.run([_pg_tool("pg_dump"), "-Fc", "-f", str(to), _libpq(database)], check=True)
    return to


def _restore(dump: Path, into: BenchDatabase) -> None:
    """``pg_restore`` into a new, empty database, as the owner."""
    subprocess.run(
        [_pg_tool("pg_restore"), "--exit-on-error", "-d", _libpq(into), str(dump)], check=True
    )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What matters of a database, as sets of rows."""

    tickets: set[tuple[uuid.UUID, str, int]]
    scans: set[tuple[uuid.UUID, uuid.UUID | None, uuid.UUID | None]]
    unsent_outbox: set[uuid.UUID]
    policies: set[tuple[str, str]]
    app_grants: set[tuple[str, str]]


async def _snapshot(admin_url: str) -> Snapshot:
    engine = create_async_engine(admin_url)
    try:
        async with engine.connect() as conn:
            tickets = {
                (r.id, r.status, r.secret_version)
                for r in await conn.execute(text("SELECT id, status, secret_version FROM tickets"))
            }
            scans = {
                (r.id, r.device_id, r.conflict_of)
                for r in await conn.execute(
                    text("SELECT id, device_id, conflict_of FROM ticket_scans")
                )
            }
            unsent = {
                r.id
                for r in await conn.execute(text("SELECT id FROM outbox WHERE sent_at IS NULL"))
            }
            policies = {
                (r.tablename, r.policyname)
                for r in await conn.execute(text("SELECT tablename, policyname FROM pg_policies"))
            }
            grants = {
                (r.table_name, r.privilege_type)
                for r in await conn.execute(
                    text(
                        "SELECT table_name, privilege_type"
                        " FROM information_schema.role_table_grants WHERE grantee = :role"
                    ),
                    {"role": APP_ROLE},
                )
            }
    finally:
        await engine.dispose()
    return Snapshot(tickets, scans, unsent, policies, grants)


async def _create_database(name: str) -> None:
    engine = create_async_engine(f"{PG_HOST}/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()


@pytest.fixture
def original() -> Iterator[BenchDatabase]:
    with fresh_database("backup", prefix="gatehouse_test") as database:
        yield database


@pytest.fixture
def restored(original: BenchDatabase) -> Iterator[BenchDatabase]:
    """An empty database for the restore (not migrated: pg_restore brings the schema)."""
    name = f"{original.name}_restored"
    asyncio.run(_create_database(name))
    url = make_url(original.admin_url).set(database=name)
    app_url = url.set(username=APP_ROLE).render_as_string(hide_password=False)
    try:
        yield BenchDatabase(
            name=name, admin_url=url.render_as_string(hide_password=False), app_url=app_url
        )
    finally:
        asyncio.run(_drop_database(name))


class Scanner:
    def __init__(self, data_dir: Path, server: LiveServer, code: str, name: str) -> None:
        self.store = LocalStore.open(data_dir)
        self.enrollment = enroll(self.store, server.url, code, name)
        with self.store.write() as conn:
            save_settings(conn, GateSettings(debounce_seconds=0))
        self.engine = SyncEngine(self.store)
        self.gate = Gate(
            self.store, online=self.engine.online_check, is_online=self.engine.is_online
        )
        self.engine.set_data_listener(self.gate.reload)

    def sync(self) -> SyncReport:
        report = self.engine.sync_once()
        assert report.ok, report.errors
        return report

    def restart_engine(self) -> None:
        """The app started again: the engine reads the vault afresh."""
        self.engine.stop()
        self.engine = SyncEngine(self.store)

    def tokens(self) -> DeviceCredentials:
        credentials = DeviceCredentials.decode(self.store.vault.load())
        assert credentials is not None
        return credentials

    def close(self) -> None:
        self.engine.stop()
        self.store.close()


def test_a_dump_of_a_live_event_restores_into_a_new_database_and_scanners_sync_on(
    tmp_path: Path, original: BenchDatabase, restored: BenchDatabase
) -> None:
    secrets = Secrets()
    server = LiveServer(original, secrets)
    scanners: list[Scanner] = []
    try:
        server.start()
        office = BackOffice.for_new_tenant(server)
        sale = office.event_on_sale(tickets=5)
        north = Scanner(
            tmp_path / "north",
            server,
            office.create_enrollment(sale.event_id, gate="North 1").code,
            "North",
        )
        south = Scanner(
            tmp_path / "south",
            server,
            office.create_enrollment(sale.event_id, gate="South 2").code,
            "South",
        )
        scanners += [north, south]
        north.sync()
        south.sync()
        assert north.gate.scan(sale.tickets[0].code).mode == "online"
        # Both gates let ticket 1 in while the server is away: a double entry once uploaded.
        server.stop()
        north.gate.scan(sale.tickets[1].code)
        south.gate.scan(sale.tickets[1].code)
        server.start()
        north.sync()
        south.sync()
        north.sync()

        # The backup, while the event runs. No worker runs: the ticket events stay unsent.
        at_dump = asyncio.run(_snapshot(original.admin_url))
        assert len(at_dump.tickets) == 5
        assert len(at_dump.scans) == 3
        assert sum(1 for scan in at_dump.scans if scan[2] is not None) == 1
        assert at_dump.unsent_outbox
        dump = _dump(original, tmp_path / "gatehouse.dump")

        # The event goes on after the backup: a new gate, West, is enrolled and admits ticket
        # 0's neighbour online; North admits ticket 2 offline and uploads it, ticket 4 is
        # revoked and North's cursor moves past everything the dump holds.
        west = Scanner(
            tmp_path / "west",
            server,
            office.create_enrollment(sale.event_id, gate="West 3").code,
            "West",
        )
        scanners.append(west)
        west.sync()
        west_scan = west.gate.scan(sale.tickets[0].code)  # a re-entry refused, online
        assert west_scan.mode == "online"
        server.stop()
        late = north.gate.scan(sale.tickets[2].code)
        assert (late.mode, late.verdict.result) == ("offline", VerdictResult.ADMITTED)
        server.start()
        office.revoke(sale.tickets[4].id)
        north.sync()
        assert north.engine.status().queued == 0
        server.stop()

        # The restore: into a new database, as the owner.
        _restore(dump, restored)
        assert asyncio.run(_snapshot(restored.admin_url)) == at_dump

        # A server over the restored database, same secrets. Before North syncs, a ticket
        # changes: the restored database numbers it again from where the dump was, below the
        # cursor North holds — a feed that trusted the cursor would never send it.
        server = LiveServer(restored, secrets, port=server.port)
        server.start()
        office = BackOffice(server, office.tenant_id)
        office.revoke(sale.tickets[3].id)

        report = north.sync()

        assert report.feed_resets == 1
        assert late.verdict.scan_id is not None
        after = asyncio.run(_snapshot(restored.admin_url))
        on_server = [scan[0] for scan in after.scans]
        assert sorted(map(str, on_server)) == sorted(
            map(str, [*(scan[0] for scan in at_dump.scans), late.verdict.scan_id])
        )  # the late scan back, and nothing twice
        assert at_dump.unsent_outbox <= after.unsent_outbox
        with north.store.read() as conn:
            assert ticket_count(conn) == 5
        # The revocation made after the restore reached the gate...
        server.stop()
        revoked = north.gate.scan(sale.tickets[3].code)
        assert revoked.verdict.result is VerdictResult.REJECTED
        assert revoked.verdict.reason is VerdictReason.REVOKED
        # ...and the one the backup missed is undone with it: ticket 4 is valid again.
        again = north.gate.scan(sale.tickets[4].code)
        assert again.verdict.result is VerdictResult.ADMITTED
        server.start()
        # The next sync goes on from the new cursor, no second reset.
        assert north.sync().feed_resets == 0

        # West was enrolled after the backup: the restored server does not know it. It is told
        # so, with the way back, and is not switched off; its scan waits in its queue.
        report = west.engine.sync_once()
        assert report.errors == [DEVICE_UNKNOWN]
        status = west.engine.status()
        assert not status.revoked
        assert status.offline_reason == DEVICE_UNKNOWN
        assert status.queued == 1
        # The way back: enroll again on the same data folder; the scan goes up, once.
        west.engine.stop()
        code = office.create_enrollment(sale.event_id, gate="West 3").code
        enroll(west.store, server.url, code, "West again")
        west.engine = SyncEngine(west.store)
        west.sync()
        assert west.engine.status().queued == 0
        final = asyncio.run(_snapshot(restored.admin_url))
        made_since = {revoked.verdict.scan_id, again.verdict.scan_id, west_scan.verdict.scan_id}
        assert None not in made_since
        assert {scan[0] for scan in final.scans} == {scan[0] for scan in after.scans} | made_since
        assert len(final.scans) == len(after.scans) + 3
        office.close()
    finally:
        for scanner in scanners:
            scanner.close()
        server.close()


async def _scan_rows(admin_url: str) -> dict[uuid.UUID, tuple[uuid.UUID | None, bool]]:
    """Every stored scan: its device and whether it was undone."""
    engine = create_async_engine(admin_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT id, device_id, annulled_at IS NOT NULL AS undone FROM ticket_scans")
            )
            return {r.id: (r.device_id, r.undone) for r in rows}
    finally:
        await engine.dispose()


def test_a_gate_whose_token_ran_out_during_the_restore_enrolls_again_and_loses_nothing(
    tmp_path: Path, original: BenchDatabase, restored: BenchDatabase
) -> None:
    """The server was down for longer than a gate's access token lives (an hour), and came
    back restored from a backup taken before the gate last renewed its tokens. The gate's
    access token has expired and its refresh token is one the restored database never issued
    (``refresh_token_ahead``): the gate must be enrolled again. As a new device it takes over
    the device it was (``wire.Succession``), so what it did after the backup — an admission
    uploaded, an admission undone — reaches the restored server, once."""
    secrets = Secrets()
    server = LiveServer(original, secrets)
    east: Scanner | None = None
    try:
        server.start()
        office = BackOffice.for_new_tenant(server)
        sale = office.event_on_sale(tickets=3)
        east = Scanner(
            tmp_path / "east",
            server,
            office.create_enrollment(sale.event_id, gate="East 4").code,
            "East",
        )
        east.sync()
        before = east.gate.scan(sale.tickets[0].code)
        assert (before.mode, before.verdict.result) == ("online", VerdictResult.ADMITTED)
        east.sync()
        dump = _dump(original, tmp_path / "gatehouse.dump")

        # After the backup: the gate renews its tokens (half their life gone), undoes the
        # admission it made before the backup (the wrong guest) and admits ticket 1 offline;
        # both reach the original server.
        east.store.vault.save(
            msgspec.structs.replace(east.tokens(), renew_at=datetime.now(UTC)).encode()
        )
        east.restart_engine()
        refresh_before = east.tokens().refresh
        east.sync()
        assert east.tokens().refresh != refresh_before  # renewed: ahead of the backup now
        assert before.verdict.scan_id is not None
        assert east.gate.annul(before.verdict.scan_id)
        server.stop()
        late = east.gate.scan(sale.tickets[1].code)
        assert (late.mode, late.verdict.result) == ("offline", VerdictResult.ADMITTED)
        server.start()
        east.sync()
        assert east.engine.status().queued == 0
        server.stop()

        _restore(dump, restored)
        server = LiveServer(restored, secrets, port=server.port)
        server.start()
        office = BackOffice(server, office.tenant_id)
        restored_rows = asyncio.run(_scan_rows(restored.admin_url))
        assert late.verdict.scan_id is not None
        assert late.verdict.scan_id not in restored_rows
        assert restored_rows[before.verdict.scan_id][1] is False  # the undo is not in the dump

        # More than an hour later: the access token the gate holds has expired. (The server
        # mints the same token it would have; waiting an hour is not a test.)
        enrolled = east.enrollment
        expired = mint_token(
            secrets.jwt_secret,
            tenant_id=enrolled.tenant_id,
            role=Role.SCANNER,
            subject=str(enrolled.device_id),
            ttl_seconds=3600,
            device_id=enrolled.device_id,
            event_id=enrolled.event_id,
            gate=enrolled.gate,
            now=datetime.now(UTC) - timedelta(hours=2),
        )
        east.store.vault.save(msgspec.structs.replace(east.tokens(), access=expired).encode())
        east.restart_engine()
        report = east.engine.sync_once()
        assert report.errors == [TOKEN_REFUSED]  # the renewal: refresh_token_ahead
        status = east.engine.status()
        assert not status.revoked
        assert status.offline_reason == TOKEN_REFUSED

        # The way back: enroll again on the same computer. The new device takes over the old
        # one; everything made here goes up again, and the server keeps what it lacked, once.
        east.engine.stop()
        again = enroll(
            east.store,
            server.url,
            office.create_enrollment(sale.event_id, gate="East 4").code,
            "East again",
        )
        east.engine = SyncEngine(east.store)
        report = east.sync()
        assert east.engine.status().queued == 0
        rows = asyncio.run(_scan_rows(restored.admin_url))
        assert set(rows) == set(restored_rows) | {late.verdict.scan_id}
        assert rows[late.verdict.scan_id] == (again.device_id, False)
        assert rows[before.verdict.scan_id] == (enrolled.device_id, True)  # undone again
        office.close()
    finally:
        if east is not None:
            east.close()
        server.close()
