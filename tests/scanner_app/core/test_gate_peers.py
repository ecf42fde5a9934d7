"""The gate and peer sync (issue 18): every local admission, exit and undo is a record in the
scan's own transaction, announced after the commit; records a peer sent decide later scans like
the feed's other-gate admissions ("Already checked in at 20:14 at South")."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest

from scanner_app.core.gate import Gate, GateVerdict
from scanner_app.core.session import PeerOptions, ScanSession, device_status
from scanner_app.core.store import LocalStore
from scanner_app.core.store.cache import admissions_of, apply_changes
from scanner_app.core.store.peers import peer_digest, save_peer_credentials, store_peer_record
from scanner_app.core.store.state import (
    Enrollment,
    GateSettings,
    load_enrollment,
    save_enrollment,
    save_event,
    save_settings,
)
from shared import wire
from shared.domain import Direction, VerdictReason, VerdictResult
from shared.ids import new_id
from shared.peers import Opened, RecordKind, Refusal
from testkit.peers import TestEvent
from tests.scanner_app.core.test_gate import Venue, _open_venue


@dataclass
class Scanner:
    """One gate of the event with its peer credentials; what it announced, in order."""

    store: LocalStore
    gate: Gate
    device_id: uuid.UUID
    name: str
    announced: list[bytes] = field(default_factory=list)


@dataclass
class Event:
    venue: Venue
    peers: TestEvent
    scanners: list[Scanner] = field(default_factory=list)

    def scanner(self, data_dir: Path, name: str, *, device_id: uuid.UUID | None = None) -> Scanner:
        """A scanner of this event at gate ``name`` (North is the venue's own store)."""
        venue = self.venue
        if device_id is None:
            store = LocalStore.open(data_dir)
            device_id = new_id()
            with store.write() as conn:
                save_enrollment(
                    conn,
                    Enrollment(
                        device_id=device_id,
                        name=f"{name} scanner",
                        server_url="https://gatehouse.example",
                        tenant_id=self.peers.tenant_id,
                        event_id=venue.gate_event.event_id,
                        gate=name,
                        enrolled_at=venue.clock.now(),
                    ),
                )
                save_event(conn, venue.gate_event)
            with venue.store.read() as source:
                keys = source.exec_driver_sql("SELECT * FROM keys").fetchall()
            with store.write() as conn:
                for row in keys:
                    marks = ", ".join("?" * len(row))
                    conn.exec_driver_sql(f"INSERT OR IGNORE INTO keys VALUES ({marks})", tuple(row))
        else:
            store = venue.store
        _, credentials = self.peers.device(venue.clock.now(), device_id=device_id, gate=name)
        with store.write() as conn:
            save_peer_credentials(
                conn, store.sealer, credentials, venue.clock.now() + timedelta(days=1)
            )
        gate = Gate(store, clock=venue.clock)
        scanner = Scanner(store, gate, device_id, name)
        gate.set_announcer(scanner.announced.append)
        self.scanners.append(scanner)
        return scanner

    def deliver(self, envelope: bytes, to: Scanner) -> Opened | Refusal:
        """What the receiving node does: open under the event's trust, store if it passes."""
        opened = self.peers.trust().open(envelope, self.venue.clock.now())
        if isinstance(opened, Opened):
            with to.store.write() as conn:
                store_peer_record(conn, to.store.sealer, opened, self.venue.clock.now())
        return opened


@pytest.fixture
def event(tmp_path: Path) -> Iterator[Event]:
    venue = _open_venue(tmp_path / "north", allow_reentry=True)
    # The event's issuer certifies for the venue's tenant and event.
    with venue.store.read() as conn:
        enrollment = load_enrollment(conn)
    assert enrollment is not None
    peers = TestEvent(tenant_id=enrollment.tenant_id, event_id=venue.gate_event.event_id)
    made = Event(venue, peers)
    yield made
    for scanner in made.scanners:
        if scanner.store is not venue.store:
            scanner.store.close()
    venue.store.close()


def _opened(event: Event, envelope: bytes) -> Opened:
    opened = event.peers.trust().open(envelope, event.venue.clock.now())
    assert isinstance(opened, Opened), opened
    return opened


def test_an_offline_admission_is_announced_after_it_is_recorded(
    event: Event, tmp_path: Path
) -> None:
    north = event.scanner(tmp_path, "North", device_id=event.venue.device_id)
    ticket_id = event.venue.ticket()
    verdict = north.gate.scan(event.venue.code(ticket_id))
    assert verdict.admitted
    assert len(north.announced) == 1
    record = _opened(event, north.announced[0]).record
    assert record.kind is RecordKind.ADMISSION
    assert (record.origin, record.seq, record.gate) == (north.device_id, 1, "North")
    assert (record.scan_id, record.ticket_id) == (verdict.verdict.scan_id, ticket_id)
    # A refusal tells the peers nothing.
    event.venue.clock.advance(10)
    assert not north.gate.scan(event.venue.code(ticket_id)).admitted
    assert len(north.announced) == 1


def test_a_gossiped_admission_is_refused_naming_the_time_and_gate(
    event: Event, tmp_path: Path
) -> None:
    north = event.scanner(tmp_path, "North", device_id=event.venue.device_id)
    south = event.scanner(tmp_path / "south", "South")
    ticket_id = event.venue.ticket()
    code = event.venue.code(ticket_id)
    first = south.gate.scan(code)
    assert first.admitted
    assert isinstance(event.deliver(south.announced[0], north), Opened)
    second = north.gate.scan(code)
    assert second.verdict.result is VerdictResult.REJECTED
    assert second.verdict.reason is VerdictReason.ALREADY_CHECKED_IN
    when = first.verdict.scanned_at
    assert when is not None
    assert second.sentence == f"Already checked in at {when.astimezone():%H:%M} at South."
    prior = second.verdict.prior
    assert prior is not None
    assert (prior.scan_id, prior.gate) == (first.verdict.scan_id, "South")


def test_a_gossiped_exit_lets_the_person_back_in_where_reentry_is_allowed(
    event: Event, tmp_path: Path
) -> None:
    north = event.scanner(tmp_path, "North", device_id=event.venue.device_id)
    south = event.scanner(tmp_path / "south", "South")
    ticket_id = event.venue.ticket()
    code = event.venue.code(ticket_id)
    assert south.gate.scan(code).admitted
    event.venue.clock.advance(60)
    out = south.gate.scan(code, direction=Direction.EXIT)
    assert out.admitted
    assert [_opened(event, e).record.kind for e in south.announced] == [
        RecordKind.ADMISSION,
        RecordKind.EXIT,
    ]
    for envelope in south.announced:
        event.deliver(envelope, north)
    event.venue.clock.advance(60)
    back = north.gate.scan(code)
    assert back.admitted
    assert back.reentry


def test_an_undo_is_announced_and_frees_the_ticket_at_the_peer(
    event: Event, tmp_path: Path
) -> None:
    north = event.scanner(tmp_path, "North", device_id=event.venue.device_id)
    south = event.scanner(tmp_path / "south", "South")
    ticket_id = event.venue.ticket()
    code = event.venue.code(ticket_id)
    admitted = south.gate.scan(code)
    scan_id = admitted.verdict.scan_id
    assert scan_id is not None
    assert south.gate.annul(scan_id)
    undo = _opened(event, south.announced[-1]).record
    assert (undo.kind, undo.scan_id, undo.ticket_id, undo.seq) == (
        RecordKind.UNDO,
        scan_id,
        ticket_id,
        2,
    )
    for envelope in south.announced:
        event.deliver(envelope, north)
    assert north.gate.scan(code).admitted


def test_an_online_verdict_is_told_to_the_peers_too(event: Event, tmp_path: Path) -> None:
    venue = event.venue
    ticket_id = venue.ticket()

    def server(request: wire.ValidateRequest) -> wire.Verdict:
        return wire.Verdict(
            result=VerdictResult.ADMITTED,
            reason=None,
            scan_id=request.scan_id,
            direction=request.direction,
            gate="North",
            scanned_at=request.scanned_at,
            ticket_id=ticket_id,
            event_id=venue.gate_event.event_id,
        )

    north = event.scanner(tmp_path, "North", device_id=venue.device_id)
    online = Gate(venue.store, clock=venue.clock, online=server, is_online=lambda: True)
    online.set_announcer(north.announced.append)
    verdict = online.scan(venue.code(ticket_id))
    assert verdict.mode == "online"
    assert verdict.admitted
    record = _opened(event, north.announced[0]).record
    assert (record.kind, record.scan_id) == (RecordKind.ADMISSION, verdict.verdict.scan_id)


def test_an_admission_heard_by_gossip_and_then_by_the_feed_counts_once(
    event: Event, tmp_path: Path
) -> None:
    north = event.scanner(tmp_path, "North", device_id=event.venue.device_id)
    south = event.scanner(tmp_path / "south", "South")
    ticket_id = event.venue.ticket()
    first = south.gate.scan(event.venue.code(ticket_id))
    event.deliver(south.announced[0], north)
    assert first.verdict.scanned_at is not None
    _feed_echo(event.venue, first, ticket_id, south.device_id)  # the same scan, by the feed
    with north.store.read() as conn:
        known = admissions_of(conn, north.store.sealer.lookup(ticket_id))
    assert [a.scan_id for a in known] == [first.verdict.scan_id]


def _feed_echo(venue: Venue, verdict: GateVerdict, ticket_id: uuid.UUID, device: uuid.UUID) -> None:
    assert verdict.verdict.scan_id is not None
    assert verdict.verdict.scanned_at is not None
    change = wire.AdmissionChange(
        scan_id=verdict.verdict.scan_id,
        ticket_id=ticket_id,
        gate="South",
        direction=Direction.ENTRY,
        scanned_at=verdict.verdict.scanned_at,
        device_id=device,
    )
    with venue.store.write() as conn:
        apply_changes(conn, venue.store.sealer, [change], venue.clock.now())


def test_a_gate_with_peer_sync_off_makes_no_records(event: Event, tmp_path: Path) -> None:
    north = event.scanner(tmp_path, "North", device_id=event.venue.device_id)
    with north.store.write() as conn:
        save_settings(conn, msgspec.structs.replace(GateSettings(), peer_sync=False))
    north.gate.reload()
    assert north.gate.scan(event.venue.code(event.venue.ticket())).admitted
    assert north.announced == []
    with north.store.read() as conn:
        assert peer_digest(conn) == {}


# --- the session starts and stops the node ------------------------------------------------------


def test_a_scanning_session_runs_the_node_beside_it(event: Event, tmp_path: Path) -> None:
    north = event.scanner(tmp_path, "North", device_id=event.venue.device_id)
    changed = threading.Event()
    session = ScanSession.open(
        north.store,
        online=False,
        background_sync=False,
        clock=event.venue.clock,
        peers=PeerOptions(port=0, discover=False, listen_host="127.0.0.1"),
        on_peer_change=changed.set,
    )
    try:
        assert session.peers is not None
        assert session.peers_heard() == 0  # starting, or started: nobody to hear
        assert changed.wait(30), "the node never said it started"
        node = session.node
        assert node is not None
        assert node.port
        # The gate announces through the node now; a scan is recorded either way.
        assert session.scan_text(event.venue.code(event.venue.ticket())).admitted
    finally:
        session.close()
    assert session.node is None


def test_no_node_runs_when_peer_sync_is_off_for_the_run(event: Event, tmp_path: Path) -> None:
    north = event.scanner(tmp_path, "North", device_id=event.venue.device_id)
    session = ScanSession.open(
        north.store,
        online=False,
        background_sync=False,
        peers=PeerOptions(enabled=False),
    )
    try:
        assert session.peers is None
        assert session.peers_heard() is None
        status = device_status(north.store, session=True, peers_heard=session.peers_heard())
        assert status.peers == "Peer sync off"
    finally:
        session.close()
    # Outside a session, the status says what scanning would do.
    assert device_status(north.store).peers == "On while scanning"
