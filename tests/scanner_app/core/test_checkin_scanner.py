"""The scanner's side of check-in lists apart from the gate's verdicts (tests/scanner_app/core/
test_gate.py and the corpus run): the scan log filtered by list and zone, who is inside each
zone, what the gate scans as the screen names it, and when the status says the lists may be
out of date."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from scanner_app.core.checkin import (
    STALE_AFTER_MIN,
    access_plan,
    gate_label,
    setup_is_stale,
    setup_note,
)
from scanner_app.core.gate import Gate
from scanner_app.core.session import device_status
from scanner_app.core.standalone import load_tickets, set_up_standalone
from scanner_app.core.store import LocalStore
from scanner_app.core.store.cache import inside_now
from scanner_app.core.store.scanlog import HolderNames, ScanFilter, log_page
from scanner_app.core.store.setup import StoredSetup, load_setup
from scanner_app.core.store.state import SyncState, save_sync_state
from scanner_app.core.sync.engine import apply_page
from shared import wire
from shared.checkin_lists import GENERAL_AREA
from shared.clock import ManualClock
from shared.domain import Direction, TicketStatus
from shared.ids import new_id
from shared.keys import IssuerKeyRing
from shared.ticket_code import issue_code
from testkit.names import name_secret_of, sealed_holder

NOW = datetime(2026, 6, 6, 18, 0, tzinfo=UTC)
MAIN = uuid.UUID(int=0xA1)
ARENA = uuid.UUID(int=0xA2)
BACKSTAGE = uuid.UUID(int=0xA3)


@dataclass
class Site:
    store: LocalStore
    clock: ManualClock
    issuer: IssuerKeyRing
    event_id: uuid.UUID

    def setup(self, version: int = 1) -> wire.CheckinSetup:
        def listed(
            list_id: uuid.UUID, name: str, gates: list[str], zone: str | None
        ) -> wire.CheckinListOut:
            return wire.CheckinListOut(
                id=list_id,
                event_id=self.event_id,
                name=name,
                ticket_type_ids=[],
                gates=gates,
                zone=zone,
            )

        return wire.CheckinSetup(
            event_id=self.event_id,
            version=version,
            time_zone="Europe/Berlin",
            ticket_types=[wire.TicketTypeDays(id="tt-ga", name="General admission")],
            lists=[
                listed(MAIN, "Main", ["Main"], None),
                listed(ARENA, "Arena", ["Arena gate"], "Arena"),
                listed(BACKSTAGE, "Backstage", ["Main"], "Backstage"),
            ],
        )

    def feed(self, changes: list[wire.Change], setup: wire.CheckinSetup | None = None) -> None:
        page = wire.ChangesPage(
            changes=changes,
            next_cursor="c",
            has_more=False,
            server_time=self.clock.now(),
            checkin_setup=setup,
            checkin_setup_version=setup.version if setup else 0,
        )
        with self.store.write() as conn:
            apply_page(conn, self.store.sealer, page, event_id=self.event_id, now=self.clock.now())

    def ticket(self) -> uuid.UUID:
        ticket_id = new_id()
        load_tickets(
            self.store,
            [
                wire.TicketChange(
                    ticket_id=ticket_id,
                    event_id=self.event_id,
                    status=TicketStatus.ACTIVE,
                    secret_version=1,
                    ticket_type="General admission",
                    sealed_holder=sealed_holder(ticket_id, "Ada", 1),
                    ticket_type_id="tt-ga",
                )
            ],
            self.clock.now(),
        )
        return ticket_id

    def code(self, ticket_id: uuid.UUID) -> str:
        return issue_code(
            self.issuer,
            ticket_id=ticket_id,
            event_id=self.event_id,
            secret_version=1,
            issued_at=NOW - timedelta(days=3),
            name_secret=name_secret_of(ticket_id),
        )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    store = LocalStore.open(tmp_path / "scanner")
    clock = ManualClock(NOW)
    issuer = IssuerKeyRing.generate()
    gate_event = wire.GateEvent(
        event_id=new_id(),
        name="Festival",
        venue="Park",
        starts_at=NOW - timedelta(hours=2),
        ends_at=NOW + timedelta(hours=8),
    )
    set_up_standalone(store, gate_event=gate_event, keys=issuer.scanner_ring, gate="Main", now=NOW)
    yield Site(store, clock, issuer, gate_event.event_id)
    store.close()


def test_the_scan_log_filters_by_list_and_by_zone(site: Site) -> None:
    site.feed([], site.setup())
    in_arena, before_lists = site.ticket(), site.ticket()
    peers = {
        "arena": wire.AdmissionChange(
            scan_id=new_id(),
            ticket_id=in_arena,
            gate="Arena gate",
            direction=Direction.ENTRY,
            scanned_at=NOW - timedelta(minutes=20),
            checkin_list_id=ARENA,
            zone="Arena",
        ),
        "before lists": wire.AdmissionChange(
            scan_id=new_id(),
            ticket_id=before_lists,
            gate="South",
            direction=Direction.ENTRY,
            scanned_at=NOW - timedelta(minutes=30),
        ),
    }
    site.feed(list(peers.values()))
    own = Gate(site.store, clock=site.clock).scan(site.code(site.ticket()))
    assert own.admitted
    assert own.list_name == "Main"  # the first list at Main by id (decide's order)
    general = Gate(site.store, clock=site.clock)
    site.clock.advance(10)
    labels = {
        peers["arena"].scan_id: "arena",
        peers["before lists"].scan_id: "before lists",
        own.verdict.scan_id: "own",
    }

    def shown(flt: ScanFilter) -> list[str]:
        with site.store.read() as conn:
            return [labels[e.scan.scan_id] for e in log_page(conn, HolderNames(), flt)]

    assert shown(ScanFilter()) == ["own", "arena", "before lists"]
    assert shown(ScanFilter(lists=frozenset({ARENA}))) == ["arena"]
    assert shown(ScanFilter(lists=frozenset({MAIN}))) == ["own"]
    assert shown(ScanFilter(lists=frozenset({BACKSTAGE}))) == []
    assert shown(ScanFilter(zones=frozenset({"Arena"}))) == ["arena"]
    assert shown(ScanFilter(zones=frozenset({"Backstage", "Arena"}))) == ["arena"]
    # The general area: scans on a list without a zone, not scans from before lists.
    assert shown(ScanFilter(zones=frozenset({GENERAL_AREA}))) == ["own"]
    assert shown(ScanFilter(zones=frozenset({GENERAL_AREA, "Arena"}))) == ["own", "arena"]
    with site.store.read() as conn:
        entries = log_page(conn, HolderNames(), ScanFilter(lists=frozenset({ARENA})))
        assert (entries[0].scan.checkin_list_id, entries[0].scan.zone) == (ARENA, "Arena")
        assert inside_now(conn) == {"Arena": 1, GENERAL_AREA: 2}
    assert general.access is not None


def test_the_status_names_what_the_gate_scans_and_who_is_inside_each_zone(site: Site) -> None:
    status = device_status(site.store, NOW)
    assert (status.lists_note, status.gate_lists, status.inside_by_zone) == ("", None, {})
    site.feed([], site.setup())
    Gate(site.store, clock=site.clock).scan(site.code(site.ticket()))
    status = device_status(site.store, NOW)
    assert status.gate_lists == "Main / Backstage lists · General area / Backstage"
    assert status.inside_by_zone == {GENERAL_AREA: 1}
    assert status.lists_note.startswith("Lists v1 (")
    assert not status.lists_stale  # a device without a server is nobody's out of date copy
    assert ("inside by zone", "General area 1") in status.lines()


def test_the_gate_label_names_the_one_list_and_its_zone(site: Site) -> None:
    site.feed([], site.setup())
    with site.store.read() as conn:
        stored = load_setup(conn)
    access = access_plan(
        wire.GateEvent(event_id=site.event_id, name="F", venue="P", starts_at=NOW, ends_at=NOW),
        stored,
    )
    assert gate_label(access, "Arena gate") == "Arena list · Arena"
    assert gate_label(access, "Nowhere") is None
    assert gate_label(None, "Main") is None


def _stored(version: int, site: Site) -> StoredSetup:
    return StoredSetup(setup=site.setup(version), received_at=NOW - timedelta(hours=1))


def test_lists_may_be_out_of_date_when_the_server_has_another_version_or_no_recent_sync(
    site: Site,
) -> None:
    def note(
        stored: StoredSetup | None,
        server: int | None,
        last_sync: datetime | None,
        *,
        has_server: bool = True,
    ) -> tuple[str, bool]:
        return setup_note(
            stored=stored,
            server_version=server,
            has_server=has_server,
            last_sync_at=last_sync,
            now=NOW,
            interval_seconds=5.0,
        )

    fresh = NOW - timedelta(seconds=10)
    assert note(None, None, fresh) == ("", False)  # an event that never had lists
    assert note(None, 0, fresh) == ("", False)
    assert note(None, 3, fresh) == (
        "Check-in lists not received yet: lists may be out of date",
        True,
    )
    text, warn = note(_stored(2, site), 2, fresh)
    assert text.startswith("Lists v2 (")
    assert not warn
    text, warn = note(_stored(2, site), 3, fresh)
    assert text.endswith(", server has v3: lists may be out of date")
    assert warn
    text, warn = note(_stored(2, site), 2, NOW - STALE_AFTER_MIN - timedelta(seconds=1))
    assert text.endswith(": no recent sync, lists may be out of date")
    assert warn
    assert note(_stored(2, site), 2, None)[1]  # never synced
    assert not note(_stored(2, site), None, None, has_server=False)[1]


def test_stale_means_three_sync_intervals_and_at_least_a_minute() -> None:
    def stale(seconds: float, interval: float) -> bool:
        return setup_is_stale(
            last_sync_at=NOW - timedelta(seconds=seconds), now=NOW, interval_seconds=interval
        )

    assert not stale(60, 5)
    assert stale(61, 5)
    assert not stale(90, 30)
    assert stale(91, 30)


def test_the_status_warns_when_a_synced_device_has_an_older_setup(site: Site) -> None:
    site.feed([], site.setup(1))
    with site.store.write() as conn:
        conn.exec_driver_sql("UPDATE device SET server_url = 'https://gatehouse.example'")
        save_sync_state(conn, SyncState(last_sync_at=NOW, server_setup_version=2))
    status = device_status(site.store, NOW + timedelta(seconds=5))
    assert status.lists_stale
    assert "server has v2" in status.lists_note
    with site.store.write() as conn:
        save_sync_state(
            conn, msgspec.structs.replace(SyncState(last_sync_at=NOW), server_setup_version=1)
        )
    assert not device_status(site.store, NOW + timedelta(seconds=5)).lists_stale
