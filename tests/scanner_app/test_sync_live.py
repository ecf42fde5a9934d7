"""Scanners against a real server process: enrollment, online and offline verdicts, the server
going away and coming back, and two gates that both let the same ticket in while offline."""

from __future__ import annotations

import os
import stat
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from benchmarks.server_harness import BenchDatabase, Secrets
from scanner_app.core.gate import Gate
from scanner_app.core.store import LocalStore
from scanner_app.core.store.cache import ticket_count
from scanner_app.core.store.database import DATABASE_FILE
from scanner_app.core.store.device_token import TOKEN_FILE
from scanner_app.core.store.scanlog import conflicts, find_scan, gate_counts, local_scans
from scanner_app.core.store.scans import (
    NEVER_SHOWN,
    PendingOnline,
    begin_online,
    queue_length,
    unresolved_online,
)
from scanner_app.core.store.state import GateSettings, save_settings
from scanner_app.core.sync.engine import TOKEN_REFUSED, SyncEngine, enroll
from shared import wire
from shared.domain import Direction, VerdictReason, VerdictResult
from shared.ids import new_id
from tests.scanner_app.live_server import BackOffice, LiveServer

pytestmark = [pytest.mark.integration]

#: How long ago a killed app asked its last online question: longer than any sync takes a
#: question for one still in flight (ten seconds).
DEAD_SINCE = timedelta(seconds=30)
#: How old a question from before an engine started must be for its syncs to resolve it.
IN_FLIGHT = timedelta(seconds=2.1)


class Scanner:
    """One enrolled scanner: its store, sync engine and gate, as the app wires them."""

    def __init__(self, data_dir: Path, server: LiveServer, code: str, name: str) -> None:
        self.store = LocalStore.open(data_dir)
        self.enrollment = enroll(self.store, server.url, code, name)
        with self.store.write() as conn:
            # A person presenting the code again at once is a new scan in these tests.
            save_settings(conn, GateSettings(debounce_seconds=0))
        self.engine = SyncEngine(self.store)
        self.gate = Gate(
            self.store, online=self.engine.online_check, is_online=self.engine.is_online
        )
        self.engine.set_data_listener(self.gate.reload)

    def sync(self) -> None:
        report = self.engine.sync_once()
        assert report.ok, report.errors

    def close(self) -> None:
        self.engine.stop()
        self.store.close()


@pytest.fixture
def scanners() -> Iterator[list[Scanner]]:
    made: list[Scanner] = []
    yield made
    for scanner in made:
        scanner.close()


def _scanner(
    made: list[Scanner],
    tmp_path: Path,
    server: LiveServer,
    office: BackOffice,
    event_id: uuid.UUID,
    gate: str,
) -> Scanner:
    enrollment = office.create_enrollment(event_id, gate=gate)
    scanner = Scanner(tmp_path / gate.replace(" ", "-"), server, enrollment.code, f"{gate} scanner")
    made.append(scanner)
    return scanner


def test_enrolled_scanner_caches_the_event_and_admits_online(
    tmp_path: Path, live_server: LiveServer, back_office: BackOffice, scanners: list[Scanner]
) -> None:
    sale = back_office.event_on_sale(tickets=3)
    north = _scanner(scanners, tmp_path, live_server, back_office, sale.event_id, "North 1")
    north.sync()
    with north.store.read() as conn:
        assert ticket_count(conn) == 3

    verdict = north.gate.scan(sale.tickets[0].code)

    assert verdict.mode == "online"
    assert verdict.verdict.result is VerdictResult.ADMITTED
    assert verdict.verdict.holder_name == sale.tickets[0].holder_name
    server_scans = back_office.scans(sale.event_id)
    assert [s.id for s in server_scans] == [verdict.verdict.scan_id]
    with north.store.read() as conn:
        assert queue_length(conn) == 0  # on the server already
        assert verdict.verdict.scan_id is not None
        logged = find_scan(conn, verdict.verdict.scan_id)
    assert logged is not None
    assert logged.mode == "online"


