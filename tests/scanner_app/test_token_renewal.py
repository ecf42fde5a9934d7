"""The scanner renews its short-lived device token on sync, against the real server in-process.

The sync server's app runs in this process over the session's migrated database (``litestar``'s
test transport under the scanner's own ``ServerClient``), with a ``ManualClock`` both sides read:
hours and days pass without waiting. A switch takes the server off the network, as a festival
field loses it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from benchmarks.server_harness import BenchDatabase
from scanner_app.core.gate import Gate
from scanner_app.core.store import LocalStore
from scanner_app.core.store.device_token import DeviceCredentials
from scanner_app.core.store.scans import queue_length
from scanner_app.core.sync.engine import TOKEN_REFUSED, SyncEngine, enroll
from shared.clock import ManualClock
from sync_server.http.auth import Role, mint_token
from tests.scanner_app.field_server import SERVER_URL, FieldServer, field_server

pytestmark = pytest.mark.integration

HOUR = 3600


@dataclass
class Venue(FieldServer):
    """The server in this process, its manager, a switch for the network, and its scans."""

    owner_dsn: str = ""

    def device(self, device_id: uuid.UUID) -> dict[str, Any]:
        listed = self.http.get("/v1/devices", headers=self.manager()).json()["items"]
        found: dict[str, Any] = next(d for d in listed if d["id"] == str(device_id))
        return found

    def scans(self) -> int:
        """How many scans the server holds for this venue."""

        async def count() -> int:
            conn = await asyncpg.connect(self.owner_dsn)
            try:
                found = await conn.fetchval(
                    "SELECT count(*) FROM ticket_scans WHERE tenant_id = $1", self.tenant_id
                )
            finally:
                await conn.close()
            return int(found)

        return asyncio.run(count())


@pytest.fixture
def venue(live_database: BenchDatabase) -> Iterator[Venue]:
    with field_server(
        live_database,
        lambda http, clock, tenant, secret: Venue(
            http, clock, tenant, secret, owner_dsn=live_database.owner_dsn
        ),
    ) as served:
        yield served


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    opened = LocalStore.open(tmp_path / "scanner")
    yield opened
    opened.close()


def _enrolled(venue: Venue, store: LocalStore, clock: ManualClock | None = None) -> SyncEngine:
    code = venue.enrollment_code()
    enroll(
        store,
        SERVER_URL,
        code,
        "North",
        clock=clock or venue.clock,
        client_factory=venue.client_factory,
    )
    engine = SyncEngine(
        store,
        clock=clock or venue.clock,
        client_factory=venue.client_factory,
        interval_seconds=3600,
    )
    first = engine.sync_once()
    assert first.ok, first.errors
    return engine


def _credentials(store: LocalStore) -> DeviceCredentials:
    found = DeviceCredentials.decode(store.vault.load())
    assert found is not None
    return found


def test_a_gate_offline_for_days_renews_and_uploads_everything_it_queued(
    venue: Venue, store: LocalStore
) -> None:
    """The festival case: the network goes for three days, far longer than a token lives;
    the gate admits offline all along, and when the network returns it renews its token first
    and uploads every queued scan. The token it had is refused by then."""
    engine = _enrolled(venue, store)
    before = _credentials(store)
    assert before.refresh is not None
    assert before.expires_at is not None
    venue.reachable = False
    gate = Gate(store, clock=venue.clock)
    for code in venue.sold:
        assert gate.scan(code).admitted
        venue.clock.advance(HOUR)
    venue.clock.advance(3 * 24 * HOUR)
    assert not engine.sync_once().ok
    with store.read() as conn:
        assert queue_length(conn) == len(venue.sold)

    venue.reachable = True
    report = engine.sync_once()
    assert report.ok, report.errors
    assert report.uploaded == len(venue.sold)
    with store.read() as conn:
        assert queue_length(conn) == 0
    assert venue.scans() == len(venue.sold)
    after = _credentials(store)
    assert after.access != before.access
    assert after.refresh != before.refresh
    stale = venue.http.get("/v1/sync/changes", headers={"Authorization": f"Bearer {before.access}"})
    assert (stale.status_code, stale.json()["code"]) == (401, "token_expired")
    assert not engine.status().revoked


def test_renewal_comes_at_half_life_on_the_sync_loop(venue: Venue, store: LocalStore) -> None:
    engine = _enrolled(venue, store)
    first = _credentials(store)
    venue.clock.advance(HOUR / 2 - 60)
    assert engine.sync_once().ok
    assert _credentials(store) == first  # not yet due
    venue.clock.advance(120)
    assert engine.sync_once().ok
    assert _credentials(store).access != first.access


def test_a_token_expired_by_the_servers_clock_is_renewed_once_and_the_sync_goes_on(
    venue: Venue, store: LocalStore
) -> None:
    """The device's clock lags (it thinks renewal is not due); the server says
    ``token_expired``: the engine renews and does the sync again, queue and all."""
    device_clock = ManualClock(venue.clock.now())
    engine = _enrolled(venue, store, device_clock)
    gate = Gate(store, clock=device_clock)
    assert gate.scan(venue.sold[0]).admitted
    venue.clock.advance(2 * HOUR)  # the server's time only
    report = engine.sync_once()
    assert report.ok, report.errors
    assert report.uploaded == 1
    assert venue.scans() == 1


def test_a_renewal_whose_answer_was_lost_is_sent_again_and_the_gate_goes_on(
    venue: Venue, store: LocalStore
) -> None:
    """The server renewed, the answer never reached the gate (it still holds the spent
    refresh token): the next sync sends it again, and the gate is neither stuck nor revoked."""
    engine = _enrolled(venue, store)
    held = _credentials(store)
    assert held.refresh is not None
    lost = venue.http.post("/v1/devices/token", json={"refresh_token": held.refresh})
    assert lost.status_code == 200
    venue.clock.advance(HOUR / 2 + 1)
    assert engine.sync_once().ok
    venue.clock.advance(HOUR / 2 + 1)
    assert engine.sync_once().ok
    assert not engine.status().revoked
    assert venue.device(engine.enrollment.device_id)["revoked_at"] is None  # type: ignore[union-attr]


def test_a_copy_of_the_vault_used_by_a_thief_revokes_the_gate_and_says_so(
    venue: Venue, store: LocalStore
) -> None:
    """A thief copied the vault; the gate renews; the thief renews with the copied (spent)
    refresh token: the server revokes the device, and the gate shows revoked at its next sync."""
    engine = _enrolled(venue, store)
    copied = _credentials(store)
    venue.clock.advance(HOUR / 2 + 1)
    assert engine.sync_once().ok
    venue.clock.advance(HOUR / 2 + 1)
    assert engine.sync_once().ok
    thief = venue.http.post("/v1/devices/token", json={"refresh_token": copied.refresh})
    assert (thief.status_code, thief.json()["code"]) == (401, "device_revoked")
    assert not engine.sync_once().ok
    assert engine.status().revoked
    device = venue.device(engine.enrollment.device_id)  # type: ignore[union-attr]
    assert device["revoked_reason"] == "refresh_token_reused"


def test_a_vault_from_before_renewals_keeps_its_token_until_it_expires(
    venue: Venue, store: LocalStore
) -> None:
    """Legacy: the vault holds a bare token (a scanner enrolled before renewals). It is used
    as it is, never renewed; once it expires the gate says to enroll again — not revoked, and
    its queue intact."""
    engine = _enrolled(venue, store)
    device_id = engine.enrollment.device_id  # type: ignore[union-attr]
    engine.stop()
    legacy = mint_token(
        venue.jwt_secret,
        tenant_id=venue.tenant_id,
        role=Role.SCANNER,
        subject=str(device_id),
        ttl_seconds=24 * HOUR,
        device_id=device_id,
        event_id=uuid.UUID(venue.device(device_id)["event_id"]),
        gate="N",
        now=venue.clock.now(),
    )
    store.vault.save(legacy)
    engine = SyncEngine(store, clock=venue.clock, client_factory=venue.client_factory)
    venue.clock.advance(20 * HOUR)
    assert engine.sync_once().ok
    assert store.vault.load() == legacy  # used as it was, nothing renewed
    assert Gate(store, clock=venue.clock).scan(venue.sold[0]).admitted
    venue.clock.advance(5 * HOUR)
    report = engine.sync_once()
    assert report.errors == [TOKEN_REFUSED]
    assert not engine.status().revoked
    with store.read() as conn:
        assert queue_length(conn) == 1


def test_a_server_restored_from_before_the_gates_renewal_neither_revokes_nor_stops_it(
    venue: Venue, store: LocalStore
) -> None:
    """The server's database goes back to a backup taken before the gate's last renewal
    (issue 19): the gate's refresh token is of a generation the database has not issued. Not a
    reuse: the device is not revoked; the gate syncs on with its access token while it lasts,
    then asks to be enrolled again — never "switched off"."""
    engine = _enrolled(venue, store)
    columns = "refresh_hash, refresh_previous_hash, refresh_generation, refresh_renewed_at"

    async def backup() -> list[Any]:
        conn = await asyncpg.connect(venue.owner_dsn)
        try:
            row = await conn.fetchrow(
                f"SELECT {columns} FROM devices WHERE id = $1",
                engine.enrollment.device_id,  # type: ignore[union-attr]
            )
        finally:
            await conn.close()
        assert row is not None
        return list(row)

    async def restore(values: list[Any]) -> None:
        conn = await asyncpg.connect(venue.owner_dsn)
        try:
            await conn.execute(
                "UPDATE devices SET refresh_hash = $2, refresh_previous_hash = $3, "
                "refresh_generation = $4, refresh_renewed_at = $5 WHERE id = $1",
                engine.enrollment.device_id,  # type: ignore[union-attr]
                *values,
            )
        finally:
            await conn.close()

    before = asyncio.run(backup())
    venue.clock.advance(HOUR / 2 + 1)
    assert engine.sync_once().ok  # renewed: generation 1
    asyncio.run(restore(before))
    venue.clock.advance(HOUR / 2 + 1)  # renewal due again; the access token still lives

    report = engine.sync_once()

    assert report.ok, report.errors
    assert not engine.status().revoked
    venue.clock.advance(HOUR)  # the access token has expired now
    report = engine.sync_once()
    assert report.errors == [TOKEN_REFUSED]
    status = engine.status()
    assert not status.revoked
    assert status.offline_reason == TOKEN_REFUSED
    assert venue.device(engine.enrollment.device_id)["revoked_at"] is None  # type: ignore[union-attr]
