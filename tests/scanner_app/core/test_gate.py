"""The gate: every verdict the offline gate can give, from a realistic setup; debouncing; the
scan log and the upload queue; the online path and its fallback; concurrent scans."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import msgspec
import pytest

from scanner_app.core.gate import Gate, GateVerdict, NotEnrolled, OnlineCheck
from scanner_app.core.standalone import load_tickets, set_up_standalone
from scanner_app.core.store import LocalStore
from scanner_app.core.store.cache import admissions_of, apply_changes, inside_now
from scanner_app.core.store.scanlog import find_scan, local_scans
from scanner_app.core.store.scans import annul, drop_from_queue, queued_scans, record_outcomes
from scanner_app.core.store.state import (
    Enrollment,
    GateSettings,
    SyncState,
    merge_keys,
    save_enrollment,
    save_event,
    save_settings,
    save_sync_state,
)
from scanner_app.core.sync.engine import apply_page
from shared import wire
from shared.clock import ManualClock
from shared.domain import Direction, TicketStatus, VerdictReason, VerdictResult
from shared.ids import new_id
from shared.keys import IssuerKeyRing, SigningKey
from shared.ticket_code import CodeRejection, RejectionKind, issue_code, read_code
from testkit.names import name_secret_of, sealed_holder

DOORS = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
SHOW_ENDS = DOORS + timedelta(hours=5)
GATE = "North"


@dataclass
class Venue:
    """One event with its issuer, and a scanner set up for it at gate North."""

    store: LocalStore
    clock: ManualClock
    issuer: IssuerKeyRing
    gate_event: wire.GateEvent
    device_id: uuid.UUID
    gates: list[Gate] = field(default_factory=list)

    def ticket(
        self,
        *,
        status: TicketStatus = TicketStatus.ACTIVE,
        secret_version: int = 1,
        holder_name: str | None = "Ada Lovelace",
        ticket_type: str = "General admission",
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        ticket_type_id: str | None = None,
    ) -> uuid.UUID:
        """A ticket the scanner has in its cache (as the changes feed delivers it)."""
        ticket_id = new_id()
        load_tickets(
            self.store,
            [
                wire.TicketChange(
                    ticket_id=ticket_id,
                    event_id=self.gate_event.event_id,
                    status=status,
                    secret_version=secret_version,
                    ticket_type=ticket_type,
                    sealed_holder=sealed_holder(ticket_id, holder_name, secret_version),
                    valid_from=valid_from,
                    valid_until=valid_until,
                    ticket_type_id=ticket_type_id,
                )
            ],
            self.clock.now(),
        )
        return ticket_id

    def code(
        self,
        ticket_id: uuid.UUID,
        *,
        secret_version: int = 1,
        event_id: uuid.UUID | None = None,
        issuer: IssuerKeyRing | None = None,
        version: int = 2,
    ) -> str:
        """The ticket's code: GH2 with the ticket's name secret, or (``version=1``) the old
        format, which carries none."""
        return issue_code(
            issuer or self.issuer,
            ticket_id=ticket_id,
            event_id=event_id or self.gate_event.event_id,
            secret_version=secret_version,
            issued_at=DOORS - timedelta(days=30),
            name_secret=name_secret_of(ticket_id) if version == 2 else None,
            version=version,
        )

    def settings(self, **changes: object) -> None:
        with self.store.write() as conn:
            save_settings(conn, msgspec.structs.replace(GateSettings(), **changes))
        for gate in self.gates:
            gate.reload()

    def gate(
        self, *, online: OnlineCheck | None = None, is_online: Callable[[], bool] = lambda: True
    ) -> Gate:
        gate = Gate(self.store, clock=self.clock, online=online, is_online=is_online)
        self.gates.append(gate)
        return gate

    def peer_admission(
        self,
        ticket_id: uuid.UUID,
        *,
        gate: str,
        at: datetime,
        direction: Direction = Direction.ENTRY,
        device_id: uuid.UUID | None = None,
    ) -> wire.AdmissionChange:
        change = wire.AdmissionChange(
            scan_id=new_id(),
            ticket_id=ticket_id,
            gate=gate,
            direction=direction,
            scanned_at=at,
            device_id=device_id,
        )
        with self.store.write() as conn:
            apply_changes(conn, self.store.sealer, [change], self.clock.now())
        return change


def _open_venue(
    data_dir: Path, *, allow_reentry: bool = False, opens_at: datetime | None = DOORS
) -> Venue:
    store = LocalStore.open(data_dir)
    clock = ManualClock(DOORS + timedelta(minutes=30))
    issuer = IssuerKeyRing.generate()
    gate_event = wire.GateEvent(
        event_id=new_id(),
        name="Autumn Concert",
        venue="Riverside Hall",
        starts_at=DOORS + timedelta(hours=1),
        ends_at=SHOW_ENDS,
        admission_opens_at=opens_at,
        allow_reentry=allow_reentry,
    )
    # What enrolling with the server writes: identity, event and keys.
    device_id = new_id()
    with store.write() as conn:
        save_enrollment(
            conn,
            Enrollment(
                device_id=device_id,
                name="North gate scanner 1",
                server_url="https://gatehouse.example",
                tenant_id=new_id(),
                event_id=gate_event.event_id,
                gate=GATE,
                enrolled_at=clock.now(),
            ),
        )
        save_event(conn, gate_event)
        merge_keys(conn, issuer.scanner_ring.to_wire(), clock.now())
    return Venue(store, clock, issuer, gate_event, device_id)


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[Venue]:
    opened = _open_venue(tmp_path / "scanner")
    yield opened
    opened.store.close()


@pytest.fixture
def reentry_venue(tmp_path: Path) -> Iterator[Venue]:
    opened = _open_venue(tmp_path / "scanner", allow_reentry=True)
    yield opened
    opened.store.close()


def _rejected(verdict: GateVerdict, reason: VerdictReason) -> None:
    assert verdict.verdict.result is VerdictResult.REJECTED, verdict
    assert verdict.verdict.reason is reason, verdict
    assert not verdict.admitted
    assert verdict.mode == "offline"
    assert not verdict.repeat
    assert verdict.sentence, "gate staff always get a sentence"


def _rejection_kind(venue: Venue, text: str) -> RejectionKind:
    read = read_code(venue.issuer.scanner_ring, text)
    assert isinstance(read, CodeRejection)
    return read.kind


def _next_scan(venue: Venue) -> None:
    """Let the debounce window pass, as the next guest steps up."""
    venue.clock.advance(10)


# --- admitted --------------------------------------------------------------------------------


def test_a_valid_ticket_is_admitted_with_its_holder_and_type(venue: Venue) -> None:
    ticket_id = venue.ticket(holder_name="Ada Lovelace", ticket_type="Balcony")
    verdict = venue.gate().scan(venue.code(ticket_id))
    assert verdict.admitted
    assert verdict.verdict.reason is None
    assert verdict.mode == "offline"
    assert not verdict.on_signature
    assert not verdict.reentry
    assert verdict.sentence == "Welcome!"
    shown = verdict.verdict
    assert (shown.holder_name, shown.ticket_type) == ("Ada Lovelace", "Balcony")
    assert (shown.ticket_id, shown.event_id) == (ticket_id, venue.gate_event.event_id)
    assert (shown.gate, shown.direction) == (GATE, Direction.ENTRY)
    assert shown.scanned_at == venue.clock.now()
    assert shown.scan_id is not None


def test_an_old_format_code_is_admitted_offline_without_a_name(venue: Venue) -> None:
    """GH1 codes keep reading; they carry no name secret, so the name stays sealed."""
    ticket_id = venue.ticket(holder_name="Ada Lovelace", ticket_type="Balcony")
    verdict = venue.gate().scan(venue.code(ticket_id, version=1))
    assert verdict.admitted
    assert verdict.verdict.holder_name is None
    assert verdict.verdict.ticket_type == "Balcony"
    assert verdict.sentence == "Welcome! Old-format code: no name is shown offline."


def test_a_code_of_the_ticket_with_another_name_secret_shows_no_name(venue: Venue) -> None:
    """A name opens only with the name secret the server sealed it under (the one in the
    ticket's current codes), not with any other genuine code's."""
    ticket_id = venue.ticket(holder_name="Ada Lovelace")
    other = issue_code(
        venue.issuer,
        ticket_id=ticket_id,
        event_id=venue.gate_event.event_id,
        secret_version=1,
        issued_at=DOORS - timedelta(days=30),
    )
    verdict = venue.gate().scan(other)
    assert verdict.admitted
    assert verdict.verdict.holder_name is None


def test_scanner_noise_around_a_code_is_forgiven(venue: Venue) -> None:
    ticket_id = venue.ticket()
    # A keyboard-wedge scanner with Caps Lock on, ending with Enter.
    assert venue.gate().scan(venue.code(ticket_id).lower() + "\r\n").admitted


# --- what the cache says about the ticket ---------------------------------------------------


def test_a_revoked_ticket_is_refused(venue: Venue) -> None:
    ticket_id = venue.ticket(status=TicketStatus.REVOKED, holder_name="Refunded Guest")
    verdict = venue.gate().scan(venue.code(ticket_id))
    _rejected(verdict, VerdictReason.REVOKED)
    assert verdict.sentence == VerdictReason.REVOKED.sentence
    assert verdict.verdict.holder_name == "Refunded Guest"  # staff can tell the guest why


def test_an_expired_ticket_is_refused(venue: Venue) -> None:
    ticket_id = venue.ticket(status=TicketStatus.EXPIRED)
    _rejected(venue.gate().scan(venue.code(ticket_id)), VerdictReason.EXPIRED)


def test_a_code_replaced_by_a_transfer_is_superseded(venue: Venue) -> None:
    ticket_id = venue.ticket(secret_version=1, holder_name="Seller")
    old_code = venue.code(ticket_id, secret_version=1)
    gate = venue.gate()
    # The ticket is transferred: the feed brings its new secret version and holder.
    with venue.store.write() as conn:
        apply_changes(
            conn,
            venue.store.sealer,
            [
                wire.TicketChange(
                    ticket_id=ticket_id,
                    event_id=venue.gate_event.event_id,
                    status=TicketStatus.ACTIVE,
                    secret_version=2,
                    ticket_type="General admission",
                    sealed_holder=sealed_holder(ticket_id, "Buyer", 2),
                )
            ],
            venue.clock.now(),
        )
    _rejected(gate.scan(old_code), VerdictReason.SUPERSEDED)
    _next_scan(venue)
    fresh = gate.scan(venue.code(ticket_id, secret_version=2))
    assert fresh.admitted
    assert fresh.verdict.holder_name == "Buyer"


def test_a_code_newer_than_the_issuers_record_is_invalid(venue: Venue) -> None:
    ticket_id = venue.ticket(secret_version=2)
    _rejected(
        venue.gate().scan(venue.code(ticket_id, secret_version=3)), VerdictReason.INVALID_CODE
    )


# --- what the code itself says ---------------------------------------------------------------


def test_a_tampered_code_is_invalid(venue: Venue) -> None:
    ticket_id = venue.ticket()
    code = venue.code(ticket_id)
    index = len(code) // 2  # inside the sealed claims, well past the key id
    flipped = "B" if code[index] == "A" else "A"
    tampered = code[:index] + flipped + code[index + 1 :]
    # Still shaped like a code: it is the seal, not the parser, that catches it.
    assert _rejection_kind(venue, tampered) is RejectionKind.TAMPERED
    gate = venue.gate()
    _rejected(gate.scan(tampered), VerdictReason.INVALID_CODE)
    _next_scan(venue)
    assert gate.scan(code).admitted  # the genuine code was not used up by the attempt


def test_a_code_forged_with_a_stolen_scanners_keys_is_invalid(venue: Venue) -> None:
    # A thief has a scanner: the encryption key and the verify key (with its id), but not the
    # issuer's signing key. They sign with a key of their own under the issuer's key id.
    stolen = venue.issuer.active_encryption_key
    signing_id = venue.issuer.active_signing_key.key_id
    forger = IssuerKeyRing(
        [SigningKey.generate(signing_id)],
        [stolen],
        active_signing_id=signing_id,
        active_encryption_id=stolen.key_id,
    )
    ticket_id = venue.ticket()
    forged = venue.code(ticket_id, issuer=forger)
    assert _rejection_kind(venue, forged) is RejectionKind.BAD_SIGNATURE
    verdict = venue.gate().scan(forged)
    _rejected(verdict, VerdictReason.INVALID_CODE)
    assert verdict.verdict.ticket_id is None  # nothing a forger wrote is believed


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \r\n",
        "https://example.com/not-a-ticket",
        "GH1",
        "GH2" + "A" * 224,
        "\x00\x01\x02 \u202e garbage ✓",
        "A" * 10_000,
    ],
)
def test_garbage_and_empty_text_are_invalid(venue: Venue, text: str) -> None:
    verdict = venue.gate().scan(text)
    _rejected(verdict, VerdictReason.INVALID_CODE)
    assert verdict.sentence == VerdictReason.INVALID_CODE.sentence
    with venue.store.read() as conn:
        logged = find_scan(conn, _scan_id(verdict))
    assert logged is not None  # even a misread is on the record
    assert logged.reason is VerdictReason.INVALID_CODE


def test_a_code_under_a_key_the_scanner_lacks_is_unknown_key(venue: Venue) -> None:
    ticket_id = venue.ticket()
    rotated = venue.issuer.rotated()  # the server rotated keys; this scanner hasn't synced
    new_code = venue.code(ticket_id, issuer=rotated)
    gate = venue.gate()
    verdict = gate.scan(new_code)
    _rejected(verdict, VerdictReason.UNKNOWN_KEY)
    assert "Sync" in verdict.sentence
    # Another process (a command-line sync) brings the new keys: the gate picks them up on
    # its own, without a restart.
    with venue.store.write() as conn:
        merge_keys(conn, rotated.scanner_ring.to_wire(), venue.clock.now())
    _next_scan(venue)
    assert gate.scan(new_code).admitted


def test_a_genuine_code_for_another_event_is_wrong_event(venue: Venue) -> None:
    # Same tenant keys, another event of the same organiser.
    verdict = venue.gate().scan(venue.code(new_id(), event_id=new_id()))
    _rejected(verdict, VerdictReason.WRONG_EVENT)


# --- time ------------------------------------------------------------------------------------


def test_before_the_doors_open_a_ticket_is_not_yet_valid(venue: Venue) -> None:
    ticket_id = venue.ticket()
    venue.clock.set(DOORS - timedelta(minutes=5))
    gate = venue.gate()
    _rejected(gate.scan(venue.code(ticket_id)), VerdictReason.NOT_YET_VALID)
    venue.clock.set(DOORS + timedelta(seconds=1))
    _next_scan(venue)
    assert gate.scan(venue.code(ticket_id)).admitted


def test_after_the_event_a_ticket_is_no_longer_valid(venue: Venue) -> None:
    ticket_id = venue.ticket()
    venue.clock.set(SHOW_ENDS + timedelta(minutes=1))
    _rejected(venue.gate().scan(venue.code(ticket_id)), VerdictReason.NO_LONGER_VALID)


def test_a_tickets_own_window_narrows_the_events(venue: Venue) -> None:
    late_entry = venue.ticket(valid_from=DOORS + timedelta(hours=2))
    early_bird = venue.ticket(valid_until=DOORS + timedelta(minutes=10))
    gate = venue.gate()
    _rejected(gate.scan(venue.code(late_entry)), VerdictReason.NOT_YET_VALID)
    _rejected(gate.scan(venue.code(early_bird)), VerdictReason.NO_LONGER_VALID)


def test_the_measured_clock_offset_shifts_the_scan_time(venue: Venue) -> None:
    ticket_id = venue.ticket()
    # The device clock is 90 s fast: server time = device time - 90 s.
    with venue.store.write() as conn:
        save_sync_state(conn, SyncState(clock_offset_ms=-90_000))
    device_now = venue.clock.now()
    verdict = venue.gate().scan(venue.code(ticket_id))
    corrected = device_now - timedelta(seconds=90)
    assert verdict.verdict.scanned_at == corrected
    with venue.store.read() as conn:
        logged = find_scan(conn, _scan_id(verdict))
        (queued,) = queued_scans(conn, 10)
    assert logged is not None
    assert logged.at == corrected
    # The upload carries the device's reading and the offset; the server corrects it.
    assert queued.upload.scanned_at == device_now
    assert queued.upload.clock_offset_ms == -90_000


def test_rules_judge_by_the_corrected_time(venue: Venue) -> None:
    ticket_id = venue.ticket()
    # The device clock is two minutes slow and reads 17:59; it is 18:01 at the server.
    venue.clock.set(DOORS - timedelta(minutes=1))
    with venue.store.write() as conn:
        save_sync_state(conn, SyncState(clock_offset_ms=120_000))
    assert venue.gate().scan(venue.code(ticket_id)).admitted


# --- earlier scans ---------------------------------------------------------------------------


def test_a_second_entry_names_the_first_gate_and_time(venue: Venue) -> None:
    ticket_id = venue.ticket()
    code = venue.code(ticket_id)
    gate = venue.gate()
    first = gate.scan(code)
    assert first.admitted
    venue.clock.advance(600)
    second = gate.scan(code)
    _rejected(second, VerdictReason.ALREADY_CHECKED_IN)
    prior = second.verdict.prior
    assert prior is not None
    assert prior.scan_id == first.verdict.scan_id
    assert prior.scanned_at == first.verdict.scanned_at
    assert (prior.gate, prior.device_id) == (GATE, venue.device_id)
    assert GATE in second.sentence
    assert second.sentence.startswith("Already checked in at")


def test_an_entry_at_another_gate_is_known_from_the_feed(venue: Venue) -> None:
    ticket_id = venue.ticket()
    south_device = new_id()
    earlier = venue.clock.now() - timedelta(minutes=12)
    peer = venue.peer_admission(ticket_id, gate="South", at=earlier, device_id=south_device)
    verdict = venue.gate().scan(venue.code(ticket_id))
    _rejected(verdict, VerdictReason.ALREADY_CHECKED_IN)
    prior = verdict.verdict.prior
    assert prior is not None
    assert (prior.scan_id, prior.gate, prior.scanned_at, prior.device_id) == (
        peer.scan_id,
        "South",
        earlier,
        south_device,
    )
    assert "South" in verdict.sentence


def test_reentry_after_an_exit_when_the_event_allows_it(reentry_venue: Venue) -> None:
    venue = reentry_venue
    ticket_id = venue.ticket()
    code = venue.code(ticket_id)
    gate = venue.gate()
    entry = gate.scan(code)
    assert entry.admitted
    assert not entry.reentry
    _next_scan(venue)
    out = gate.scan(code, direction=Direction.EXIT)
    assert out.admitted
    assert out.verdict.direction is Direction.EXIT
    assert out.sentence.startswith("Goodbye")
    _next_scan(venue)
    back = gate.scan(code)
    assert back.admitted
    assert back.reentry
    assert back.sentence == "Welcome back (re-entry)."
    _next_scan(venue)
    # Inside again: a further entry collides with the re-entry, not the first entry.
    again = gate.scan(code)
    _rejected(again, VerdictReason.ALREADY_CHECKED_IN)
    assert again.verdict.prior is not None
    assert again.verdict.prior.scan_id == back.verdict.scan_id


def test_reentry_is_refused_when_the_event_does_not_allow_it(venue: Venue) -> None:
    ticket_id = venue.ticket()
    code = venue.code(ticket_id)
    gate = venue.gate()
    entry = gate.scan(code)
    _next_scan(venue)
    assert gate.scan(code, direction=Direction.EXIT).admitted
    _next_scan(venue)
    back = gate.scan(code)
    _rejected(back, VerdictReason.ALREADY_CHECKED_IN)
    assert back.verdict.prior is not None
    assert back.verdict.prior.scan_id == entry.verdict.scan_id


def test_an_exit_at_another_gate_lets_the_ticket_back_in(reentry_venue: Venue) -> None:
    venue = reentry_venue
    ticket_id = venue.ticket()
    now = venue.clock.now()
    venue.peer_admission(ticket_id, gate="South", at=now - timedelta(minutes=30))
    venue.peer_admission(
        ticket_id, gate="South", at=now - timedelta(minutes=5), direction=Direction.EXIT
    )
    verdict = venue.gate().scan(venue.code(ticket_id))
    assert verdict.admitted
    assert verdict.reentry


@pytest.mark.parametrize(
    "status", [TicketStatus.REVOKED, TicketStatus.EXPIRED, TicketStatus.ACTIVE]
)
def test_an_exit_lets_a_genuine_code_out(venue: Venue, status: TicketStatus) -> None:
    ticket_id = venue.ticket(status=status, secret_version=2)
    # Even revoked, even superseded, even after the event: nobody is kept inside.
    venue.clock.set(SHOW_ENDS + timedelta(minutes=20))
    verdict = venue.gate().scan(venue.code(ticket_id, secret_version=1), direction=Direction.EXIT)
    assert verdict.admitted
    assert verdict.verdict.direction is Direction.EXIT


def test_an_exit_still_refuses_codes_that_are_not_genuine(venue: Venue) -> None:
    gate = venue.gate()
    _rejected(gate.scan("not a code", direction=Direction.EXIT), VerdictReason.INVALID_CODE)
    other_event = venue.code(new_id(), event_id=new_id())
    _rejected(gate.scan(other_event, direction=Direction.EXIT), VerdictReason.WRONG_EVENT)
    # Signed by the issuer, but newer than the issuer's own record of the ticket (issue 15:
    # this gate let it out while the server refused it).
    ticket_id = venue.ticket(secret_version=2)
    newer = venue.code(ticket_id, secret_version=3)
    _rejected(gate.scan(newer, direction=Direction.EXIT), VerdictReason.INVALID_CODE)
    with venue.store.read() as conn:
        # Nobody is known to have left: no exit counts for the ticket.
        assert admissions_of(conn, venue.store.sealer.lookup(ticket_id)) == []


def test_a_strict_gate_refuses_the_exit_of_a_ticket_it_does_not_know(venue: Venue) -> None:
    """As the server refuses it (``not_found``); a gate that is not strict lets it out on its
    signature, as it lets it in (the ticket may have been sold after the last sync)."""
    unknown = venue.code(new_id())
    gate = venue.gate()
    out = gate.scan(unknown, direction=Direction.EXIT)
    assert out.admitted
    assert out.on_signature
    venue.settings(strict=True)
    _next_scan(venue)
    _rejected(gate.scan(unknown, direction=Direction.EXIT), VerdictReason.NOT_FOUND)


def test_a_gate_in_exit_mode_scans_exits(venue: Venue) -> None:
    ticket_id = venue.ticket(status=TicketStatus.REVOKED)
    venue.settings(direction=Direction.EXIT)
    verdict = venue.gate().scan(venue.code(ticket_id))
    assert verdict.admitted
    assert verdict.verdict.direction is Direction.EXIT


# --- tickets the cache does not know yet -----------------------------------------------------


def test_a_ticket_sold_after_the_last_sync_is_admitted_on_its_signature(venue: Venue) -> None:
    unknown = new_id()
    gate = venue.gate()
    verdict = gate.scan(venue.code(unknown, secret_version=0))
    assert verdict.admitted
    assert verdict.on_signature
    assert "not yet on this scanner's list" in verdict.sentence
    assert verdict.verdict.holder_name is None
    with venue.store.read() as conn:
        logged = find_scan(conn, _scan_id(verdict))
    assert logged is not None
    assert logged.on_signature
    # And it is not admitted twice on its signature either.
    _next_scan(venue)
    _rejected(gate.scan(venue.code(unknown, secret_version=0)), VerdictReason.ALREADY_CHECKED_IN)


def test_a_strict_gate_refuses_tickets_it_does_not_know(venue: Venue) -> None:
    venue.settings(strict=True)
    known = venue.ticket()
    gate = venue.gate()
    _rejected(gate.scan(venue.code(new_id())), VerdictReason.NOT_FOUND)
    assert gate.scan(venue.code(known)).admitted


def test_a_scanner_without_a_server_logs_but_queues_nothing(tmp_path: Path) -> None:
    store = LocalStore.open(tmp_path / "demo")
    try:
        issuer = IssuerKeyRing.generate()
        clock = ManualClock(DOORS)
        gate_event = wire.GateEvent(
            event_id=new_id(), name="Demo", venue="Hall", starts_at=DOORS, ends_at=SHOW_ENDS
        )
        set_up_standalone(
            store, gate_event=gate_event, keys=issuer.scanner_ring, gate="Demo", now=DOORS
        )
        code = issue_code(
            issuer,
            ticket_id=new_id(),
            event_id=gate_event.event_id,
            secret_version=0,
            issued_at=DOORS,
        )
        verdict = Gate(store, clock=clock).scan(code)
        assert verdict.admitted
        with store.read() as conn:
            assert [s.scan_id for s in local_scans(conn)] == [verdict.verdict.scan_id]
            assert queued_scans(conn, 10) == []
    finally:
        store.close()


def test_a_gate_without_enrollment_refuses_to_start(tmp_path: Path) -> None:
    store = LocalStore.open(tmp_path / "fresh")
    try:
        with pytest.raises(NotEnrolled, match="not set up yet"):
            Gate(store, clock=ManualClock(DOORS))
    finally:
        store.close()


# --- debounce --------------------------------------------------------------------------------


def test_the_same_code_within_the_window_is_the_same_scan(venue: Venue) -> None:
    venue.settings(debounce_seconds=3.0)
    ticket_id = venue.ticket()
    code = venue.code(ticket_id)
    gate = venue.gate()
    first = gate.scan(code)
    venue.clock.advance(2.5)
    repeat = gate.scan(code)
    assert repeat.repeat
    assert repeat.admitted  # the same green light, not "already checked in"
    assert repeat.verdict == first.verdict
    assert _logged_ids(venue) == [_scan_id(first)]
    assert _queued_ids(venue) == [_scan_id(first)]
    venue.clock.advance(1.0)  # 3.5 s after the first read: a new scan
    second = gate.scan(code)
    _rejected(second, VerdictReason.ALREADY_CHECKED_IN)
    assert _scan_id(second) != _scan_id(first)
    assert sorted(_logged_ids(venue)) == sorted([_scan_id(first), _scan_id(second)])


def test_the_same_code_in_the_other_direction_is_not_a_repeat(venue: Venue) -> None:
    ticket_id = venue.ticket()
    code = venue.code(ticket_id)
    gate = venue.gate()
    assert gate.scan(code).admitted
    out = gate.scan(code, direction=Direction.EXIT)
    assert not out.repeat
    assert out.verdict.direction is Direction.EXIT
    assert len(_logged_ids(venue)) == 2


def test_no_debounce_means_every_read_is_a_scan(venue: Venue) -> None:
    venue.settings(debounce_seconds=0)
    ticket_id = venue.ticket()
    code = venue.code(ticket_id)
    gate = venue.gate()
    assert gate.scan(code).admitted
    # The same instant (a coarse clock, or two readers at once) is still a second scan.
    second = gate.scan(code)
    assert not second.repeat
    _rejected(second, VerdictReason.ALREADY_CHECKED_IN)


# --- the record ------------------------------------------------------------------------------


def _scan_id(verdict: GateVerdict) -> uuid.UUID:
    assert verdict.verdict.scan_id is not None
    return verdict.verdict.scan_id


def _logged_ids(venue: Venue) -> list[uuid.UUID]:
    with venue.store.read() as conn:
        return [s.scan_id for s in local_scans(conn, limit=1000)]


def _queued_ids(venue: Venue) -> list[uuid.UUID]:
    with venue.store.read() as conn:
        return [q.upload.scan_id for q in queued_scans(conn, 1000)]


def test_every_scan_is_logged_and_queued_exactly_once(venue: Venue) -> None:
    gate = venue.gate()
    good = venue.ticket()
    good_code = venue.code(good)
    revoked = venue.ticket(status=TicketStatus.REVOKED)
    texts = [
        good_code,
        good_code,  # read twice by the camera: the same scan
        venue.code(revoked),
        "garbage",
        "",
        venue.code(new_id(), event_id=new_id()),
        venue.code(new_id()),  # on signature
    ]
    verdicts: list[GateVerdict] = []
    for text in texts:
        verdicts.append(gate.scan(text))
        venue.clock.advance(0.5)
    venue.clock.advance(10)
    verdicts.append(gate.scan(venue.code(good)))  # already checked in
    verdicts.append(gate.scan(venue.code(good), direction=Direction.EXIT))

    real = [v for v in verdicts if not v.repeat]
    assert len(real) == len(verdicts) - 1
    expected = [_scan_id(v) for v in real]
    assert len(set(expected)) == len(expected)
    assert sorted(_logged_ids(venue)) == sorted(expected)
    with venue.store.read() as conn:
        queued = queued_scans(conn, 1000)
    assert [q.upload.scan_id for q in queued] == expected  # in the order they happened
    for verdict, entry in zip(real, queued, strict=True):
        upload = entry.upload
        assert upload.device_result is verdict.verdict.result
        assert upload.device_reason is verdict.verdict.reason
        assert upload.direction is verdict.verdict.direction
        assert upload.gate == GATE
        assert upload.offline
    assert queued[0].upload.code == texts[0]


def test_a_scan_that_cannot_be_recorded_shows_no_verdict(venue: Venue) -> None:
    ticket_id = venue.ticket()
    code = venue.code(ticket_id)
    gate = venue.gate()
    with venue.store.write() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER queue_fails BEFORE INSERT ON upload_queue "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    with pytest.raises(Exception, match="disk full"):
        gate.scan(code)
    assert _logged_ids(venue) == []
    with venue.store.write() as conn:
        conn.exec_driver_sql("DROP TRIGGER queue_fails")
    # Nothing was admitted and nothing remembered: the retry at once is a first, real scan.
    retry = gate.scan(code)
    assert retry.admitted
    assert not retry.repeat
    assert _queued_ids(venue) == [_scan_id(retry)]


def test_a_conflict_learned_later_no_longer_counts(venue: Venue) -> None:
    ticket_id = venue.ticket()
    code = venue.code(ticket_id)
    gate = venue.gate()
    ours = gate.scan(code)
    assert ours.admitted
    # Upload: the server says gate South had admitted this ticket three minutes earlier.
    south = venue.peer_admission(
        ticket_id, gate="South", at=venue.clock.now() - timedelta(minutes=3)
    )
    with venue.store.write() as conn:
        conflicts = record_outcomes(
            conn,
            wire.ScanBatchOutcome(
                outcomes=[
                    wire.ScanOutcome(
                        scan_id=_scan_id(ours),
                        result=VerdictResult.ADMITTED,
                        conflict_of=south.scan_id,
                    )
                ],
                server_time=venue.clock.now(),
            ),
        )
        assert conflicts == 1
        counted = admissions_of(conn, venue.store.sealer.lookup(ticket_id))
    assert [a.scan_id for a in counted] == [south.scan_id]
    _next_scan(venue)
    again = gate.scan(code)
    _rejected(again, VerdictReason.ALREADY_CHECKED_IN)
    assert again.verdict.prior is not None
    # The admission that stands is South's, not the double entry here.
    assert (again.verdict.prior.scan_id, again.verdict.prior.gate) == (south.scan_id, "South")


def test_an_annulled_admission_lets_the_ticket_in_again(venue: Venue) -> None:
    ticket_id = venue.ticket()
    code = venue.code(ticket_id)
    gate = venue.gate()
    mistaken = gate.scan(code)
    assert mistaken.admitted
    with venue.store.write() as conn:
        assert annul(conn, _scan_id(mistaken), venue.clock.now())
    _next_scan(venue)
    again = gate.scan(code)
    assert again.admitted
    assert not again.reentry  # the undone admission never happened


# --- online ----------------------------------------------------------------------------------


@dataclass
class FakeServer:
    """Stands in for POST /v1/validate: records requests, answers with ``answer``."""

    answer: Callable[[wire.ValidateRequest], wire.Verdict | None]
    requests: list[wire.ValidateRequest] = field(default_factory=list)

    def __call__(self, request: wire.ValidateRequest) -> wire.Verdict | None:
        self.requests.append(request)
        return self.answer(request)


def test_an_online_verdict_is_logged_but_not_queued(venue: Venue) -> None:
    ticket_id = venue.ticket()
    server_time = venue.clock.now() + timedelta(seconds=4)

    def admit(request: wire.ValidateRequest) -> wire.Verdict:
        return wire.Verdict(
            result=VerdictResult.ADMITTED,
            scan_id=request.scan_id,
            direction=request.direction,
            gate=GATE,
            scanned_at=server_time,
            ticket_id=ticket_id,
            event_id=venue.gate_event.event_id,
            ticket_type="General admission",
            holder_name="Ada Lovelace",
            chain_verified=True,
        )

    server = FakeServer(admit)
    gate = venue.gate(online=server)
    code = venue.code(ticket_id)
    verdict = gate.scan(code)
    assert verdict.mode == "online"
    assert verdict.admitted
    assert verdict.verdict.chain_verified is True
    (request,) = server.requests
    assert request.code == code
    assert request.direction is Direction.ENTRY
    assert request.scan_id == _scan_id(verdict)
    assert request.scanned_at == venue.clock.now()
    assert _queued_ids(venue) == []  # the server has it already
    with venue.store.read() as conn:
        logged = find_scan(conn, _scan_id(verdict))
    assert logged is not None
    assert (logged.mode, logged.result, logged.server_result) == (
        "online",
        VerdictResult.ADMITTED,
        "admitted",
    )
    assert logged.at == server_time
    # The online admission counts when the network goes away.
    offline_gate = venue.gate(online=server, is_online=lambda: False)
    _next_scan(venue)
    later = offline_gate.scan(code)
    _rejected(later, VerdictReason.ALREADY_CHECKED_IN)
    assert len(server.requests) == 1  # offline: the server was not asked
    assert later.verdict.prior is not None
    assert later.verdict.prior.scan_id == _scan_id(verdict)


def test_an_online_rejection_is_shown_as_the_server_gave_it(venue: Venue) -> None:
    ticket_id = venue.ticket()  # the cache still thinks it is fine

    def refuse(request: wire.ValidateRequest) -> wire.Verdict:
        return wire.Verdict(
            result=VerdictResult.REJECTED,
            reason=VerdictReason.OWNERSHIP_MISMATCH,
            scan_id=request.scan_id,
            ticket_id=ticket_id,
        )

    verdict = venue.gate(online=FakeServer(refuse)).scan(venue.code(ticket_id))
    assert verdict.mode == "online"
    assert verdict.verdict.reason is VerdictReason.OWNERSHIP_MISMATCH
    assert verdict.sentence == VerdictReason.OWNERSHIP_MISMATCH.sentence
    assert _queued_ids(venue) == []
    assert _logged_ids(venue) == [_scan_id(verdict)]


def test_an_unreachable_server_falls_back_to_offline_with_the_same_scan_id(venue: Venue) -> None:
    ticket_id = venue.ticket()
    server = FakeServer(lambda _request: None)
    verdict = venue.gate(online=server).scan(venue.code(ticket_id))
    assert verdict.mode == "offline"
    assert verdict.admitted
    (request,) = server.requests
    # If the server did record the attempt, the upload is recognised as the same scan.
    assert request.scan_id == _scan_id(verdict)
    assert _queued_ids(venue) == [_scan_id(verdict)]


def test_a_ticket_admitted_offline_and_not_yet_uploaded_is_not_asked_online(
    venue: Venue,
) -> None:
    """The server has not heard of this device's offline admission: asking it would admit the
    ticket a second time (found by the crash-safety test: a scanner killed before its upload
    and restarted online)."""
    ticket_id = venue.ticket()
    code = venue.code(ticket_id)
    first = venue.gate(online=None).scan(code)
    assert first.mode == "offline"
    assert first.admitted
    assert _queued_ids(venue) == [_scan_id(first)]

    def admit(request: wire.ValidateRequest) -> wire.Verdict:
        return wire.Verdict(result=VerdictResult.ADMITTED, scan_id=request.scan_id)

    server = FakeServer(admit)
    online_gate = venue.gate(online=server)
    _next_scan(venue)
    again = online_gate.scan(code)
    assert server.requests == []
    assert again.mode == "offline"
    _rejected(again, VerdictReason.ALREADY_CHECKED_IN)
    # Another ticket is still asked.
    other = online_gate.scan(venue.code(venue.ticket()))
    assert other.mode == "online"
    assert len(server.requests) == 1

    # Once the server has the admission (the queue entry gone), it is asked again.
    with venue.store.write() as conn:
        for queued in queued_scans(conn, limit=10):
            drop_from_queue(conn, queued.seq)
    _next_scan(venue)
    assert online_gate.scan(code).mode == "online"


def test_the_server_is_not_asked_when_online_validation_is_off(venue: Venue) -> None:
    venue.settings(online_validation=False)
    server = FakeServer(lambda _request: None)
    verdict = venue.gate(online=server).scan(venue.code(venue.ticket()))
    assert server.requests == []
    assert verdict.mode == "offline"
    assert verdict.admitted


def test_empty_text_never_goes_to_the_server(venue: Venue) -> None:
    server = FakeServer(lambda _request: None)
    verdict = venue.gate(online=server).scan("  \n")
    assert server.requests == []
    _rejected(verdict, VerdictReason.INVALID_CODE)


# --- concurrency -----------------------------------------------------------------------------


def _race(scanners: list[Callable[[], GateVerdict]]) -> list[GateVerdict]:
    barrier = threading.Barrier(len(scanners))
    results: list[GateVerdict | BaseException] = [RuntimeError("did not run")] * len(scanners)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = scanners[index]()
        except BaseException as error:  # surfaced below, in the test's thread
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(scanners))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    verdicts = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        verdicts.append(result)
    return verdicts


def _assert_one_admission(venue: Venue, ticket_id: uuid.UUID, verdicts: list[GateVerdict]) -> None:
    assert sorted(v.verdict.result for v in verdicts) == [
        VerdictResult.ADMITTED,
        VerdictResult.REJECTED,
    ]
    (winner,) = (v for v in verdicts if v.admitted)
    (loser,) = (v for v in verdicts if not v.admitted)
    assert loser.verdict.reason is VerdictReason.ALREADY_CHECKED_IN
    assert loser.verdict.prior is not None
    assert loser.verdict.prior.scan_id == _scan_id(winner)
    with venue.store.read() as conn:
        counted = admissions_of(conn, venue.store.sealer.lookup(ticket_id))
    assert [a.scan_id for a in counted] == [_scan_id(winner)]


def test_camera_and_handheld_at_once_admit_once(venue: Venue) -> None:
    venue.settings(debounce_seconds=0)
    gate = venue.gate()
    for _ in range(5):
        ticket_id = venue.ticket()
        code = venue.code(ticket_id)
        verdicts = _race([partial(gate.scan, code), partial(gate.scan, code)])
        _assert_one_admission(venue, ticket_id, verdicts)


def test_two_programs_on_one_data_file_admit_once(venue: Venue, tmp_path: Path) -> None:
    # The app and a command-line tool each open the file: only SQLite's lock serialises them.
    venue.settings(debounce_seconds=0)
    second_store = LocalStore.open(tmp_path / "scanner")
    try:
        app = venue.gate()
        tool = Gate(second_store, clock=venue.clock)
        for _ in range(5):
            ticket_id = venue.ticket()
            code = venue.code(ticket_id)
            verdicts = _race([partial(app.scan, code), partial(tool.scan, code)])
            _assert_one_admission(venue, ticket_id, verdicts)
    finally:
        second_store.close()


def test_verdicts_survive_as_wire_json(venue: Venue) -> None:
    # What the app hands to its panel and logs is plain data.
    verdict = venue.gate().scan(venue.code(venue.ticket()))
    decoded = msgspec.json.decode(msgspec.json.encode(verdict), type=GateVerdict)
    assert decoded == verdict


# --- check-in lists (issue 16) --------------------------------------------------------------------

VIP = uuid.UUID(int=0x1)
GENERAL = uuid.UUID(int=0x2)
BACKSTAGE = uuid.UUID(int=0x3)
ARENA = uuid.UUID(int=0x4)


def _lists(venue: Venue, version: int, lists: list[wire.CheckinListOut]) -> None:
    """A setup as the feed brings it (``apply_page``, the engine's own path)."""
    setup = wire.CheckinSetup(
        event_id=venue.gate_event.event_id,
        version=version,
        time_zone="Europe/Berlin",
        ticket_types=[
            wire.TicketTypeDays(id="tt-ga", name="General admission"),
            wire.TicketTypeDays(id="tt-vip", name="VIP"),
        ],
        lists=lists,
    )
    page = wire.ChangesPage(
        changes=[],
        next_cursor="c1",
        has_more=False,
        server_time=venue.clock.now(),
        checkin_setup=setup,
        checkin_setup_version=version,
    )
    with venue.store.write() as conn:
        _, stored = apply_page(
            conn,
            venue.store.sealer,
            page,
            event_id=venue.gate_event.event_id,
            now=venue.clock.now(),
        )
    assert stored == setup


def _list(
    venue: Venue,
    list_id: uuid.UUID,
    name: str,
    *,
    types: tuple[str, ...] = (),
    gates: tuple[str, ...] = (GATE,),
    zone: str | None = None,
) -> wire.CheckinListOut:
    return wire.CheckinListOut(
        id=list_id,
        event_id=venue.gate_event.event_id,
        name=name,
        ticket_type_ids=list(types),
        gates=list(gates),
        zone=zone,
    )


def test_a_gate_whose_lists_do_not_admit_the_type_refuses_with_where_it_enters(
    venue: Venue,
) -> None:
    gate = venue.gate()  # made before the setup came: it picks it up at the next scan
    _lists(
        venue,
        1,
        [
            _list(venue, VIP, "VIP", types=("tt-vip",)),
            _list(venue, GENERAL, "General", types=("tt-ga",), gates=("Main",)),
        ],
    )
    ga = venue.ticket(ticket_type_id="tt-ga")
    refused = gate.scan(venue.code(ga))
    _rejected(refused, VerdictReason.NOT_ON_LIST)
    assert refused.sentence == "General admission tickets enter at the Main gate."
    assert refused.lists_apply
    vip = venue.ticket(ticket_type="VIP", ticket_type_id="tt-vip")
    admitted = gate.scan(venue.code(vip))
    assert admitted.admitted
    assert (admitted.list_name, admitted.enters_zone) == ("VIP", "")
    assert admitted.sentence == "Welcome!"
    again = gate.scan(venue.code(vip), direction=Direction.EXIT)
    assert again.admitted  # an exit is never refused by a list
    # not_on_list names no list; the admissions their list.
    with venue.store.read() as conn:
        rows = conn.exec_driver_sql(
            "SELECT result, checkin_list_id FROM scans ORDER BY recorded_at, rowid"
        ).all()
    assert [(r[0], r[1]) for r in rows] == [
        ("rejected", None),
        ("admitted", VIP.bytes),
        ("admitted", VIP.bytes),
    ]


def test_an_entry_into_another_zone_moves_the_person_out_of_the_one_they_were_in(
    venue: Venue,
) -> None:
    _lists(
        venue,
        1,
        [
            _list(venue, ARENA, "Arena", gates=("Arena gate",), zone="Arena"),
            _list(venue, BACKSTAGE, "Backstage", zone="Backstage"),
        ],
    )
    crew = venue.ticket(ticket_type_id="tt-ga")
    venue.peer_admission(crew, gate="Arena gate", at=venue.clock.now() - timedelta(minutes=10))
    with venue.store.write() as conn:
        conn.exec_driver_sql("UPDATE scans SET checkin_list_id = ?, zone = 'Arena'", (ARENA.bytes,))
    moved = venue.gate().scan(venue.code(crew))
    assert moved.admitted
    assert (moved.enters_zone, moved.leaves_zone) == ("Backstage", "Arena")
    assert moved.sentence == "Welcome! Into Backstage, out of Arena."
    with venue.store.read() as conn:
        assert inside_now(conn) == {"Backstage": 1}


def test_a_ticket_the_cache_does_not_know_enters_only_where_a_list_admits_every_type(
    venue: Venue,
) -> None:
    """Admitted on its signature, a ticket has no known type: a gate whose lists all name their
    types cannot tell whether it is one of them, and refuses saying so."""
    _lists(venue, 1, [_list(venue, VIP, "VIP", types=("tt-vip",))])
    unknown = new_id()
    refused = venue.gate().scan(venue.code(unknown))
    _rejected(refused, VerdictReason.NOT_ON_LIST)
    assert "does not know this ticket's type" in refused.sentence
    assert not refused.on_signature

    _lists(venue, 2, [_list(venue, GENERAL, "Everyone")])
    admitted = venue.gate().scan(venue.code(new_id()))
    assert admitted.admitted
    assert admitted.on_signature
    assert admitted.list_name == "Everyone"


def test_an_event_whose_lists_are_scanned_at_other_gates_decides_as_before(venue: Venue) -> None:
    _lists(venue, 1, [_list(venue, VIP, "VIP", types=("tt-vip",), gates=("VIP gate",))])
    gate = venue.gate()
    ticket = venue.ticket(ticket_type_id="tt-ga")
    first = gate.scan(venue.code(ticket))
    assert first.admitted
    assert not first.lists_apply
    venue.clock.advance(10)
    _rejected(gate.scan(venue.code(ticket)), VerdictReason.ALREADY_CHECKED_IN)


def test_an_online_verdict_the_lists_agree_with_records_its_zone_and_says_the_lists_sentence(
    venue: Venue,
) -> None:
    """The server decides with the same lists: where this device's lists agree, the scan keeps
    the list and zone (so the next offline verdict knows the person is backstage before the
    feed's echo says so) and staff read the list's own sentence."""
    _lists(
        venue,
        1,
        [
            _list(venue, ARENA, "Arena", gates=("Arena gate",), zone="Arena"),
            _list(venue, BACKSTAGE, "Backstage", types=("tt-crew",), zone="Backstage"),
        ],
    )
    crew = venue.ticket(ticket_type="Crew", ticket_type_id="tt-crew")
    guest = venue.ticket(ticket_type_id="tt-ga")

    def server_says(request: wire.ValidateRequest) -> wire.Verdict:
        read = read_code(venue.issuer.scanner_ring, request.code)
        assert not isinstance(read, CodeRejection)
        refused = read.ticket_id == guest
        return wire.Verdict(
            result=VerdictResult.REJECTED if refused else VerdictResult.ADMITTED,
            reason=VerdictReason.NOT_ON_LIST if refused else None,
            scan_id=request.scan_id,
            direction=request.direction,
            gate=GATE,
            scanned_at=venue.clock.now(),
            ticket_id=read.ticket_id,
            event_id=venue.gate_event.event_id,
        )

    gate = venue.gate(online=FakeServer(server_says))
    admitted = gate.scan(venue.code(crew))
    assert (admitted.mode, admitted.list_name, admitted.enters_zone) == (
        "online",
        "Backstage",
        "Backstage",
    )
    with venue.store.read() as conn:
        (known,) = admissions_of(conn, venue.store.sealer.lookup(crew))
    assert (known.list_id, known.zone) == (str(BACKSTAGE), "Backstage")
    refused = gate.scan(venue.code(guest))
    assert refused.mode == "online"
    assert refused.sentence == "General admission tickets enter at Arena gate."

    # Offline now: backstage already, so a second entry there is a double entry.
    _next_scan(venue)
    offline = venue.gate(is_online=lambda: False).scan(venue.code(crew))
    _rejected(offline, VerdictReason.ALREADY_CHECKED_IN)


def test_back_into_a_zone_is_a_re_entry_and_a_further_entry_while_inside_is_not(
    reentry_venue: Venue,
) -> None:
    venue = reentry_venue
    arena = wire.CheckinListOut(
        id=ARENA,
        event_id=venue.gate_event.event_id,
        name="Arena",
        ticket_type_ids=[],
        gates=[GATE],
        zone="Arena",
        allow_multiple_entries=True,
    )
    _lists(venue, 1, [arena, _list(venue, BACKSTAGE, "Backstage", gates=("Stage door",))])
    ticket = venue.ticket(ticket_type_id="tt-ga")
    venue.peer_admission(ticket, gate=GATE, at=venue.clock.now() - timedelta(minutes=20))
    venue.peer_admission(ticket, gate="Stage door", at=venue.clock.now() - timedelta(minutes=10))
    with venue.store.write() as conn:
        for list_id, zone, where in ((ARENA, "Arena", GATE), (BACKSTAGE, None, "Stage door")):
            conn.exec_driver_sql(
                "UPDATE scans SET checkin_list_id = ?, zone = ? WHERE gate = ?",
                (list_id.bytes, zone, where),
            )
    gate = venue.gate()
    back = gate.scan(venue.code(ticket))
    assert back.admitted
    assert back.reentry
    assert back.sentence == "Welcome back (re-entry). Into Arena, out of the general area."
    _next_scan(venue)
    again = gate.scan(venue.code(ticket))  # the arena's list allows multiple entries
    assert again.admitted
    assert not again.reentry
    assert again.sentence == "Welcome!"