def test_scanning_goes_on_without_the_server_and_the_queue_drains_when_it_returns(
    tmp_path: Path, live_server: LiveServer, back_office: BackOffice, scanners: list[Scanner]
) -> None:
    sale = back_office.event_on_sale(tickets=4)
    north = _scanner(scanners, tmp_path, live_server, back_office, sale.event_id, "North 1")
    south = _scanner(scanners, tmp_path, live_server, back_office, sale.event_id, "South 2")
    north.sync()
    south.sync()
    # South admits ticket 3 online; North has not synced since, so it does not know.
    assert south.gate.scan(sale.tickets[3].code).mode == "online"

    live_server.stop()
    offline = [north.gate.scan(ticket.code) for ticket in sale.tickets]

    assert [v.mode for v in offline] == ["offline"] * 4
    assert all(v.verdict.result is VerdictResult.ADMITTED for v in offline)
    status = north.engine.status()
    assert not status.online
    assert status.offline_reason
    assert status.queued == 4

    live_server.start()
    north.sync()

    status = north.engine.status()
    assert status.online
    assert status.queued == 0
    on_server = {s.id: s for s in back_office.scans(sale.event_id)}
    assert {v.verdict.scan_id for v in offline} <= on_server.keys()
    assert len(on_server) == 5  # four from North, one from South: each exactly once
    # The server found North's admission of ticket 3 to be a double entry: the device knows.
    double = offline[3].verdict.scan_id
    assert double is not None
    assert on_server[double].conflict_of is not None
    with north.store.read() as conn:
        found = conflicts(conn)
    assert [c.scan_id for c in found] == [double]
    assert found[0].conflict_of == on_server[double].conflict_of
    assert status.conflicts == 1


def test_two_offline_gates_admit_one_ticket_and_both_learn_of_the_double_entry(
    tmp_path: Path, live_server: LiveServer, back_office: BackOffice, scanners: list[Scanner]
) -> None:
    sale = back_office.event_on_sale(tickets=2)
    north = _scanner(scanners, tmp_path, live_server, back_office, sale.event_id, "North 1")
    south = _scanner(scanners, tmp_path, live_server, back_office, sale.event_id, "South 2")
    north.sync()
    south.sync()
    code = sale.tickets[0].code

    live_server.stop()
    first = north.gate.scan(code)
    time.sleep(0.05)  # South's admission is later, by both clocks
    second = south.gate.scan(code)
    assert (first.verdict.result, first.mode) == (VerdictResult.ADMITTED, "offline")
    assert (second.verdict.result, second.mode) == (VerdictResult.ADMITTED, "offline")

    live_server.start()
    # Upload order is the wrong way round on purpose: the earlier admission still wins.
    south.sync()
    north.sync()
    south.sync()

    for scanner in (north, south):
        with scanner.store.read() as conn:
            known = conflicts(conn)
        assert [(c.scan_id, c.conflict_of) for c in known] == [
            (second.verdict.scan_id, first.verdict.scan_id)
        ], scanner.enrollment.gate

    for scanner in (north, south):
        third = scanner.gate.scan(code)
        assert third.verdict.result is VerdictResult.REJECTED
        assert third.verdict.reason is VerdictReason.ALREADY_CHECKED_IN
        assert third.verdict.prior is not None
        assert third.verdict.prior.gate == "North 1"
        assert third.verdict.prior.scan_id == first.verdict.scan_id


