"""The scanner's heartbeat against the real server (issue 17): the managers' device list shows
what the scanner has — its queue, its clock offset, its version — online after a sync, offline
once its syncs stop, its queue when it comes back, and an empty queue after the upload.

The server's app runs in this process over the session's migrated database, under the scanner's
own ``ServerClient`` (as in ``test_token_renewal.py``), so the server's clock can be moved
(``ManualClock``); the scanner's clock runs 90 s behind it. Switches take the server off the
network, make it fail uploads (a 503 from a proxy in front of it), or hide the heartbeat route
(a server older than it).
"""

from __future__ import annotations

import importlib.metadata
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.server_harness import BenchDatabase
from scanner_app.core.gate import Gate
from scanner_app.core.store import LocalStore
from scanner_app.core.store.scans import queue_length
from scanner_app.core.store.setup import load_setup
from scanner_app.core.sync.engine import SyncEngine, enroll
from shared.clock import ManualClock
from tests.scanner_app.field_server import SERVER_URL, FieldServer, field_server

pytestmark = pytest.mark.integration

#: The scanner's clock is this far behind the server's.
BEHIND = timedelta(seconds=90)
INTERVAL_S = 5


@dataclass
class ScannerClock:
    """The scanner's wall clock: the server's, ``BEHIND`` late."""

    server: ManualClock

    def now(self) -> datetime:
        return self.server.now() - BEHIND

    def monotonic(self) -> float:
        return self.server.monotonic()


@dataclass
class Venue(FieldServer):
    """The server in this process, its manager, and switches between it and the scanner."""

    uploads_fail: bool = False
    uploads_lost: bool = False
    heartbeat_known: bool = True
    seen: list[str] = field(default_factory=list)
    #: The heartbeats the scanner sent, as sent.
    beats: list[dict[str, Any]] = field(default_factory=list)

    def intercept(self, request: httpx.Request) -> httpx.Response | None:
        if self.uploads_lost and request.url.path == "/v1/sync/scans":
            raise httpx.ConnectError("the link dropped", request=request)
        self.seen.append(request.url.path)
        if request.url.path.endswith("/heartbeat"):
            self.beats.append(json.loads(request.content))
        if self.uploads_fail and request.url.path == "/v1/sync/scans":
            return httpx.Response(503, json={"code": "bad_gateway", "detail": "Proxy down."})
        if not self.heartbeat_known and request.url.path.endswith("/heartbeat"):
            return httpx.Response(404, json={"code": "not_found", "detail": "Not found."})
        return None

    def device(self, device_id: uuid.UUID) -> dict[str, Any]:
        """The device as the managers' Devices page gets it."""
        answer = self.http.get(f"/v1/devices/{device_id}", headers=self.manager())
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found


@pytest.fixture
def venue(live_database: BenchDatabase) -> Iterator[Venue]:
    with field_server(live_database, Venue) as served:
        yield served


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    opened = LocalStore.open(tmp_path / "scanner")
    yield opened
    opened.close()


def _enrolled(venue: Venue, store: LocalStore) -> tuple[SyncEngine, uuid.UUID]:
    scanner_clock = ScannerClock(venue.clock)
    enrollment = enroll(
        store,
        SERVER_URL,
        venue.enrollment_code(),
        "North",
        clock=scanner_clock,
        client_factory=venue.client_factory,
    )
    engine = SyncEngine(
        store,
        clock=scanner_clock,
        client_factory=venue.client_factory,
        interval_seconds=INTERVAL_S,
    )
    return engine, enrollment.device_id


