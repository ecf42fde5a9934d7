"""An upgrade during a running event keeps its data and its scanners working (issue 19,
docs/operations.md "Upgrades").

"The previous release" is revision 0015: the head before this day's revisions (0016 console
search, 0017 peer sync, 0018 scheduled jobs, 0019 seats and resolved conflicts, 0020 kept
counts, 0021 the feed's incarnation). Its database
holds a running event: the event is set up and scanned through a server, and the database is
then taken back to 0015 with the revisions' own downgrades — the schema is exactly 0015's, the
rows the event's. The scanner holds what a 0015 server gave it: a cursor without an
incarnation (``c<seq>``). While the server is down for ``migrate`` the gate goes on scanning
offline; after ``upgrade`` to head and a restart the gate syncs: every scan is on the server
once, the scans from before are all there, and the feed goes on from the gate's cursor
(no reset) and brings what changed after the upgrade.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.server_harness import APP_ROLE, BenchDatabase, Secrets, fresh_database
from scanner_app.core.gate import Gate
from scanner_app.core.store import LocalStore
from scanner_app.core.store.scans import queue_length
from scanner_app.core.store.state import (
    GateSettings,
    load_sync_state,
    save_settings,
    save_sync_state,
)
from scanner_app.core.sync.engine import SyncEngine, SyncReport, enroll
from shared.domain import VerdictReason, VerdictResult
from sync_server.db.migrate import downgrade, upgrade
from tests.scanner_app.live_server import BackOffice, LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PREVIOUS_RELEASE = "0015"


async def _scan_ids(admin_url: str) -> list[uuid.UUID]:
    engine = create_async_engine(admin_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT id FROM ticket_scans"))
            return [row.id for row in rows]
    finally:
        await engine.dispose()


async def _revision(admin_url: str) -> str:
    engine = create_async_engine(admin_url)
    try:
        async with engine.connect() as conn:
            return str(await conn.scalar(text("SELECT version_num FROM alembic_version")))
    finally:
        await engine.dispose()


@pytest.fixture
def database() -> Iterator[BenchDatabase]:
    with fresh_database("upgrade", prefix="gatehouse_test") as made:
        yield made


class Scanner:
    def __init__(self, data_dir: Path, server: LiveServer, code: str) -> None:
        self.store = LocalStore.open(data_dir)
        self.enrollment = enroll(self.store, server.url, code, "North")
        with self.store.write() as conn:
            save_settings(conn, GateSettings(debounce_seconds=0))
        self.engine = SyncEngine(self.store)
        self.gate = Gate(
            self.store, online=self.engine.online_check, is_online=self.engine.is_online
        )
        self.engine.set_data_listener(self.gate.reload)

    def restart_with_cursor_of_release(self) -> None:
        """The app started again holding the cursor a 0015 server gave it (no incarnation)."""
        self.engine.stop()
        with self.store.write() as conn:
            state = load_sync_state(conn)
            assert state.cursor is not None
            legacy = state.cursor.partition(".")[0]
            save_sync_state(conn, msgspec.structs.replace(state, cursor=legacy))
        self.engine = SyncEngine(self.store)
        self.gate = Gate(
            self.store, online=self.engine.online_check, is_online=self.engine.is_online
        )
        self.engine.set_data_listener(self.gate.reload)

    def sync(self) -> SyncReport:
        report = self.engine.sync_once()
        assert report.ok, report.errors
        return report

    def close(self) -> None:
        self.engine.stop()
        self.store.close()


def test_an_upgrade_from_the_previous_release_keeps_the_event_and_the_scanner_scanning(
    tmp_path: Path, database: BenchDatabase
) -> None:
    secrets = Secrets()
    server = LiveServer(database, secrets)
    scanner: Scanner | None = None
    try:
        server.start()
        office = BackOffice.for_new_tenant(server)
        sale = office.event_on_sale(tickets=6)
        enrollment = office.create_enrollment(sale.event_id, gate="North 1")
        scanner = Scanner(tmp_path / "north", server, enrollment.code)
        scanner.sync()
        before = [scanner.gate.scan(ticket.code) for ticket in sale.tickets[:2]]
        assert [v.mode for v in before] == ["online", "online"]
        scanner.sync()
        server.stop()

        # The previous release's database, and the cursor its server gave the gate.
        downgrade(database.admin_url, APP_ROLE, PREVIOUS_RELEASE)
        assert asyncio.run(_revision(database.admin_url)) == PREVIOUS_RELEASE
        at_release = asyncio.run(_scan_ids(database.admin_url))
        assert len(at_release) == 2

        # The upgrade: the server is down, the gate goes on offline.
        during = [scanner.gate.scan(ticket.code) for ticket in sale.tickets[2:5]]
        assert [v.mode for v in during] == ["offline"] * 3
        assert all(v.verdict.result is VerdictResult.ADMITTED for v in during)
        scanner.restart_with_cursor_of_release()
        upgrade(database.admin_url, APP_ROLE)
        server.start()
        office.revoke(sale.tickets[5].id)  # a change made after the upgrade

        report = scanner.sync()

        assert report.feed_resets == 0  # the 0015 cursor is taken as it is
        assert report.uploaded == 3
        with scanner.store.read() as conn:
            assert queue_length(conn) == 0
        on_server = asyncio.run(_scan_ids(database.admin_url))
        made = {v.verdict.scan_id for v in [*before, *during]}
        assert len(on_server) == len(set(on_server)) == 5
        assert set(on_server) == made
        assert set(at_release) <= set(on_server)
        # The feed brought the revocation made after the upgrade.
        server.stop()
        refused = scanner.gate.scan(sale.tickets[5].code)
        assert refused.verdict.result is VerdictResult.REJECTED
        assert refused.verdict.reason is VerdictReason.REVOKED
        server.start()
        assert scanner.sync().uploaded == 1  # the refusal, once
        assert len(asyncio.run(_scan_ids(database.admin_url))) == 6
        office.close()
    finally:
        if scanner is not None:
            scanner.close()
        server.close()