def test_a_conflict_a_manager_resolves_is_resolved_on_both_gates(
    tmp_path: Path, live_server: LiveServer, back_office: BackOffice, scanners: list[Scanner]
) -> None:
    sale = back_office.event_on_sale(tickets=2)
    north = _scanner(scanners, tmp_path, live_server, back_office, sale.event_id, "North 1")
    south = _scanner(scanners, tmp_path, live_server, back_office, sale.event_id, "South 2")
    north.sync()
    south.sync()
    code = sale.tickets[0].code
    live_server.stop()
    first = north.gate.scan(code)
    time.sleep(0.05)  # South's admission is later, by both clocks
    second = south.gate.scan(code)
    assert (first.mode, second.mode) == ("offline", "offline")
    assert second.verdict.scan_id is not None
    live_server.start()
    for scanner in (north, south, north):
        scanner.sync()
    for scanner in (north, south):
        with scanner.store.read() as conn:
            assert [c.scan_id for c in conflicts(conn)] == [second.verdict.scan_id]
            assert sum(c.conflicts for c in gate_counts(conn)) == 1
        assert scanner.engine.status().conflicts == 1

    resolved = back_office.resolve_conflict(second.verdict.scan_id, note="Known re-entry")
    assert resolved.resolution == "accepted"
    assert back_office.stats(sale.event_id).conflicts == 0

    for scanner in (north, south):
        scanner.sync()
        with scanner.store.read() as conn:
            assert conflicts(conn) == [], scanner.enrollment.gate
            assert sum(c.conflicts for c in gate_counts(conn)) == 0
            # Both admissions stand: each gate counts two entries of the ticket.
            assert sum(c.entries for c in gate_counts(conn)) == 2
            logged = find_scan(conn, second.verdict.scan_id)
        assert logged is not None
        assert logged.conflict_of is None
        assert scanner.engine.status().conflicts == 0
        # The ticket is still inside: a third entry is refused as before.
        third = scanner.gate.scan(code)
        assert third.verdict.reason is VerdictReason.ALREADY_CHECKED_IN


def test_a_revoked_ticket_reaches_the_cache_and_is_refused_offline(
    tmp_path: Path, live_server: LiveServer, back_office: BackOffice, scanners: list[Scanner]
) -> None:
    sale = back_office.event_on_sale(tickets=2)
    north = _scanner(scanners, tmp_path, live_server, back_office, sale.event_id, "North 1")
    north.sync()
    back_office.revoke(sale.tickets[0].id)
    moved = back_office.transfer(sale.tickets[1].id)
    north.sync()

    live_server.stop()
    revoked = north.gate.scan(sale.tickets[0].code)
    old_code = north.gate.scan(sale.tickets[1].code)
    new_code = north.gate.scan(moved.code)

    assert revoked.verdict.reason is VerdictReason.REVOKED
    assert old_code.verdict.reason is VerdictReason.SUPERSEDED
    assert new_code.verdict.result is VerdictResult.ADMITTED
    assert new_code.verdict.holder_name == moved.holder_name
    with north.store.read() as conn:
        assert len(local_scans(conn)) == 3


def test_a_retired_keys_codes_are_refused_offline_and_the_new_code_admits(
    tmp_path: Path, live_server: LiveServer, back_office: BackOffice, scanners: list[Scanner]
) -> None:
    """Issue 14, item 13: after a lost scanner the manager retires the event's keys; a scanner
    that has synced since refuses codes made with them even with the server gone, and the
    ticket's new code admits."""
    sale = back_office.event_on_sale(tickets=1)
    ticket = sale.tickets[0]
    north = _scanner(scanners, tmp_path, live_server, back_office, sale.event_id, "North 1")
    north.sync()
    for key in back_office.keys(sale.event_id):
        if key.active:
            retired = back_office.retire_key(sale.event_id, key.key_id)
            assert retired.tickets_remaining == 0
    assert not any(k.active and k.retired_at for k in back_office.keys(sale.event_id))
    fresh = back_office.code(ticket.id)
    north.sync()

    live_server.stop()
    old_code = north.gate.scan(ticket.code)
    new_code = north.gate.scan(fresh.code)

    assert old_code.verdict.reason is VerdictReason.UNKNOWN_KEY
    assert new_code.verdict.result is VerdictResult.ADMITTED