def test_the_device_list_shows_what_the_scanner_has_and_when_it_stopped_syncing(
    venue: Venue, store: LocalStore
) -> None:
    engine, device_id = _enrolled(venue, store)
    first = engine.sync_once()
    assert first.ok, first.errors
    assert first.heartbeat_sent

    device = venue.device(device_id)
    assert device["online"] is True
    assert device["queued_scans"] == 0
    assert device["clock_offset_ms"] == engine.status().clock_offset_ms == 90_000
    assert device["app_version"] == importlib.metadata.version("gatehouse")
    assert device["sync_interval_seconds"] == INTERVAL_S
    assert device["lab_mode"] is False
    # The heartbeat goes before the feed: the check-in setup the first sync brought is
    # reported by the next.
    assert device["setup_version"] is None
    assert engine.sync_once().ok
    synced_at = venue.clock.now()
    with store.read() as conn:
        held = load_setup(conn)
    assert held is not None
    assert venue.device(device_id)["setup_version"] == held.version
    assert device["status"].startswith("Online")

    # The network goes; the gate admits offline and queues; a minute passes without contact.
    venue.reachable = False
    gate = Gate(store, clock=ScannerClock(venue.clock))
    scanned_at = venue.clock.now()
    for code in venue.sold:
        assert gate.scan(code).admitted
        venue.clock.advance(10)
    assert not engine.sync_once().ok
    venue.clock.advance(31)
    device = venue.device(device_id)
    assert device["online"] is False
    assert device["status"].startswith("Offline: no contact for 1 min")
    assert device["queued_scans"] == 0  # what it said last: nothing since

    # It comes back, but the server cannot take uploads yet: the list shows its queue.
    venue.reachable = True
    venue.uploads_fail = True
    assert not engine.sync_once().ok
    with store.read() as conn:
        queued = queue_length(conn)
    assert queued == len(venue.sold)
    device = venue.device(device_id)
    assert device["online"] is True
    assert device["queued_scans"] == queued
    assert datetime.fromisoformat(device["oldest_queued_at"]) == scanned_at
    assert f"{queued} scans not yet uploaded" in device["status"]

    # The upload goes through: the queue is empty, here and in the list.
    venue.uploads_fail = False
    report = engine.sync_once()
    assert report.ok, report.errors
    assert report.uploaded == len(venue.sold)
    device = venue.device(device_id)
    assert (device["online"], device["queued_scans"], device["oldest_queued_at"]) == (
        True,
        0,
        None,
    )
    # Its last sync that went through before this one, in server time.
    assert datetime.fromisoformat(device["last_sync_at"]) == synced_at


def test_a_server_without_the_heartbeat_syncs_as_before(venue: Venue, store: LocalStore) -> None:
    """An older server answers 404 to the heartbeat: the sync goes on, the queue uploads."""
    venue.heartbeat_known = False
    engine, device_id = _enrolled(venue, store)
    assert engine.sync_once().ok
    gate = Gate(store, clock=ScannerClock(venue.clock))
    venue.reachable = False
    assert gate.scan(venue.sold[0]).admitted
    venue.reachable = True

    report = engine.sync_once()

    assert report.ok, report.errors
    assert not report.heartbeat_sent
    assert report.uploaded == 1
    assert report.pages >= 1  # the feed came after the refused heartbeat
    assert "/v1/devices/me/heartbeat" in venue.seen
    device = venue.device(device_id)
    assert device["online"] is True  # its sync is contact
    assert device["heartbeat_at"] is None


def test_the_heartbeat_goes_each_sync_after_the_upload_and_before_it_with_a_queue(
    venue: Venue, store: LocalStore
) -> None:
    engine, _ = _enrolled(venue, store)
    assert engine.sync_once().ok
    venue.seen.clear()
    assert engine.sync_once().ok  # nothing queued: one heartbeat, after the upload step
    assert venue.seen.count("/v1/devices/me/heartbeat") == 1
    venue.reachable = False
    assert Gate(store, clock=ScannerClock(venue.clock)).scan(venue.sold[0]).admitted
    venue.reachable = True
    venue.seen.clear()
    venue.beats.clear()
    assert engine.sync_once().ok
    # Back with a queue: what it brought back is reported before the upload drains it, and
    # what is left (nothing) after.
    beats = [i for i, path in enumerate(venue.seen) if path.endswith("/heartbeat")]
    assert len(beats) == 2
    assert beats[0] < venue.seen.index("/v1/sync/scans") < beats[1]
    assert [beat["queued_scans"] for beat in venue.beats] == [1, 0]


def test_no_heartbeat_follows_an_upload_the_link_dropped(venue: Venue, store: LocalStore) -> None:
    """The connection went during the upload: the sync stops there, without waiting on a
    heartbeat that would meet the same dead link; the queue stays for the next sync."""
    engine, _ = _enrolled(venue, store)
    assert engine.sync_once().ok
    venue.reachable = False
    assert Gate(store, clock=ScannerClock(venue.clock)).scan(venue.sold[0]).admitted
    venue.reachable = True
    venue.uploads_lost = True
    venue.seen.clear()

    report = engine.sync_once()

    assert not report.ok
    # The heartbeat before the upload said what was queued; none followed the dropped link.
    assert venue.seen == ["/v1/devices/me", "/v1/devices/me/heartbeat"]
    with store.read() as conn:
        assert queue_length(conn) == 1