def test_a_gates_check_in_lists_reach_it_in_one_sync_and_decide_offline(
    tmp_path: Path, live_server: LiveServer, back_office: BackOffice, scanners: list[Scanner]
) -> None:
    """Issue 16: the manager's check-in lists reach the scanner through the feed within one
    sync, and its offline gate decides by them as the server does; a change to a list reaches
    it with the next sync."""
    sale = back_office.event_on_sale(tickets=1)
    vip_type = back_office.create_ticket_type(sale.event_id, name="VIP")
    (vip,) = back_office.buy(vip_type.id)
    (general,) = sale.tickets
    lounge = back_office.create_checkin_list(
        sale.event_id,
        name="VIP lounge",
        ticket_type_ids=[str(vip_type.id)],
        gates=["Lounge"],
        zone="lounge",
    )
    back_office.create_checkin_list(
        sale.event_id, name="Arena", ticket_type_ids=[str(sale.ticket_type.id)], gates=["Main"]
    )
    door = _scanner(scanners, tmp_path, live_server, back_office, sale.event_id, "Lounge")
    door.sync()

    live_server.stop()
    refused = door.gate.scan(general.code)
    admitted = door.gate.scan(vip.code)
    assert (refused.mode, refused.verdict.reason) == ("offline", VerdictReason.NOT_ON_LIST)
    assert refused.sentence == "General tickets enter at the Main gate."
    assert (admitted.mode, admitted.verdict.result) == ("offline", VerdictResult.ADMITTED)
    assert (admitted.list_name, admitted.enters_zone) == ("VIP lounge", "lounge")

    live_server.start()
    door.sync()  # uploads the two scans: the server records them as the gate decided
    on_server = {s.id: s for s in back_office.scans(sale.event_id)}
    assert refused.verdict.scan_id is not None
    assert admitted.verdict.scan_id is not None
    assert on_server[refused.verdict.scan_id].reason == VerdictReason.NOT_ON_LIST.value
    entry = on_server[admitted.verdict.scan_id]
    # The server's own opinion of the admission agrees (no server_reason), in the same zone.
    assert (entry.result, entry.server_reason, entry.zone) == (
        VerdictResult.ADMITTED.value,
        None,
        "lounge",
    )

    # The manager opens the lounge to general tickets: one sync later the gate admits them.
    back_office.change_checkin_list(
        sale.event_id, lounge.id, ticket_type_ids=[str(vip_type.id), str(sale.ticket_type.id)]
    )
    door.sync()
    live_server.stop()
    again = door.gate.scan(general.code)
    assert (again.mode, again.verdict.result) == ("offline", VerdictResult.ADMITTED)
    assert again.enters_zone == "lounge"


# --- a 401 from the server (issue 14) ---------------------------------------------------------


def test_a_server_with_a_new_secret_refuses_the_token_and_the_gate_admits_until_enrolled_again(
    tmp_path: Path,
    live_database: BenchDatabase,
    live_server: LiveServer,
    back_office: BackOffice,
    scanners: list[Scanner],
) -> None:
    sale = back_office.event_on_sale(tickets=3)
    north = _scanner(scanners, tmp_path, live_server, back_office, sale.event_id, "North 1")
    north.sync()
    # The server comes back with another JWT secret (rotated, or restored elsewhere): every
    # device token it handed out before is now "invalid_token", not "device_revoked".
    live_server.stop()
    rotated = LiveServer(
        live_database, Secrets(master_key=live_server.secrets.master_key), port=live_server.port
    )
    rotated.start()
    try:
        first = north.gate.scan(sale.tickets[0].code)  # asks online: 401
        report = north.engine.sync_once()

        assert (first.verdict.result, first.mode) == (VerdictResult.ADMITTED, "offline")
        assert report.errors == [TOKEN_REFUSED]
        status = north.engine.status()
        assert not status.revoked
        assert status.offline_reason == TOKEN_REFUSED
        assert status.queued == 1  # nothing recorded is dropped
        second = north.gate.scan(sale.tickets[1].code)
        assert (second.verdict.result, second.mode) == (VerdictResult.ADMITTED, "offline")

        # The way back: a manager's new code, enrolled on the same data folder.
        with BackOffice(rotated, back_office.tenant_id) as office:
            code = office.create_enrollment(sale.event_id, gate="North 1").code
            north.engine.stop()
            enroll(north.store, rotated.url, code, "North 1 again")
            north.engine = SyncEngine(north.store)
            north.sync()
            status = north.engine.status()
            assert status.online
            assert not status.revoked
            assert status.queued == 0
            on_server = {s.id for s in office.scans(sale.event_id)}
        assert {first.verdict.scan_id, second.verdict.scan_id} <= on_server
    finally:
        rotated.close()


def test_a_device_the_manager_revoked_admits_nobody(
    tmp_path: Path, live_server: LiveServer, back_office: BackOffice, scanners: list[Scanner]
) -> None:
    sale = back_office.event_on_sale(tickets=1)
    north = _scanner(scanners, tmp_path, live_server, back_office, sale.event_id, "North 1")
    north.sync()
    back_office.revoke_device(north.enrollment.device_id)

    report = north.engine.sync_once()
    verdict = north.gate.scan(sale.tickets[0].code)

    assert not report.ok
    assert north.engine.status().revoked
    assert verdict.verdict.result is VerdictResult.REJECTED
    assert verdict.verdict.reason is VerdictReason.DEVICE_REVOKED


# --- the token at rest (issue 14) -------------------------------------------------------------


def test_an_enrolled_scanners_token_is_in_a_0600_file_in_a_0700_folder_not_in_its_database(
    tmp_path: Path, live_server: LiveServer, back_office: BackOffice, scanners: list[Scanner]
) -> None:
    previous_umask = os.umask(0o022)  # the usual default: plain files would be 0644
    try:
        sale = back_office.event_on_sale(tickets=2)
        north = _scanner(scanners, tmp_path, live_server, back_office, sale.event_id, "North 1")
        north.sync()
        assert north.gate.scan(sale.tickets[0].code).verdict.result is VerdictResult.ADMITTED
    finally:
        os.umask(previous_umask)
    data_dir = north.store.path.parent
    north.store.checkpoint()

    token_file = data_dir / TOKEN_FILE
    token = token_file.read_text()
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(north.store.path).st_mode) == 0o600
    assert len(token) > 20
    # It is the token the server accepts (the sync above used it)...
    back_office_view = {d.id for d in back_office.devices(sale.event_id)}
    assert north.enrollment.device_id in back_office_view
    # ...and no byte of the database, its log or its shared memory holds it.
    for name in (DATABASE_FILE, f"{DATABASE_FILE}-wal", f"{DATABASE_FILE}-shm"):
        if (data_dir / name).exists():
            assert token.encode() not in (data_dir / name).read_bytes(), name


def test_the_managers_device_list_shows_the_queue_the_scanner_reports(
    tmp_path: Path, live_server: LiveServer, back_office: BackOffice, scanners: list[Scanner]
) -> None:
    """Issue 17 against the server process: each sync ends its upload with a heartbeat, so the
    device list says what the gate still holds — and once the queue is uploaded, that it holds
    nothing. (Online and offline as the server's clock moves: ``test_heartbeat.py``.)"""
    sale = back_office.event_on_sale(tickets=2)
    north = _scanner(scanners, tmp_path, live_server, back_office, sale.event_id, "North 1")
    north.sync()
    (listed,) = back_office.devices(sale.event_id)
    assert listed.online
    assert listed.queued_scans == 0
    assert listed.clock_offset_ms == north.engine.status().clock_offset_ms
    assert listed.app_version is not None

    live_server.stop()
    for ticket in sale.tickets:
        assert north.gate.scan(ticket.code).mode == "offline"
    assert north.engine.status().queued == 2
    live_server.start()
    north.sync()

    (listed,) = back_office.devices(sale.event_id)
    assert listed.online
    assert (listed.queued_scans, listed.oldest_queued_at) == (0, None)
    assert listed.heartbeat_at is not None
    assert listed.last_seen_at == listed.heartbeat_at


# --- an online verdict the app never showed ---------------------------------------------------


def _asked_then_killed(
    scanner: Scanner, code: str, asked_at: datetime, direction: Direction = Direction.ENTRY
) -> tuple[uuid.UUID, wire.Verdict]:
    """What a kill leaves of an online scan between the server's answer and its record on the
    device: the question written down (``pending_online``, as ``Gate`` does before asking),
    the server's verdict recorded there through the real ``/v1/validate`` under that scan id,
    and nothing else — no verdict in the device's log, none shown."""
    scan_id = new_id()
    with scanner.store.write() as conn:
        begin_online(conn, PendingOnline(scan_id, code, direction, asked_at))
    answer = scanner.engine.online_check(
        wire.ValidateRequest(code=code, direction=direction, scan_id=scan_id, scanned_at=asked_at)
    )
    assert answer is not None, "the server did not answer the online check"
    return scan_id, answer


def _live_admissions(office: BackOffice, event_id: uuid.UUID) -> list[uuid.UUID]:
    return [
        s.id
        for s in office.scans(event_id)
        if s.result is VerdictResult.ADMITTED and s.annulled_at is None
    ]


def _annulment_reasons(office: BackOffice, ticket_id: uuid.UUID) -> list[str | None]:
    return [h.reason for h in office.history(ticket_id) if h.kind == "checkin_annulled"]


def test_an_admission_never_shown_is_undone_and_the_offline_admission_after_it_stands(
    tmp_path: Path, live_server: LiveServer, back_office: BackOffice, scanners: list[Scanner]
) -> None:
    sale = back_office.event_on_sale(tickets=2)
    north = _scanner(scanners, tmp_path, live_server, back_office, sale.event_id, "North 1")
    north.sync()
    ticket = sale.tickets[0]
    # Asked a life ago (older than any question still in flight), then killed.
    never_shown, answer = _asked_then_killed(north, ticket.code, datetime.now(UTC) - DEAD_SINCE)
    assert answer.result is VerdictResult.ADMITTED
    # The next life decides offline; it has not heard of the server's admission: the person
    # standing there is let in (shown), before any sync.
    shown = Gate(north.store).scan(ticket.code)
    assert (shown.verdict.result, shown.mode) == (VerdictResult.ADMITTED, "offline")
    assert shown.verdict.scan_id is not None

    north.sync()

    assert _live_admissions(back_office, sale.event_id) == [shown.verdict.scan_id]
    on_server = {s.id: s for s in back_office.scans(sale.event_id)}
    assert on_server[never_shown].annulled_at is not None
    assert all(s.conflict_of is None for s in on_server.values())
    assert _annulment_reasons(back_office, ticket.id) == [NEVER_SHOWN]
    assert back_office.ticket(ticket.id).status.value == "checked_in"
    with north.store.read() as conn:
        assert queue_length(conn) == 0
        undone = find_scan(conn, never_shown)
        kept = find_scan(conn, shown.verdict.scan_id)
        assert unresolved_online(conn, datetime.now(UTC) + timedelta(days=1)) == []
    # Device and server hold the same scans: the one never shown is in the log, undone.
    assert undone is not None
    assert (undone.origin, undone.result, undone.annulled) == (
        "local",
        VerdictResult.ADMITTED,
        True,
    )
    assert kept is not None
    assert (kept.annulled, kept.conflict_of) == (False, None)


def test_an_admission_never_shown_and_uploaded_after_the_offline_one_lifts_its_conflict(
    tmp_path: Path, live_server: LiveServer, back_office: BackOffice, scanners: list[Scanner]
) -> None:
    sale = back_office.event_on_sale(tickets=2)
    north = _scanner(scanners, tmp_path, live_server, back_office, sale.event_id, "North 1")
    north.sync()
    ticket = sale.tickets[0]
    # Asked just now, in this engine's life: its syncs take it for a question still in flight
    # and leave it, so the offline admission reaches the server first.
    asked_at = datetime.now(UTC)
    never_shown, _ = _asked_then_killed(north, ticket.code, asked_at)
    shown = Gate(north.store).scan(ticket.code)
    assert (shown.verdict.result, shown.mode) == (VerdictResult.ADMITTED, "offline")
    north.sync()
    conflict = {s.id: s.conflict_of for s in back_office.scans(sale.event_id)}
    assert conflict == {never_shown: None, shown.verdict.scan_id: never_shown}

    # The next life of the app (a new engine) resolves a question from before it started
    # once the question is two seconds old.
    time.sleep(max(0.0, (asked_at + IN_FLIGHT - datetime.now(UTC)).total_seconds()))
    next_life = SyncEngine(north.store)
    assert next_life.sync_once().ok
    assert next_life.sync_once().ok  # the feed's echo of the reclassified scan

    assert _live_admissions(back_office, sale.event_id) == [shown.verdict.scan_id]
    assert all(s.conflict_of is None for s in back_office.scans(sale.event_id))
    assert _annulment_reasons(back_office, ticket.id) == [NEVER_SHOWN]
    with north.store.read() as conn:
        assert conflicts(conn) == []
        undone = find_scan(conn, never_shown)
    assert undone is not None
    assert undone.annulled


def test_after_an_admission_never_shown_is_undone_the_ticket_is_admitted_once_offline(
    tmp_path: Path, live_server: LiveServer, back_office: BackOffice, scanners: list[Scanner]
) -> None:
    sale = back_office.event_on_sale(tickets=2)
    north = _scanner(scanners, tmp_path, live_server, back_office, sale.event_id, "North 1")
    north.sync()
    ticket = sale.tickets[0]
    never_shown, _ = _asked_then_killed(north, ticket.code, datetime.now(UTC) - DEAD_SINCE)
    north.sync()  # the next life's first sync resolves it before anyone scans the ticket
    assert _live_admissions(back_office, sale.event_id) == []
    assert _annulment_reasons(back_office, ticket.id) == [NEVER_SHOWN]

    offline = Gate(north.store)
    shown = offline.scan(ticket.code)
    again = offline.scan(ticket.code)
    north.sync()

    assert (shown.verdict.result, shown.mode) == (VerdictResult.ADMITTED, "offline")
    assert again.verdict.reason is VerdictReason.ALREADY_CHECKED_IN
    assert _live_admissions(back_office, sale.event_id) == [shown.verdict.scan_id]
    assert all(s.conflict_of is None for s in back_office.scans(sale.event_id))
    with north.store.read() as conn:
        undone = find_scan(conn, never_shown)
    assert undone is not None
    assert undone.annulled


def test_a_refusal_or_an_exit_never_shown_is_recorded_and_stands(
    tmp_path: Path, live_server: LiveServer, back_office: BackOffice, scanners: list[Scanner]
) -> None:
    sale = back_office.event_on_sale(tickets=2, allow_reentry=True)
    north = _scanner(scanners, tmp_path, live_server, back_office, sale.event_id, "North 1")
    north.sync()
    ticket = sale.tickets[0]
    entry = north.gate.scan(ticket.code)
    assert (entry.verdict.result, entry.mode) == (VerdictResult.ADMITTED, "online")
    dead_since = datetime.now(UTC) - DEAD_SINCE
    refused, answer = _asked_then_killed(north, ticket.code, dead_since)
    assert answer.reason is VerdictReason.ALREADY_CHECKED_IN
    left, answer = _asked_then_killed(north, ticket.code, dead_since, Direction.EXIT)
    assert answer.result is VerdictResult.ADMITTED

    north.sync()

    # Nothing to undo: a refusal let nobody in, and an exit holds nobody in (see docs/app.md).
    assert _annulment_reasons(back_office, ticket.id) == []
    assert _live_admissions(back_office, sale.event_id) == [entry.verdict.scan_id, left]
    with north.store.read() as conn:
        logged = {s.scan_id: s for s in local_scans(conn)}
        assert queue_length(conn) == 0
    assert logged[refused].result is VerdictResult.REJECTED
    assert not logged[left].annulled
