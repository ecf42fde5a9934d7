"""A scan log with one of everything a manager looks for, made by the real core: a gate scans
real codes (admitted, already checked in, revoked, an exit, a forged read), other gates'
admissions arrive through the changes feed, and the server's upload answer marks a double
entry. Shared by the core's scan-log query tests and the app's scan-log tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from scanner_app.core.gate import Gate, GateVerdict
from scanner_app.core.standalone import load_tickets, set_up_standalone
from scanner_app.core.store import LocalStore
from scanner_app.core.store.cache import apply_changes
from scanner_app.core.store.scans import record_outcomes
from scanner_app.core.store.state import save_enrollment
from shared import wire
from shared.clock import ManualClock
from shared.domain import Direction, TicketStatus, VerdictResult
from shared.ids import new_id
from shared.keys import IssuerKeyRing
from shared.ticket_code import issue_code
from testkit.names import name_secret_of, sealed_holder

DOORS = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
HERE = "North"
PEER_GATE = "South"
#: A holder name and ticket type a spreadsheet would run as formulas.
FORMULA_HOLDER = '=HYPERLINK("http://evil")'
FORMULA_TYPE = "+VIP"


@dataclass
class LoggedVenue:
    store: LocalStore
    clock: ManualClock
    issuer: IssuerKeyRing
    gate_event: wire.GateEvent
    gate: Gate
    tickets: dict[str, uuid.UUID] = field(default_factory=dict)
    #: Scan ids by what they are: admitted, again, revoked, exit, forged, conflict, peer...
    scans: dict[str, uuid.UUID] = field(default_factory=dict)

    def ticket(
        self,
        label: str,
        holder: str,
        *,
        status: TicketStatus = TicketStatus.ACTIVE,
        ticket_type: str = "General admission",
    ) -> uuid.UUID:
        ticket_id = new_id()
        load_tickets(
            self.store,
            [
                wire.TicketChange(
                    ticket_id=ticket_id,
                    event_id=self.gate_event.event_id,
                    status=status,
                    secret_version=1,
                    ticket_type=ticket_type,
                    sealed_holder=sealed_holder(ticket_id, holder, 1),
                )
            ],
            self.clock.now(),
        )
        self.tickets[label] = ticket_id
        return ticket_id

    def code(self, label: str) -> str:
        return issue_code(
            self.issuer,
            ticket_id=self.tickets[label],
            event_id=self.gate_event.event_id,
            secret_version=1,
            issued_at=DOORS - timedelta(days=30),
            name_secret=name_secret_of(self.tickets[label]),
        )

    def scan(self, label: str, text: str, direction: Direction = Direction.ENTRY) -> GateVerdict:
        """A guest steps up (after the debounce window) and is scanned at gate North."""
        self.clock.advance(10)
        verdict = self.gate.scan(text, direction=direction)
        assert verdict.verdict.scan_id is not None
        self.scans[label] = verdict.verdict.scan_id
        return verdict

    def peer(
        self, label: str, ticket: str, at: datetime, direction: Direction = Direction.ENTRY
    ) -> wire.AdmissionChange:
        """Another gate's admission, as the changes feed delivers it."""
        change = wire.AdmissionChange(
            scan_id=new_id(),
            ticket_id=self.tickets[ticket],
            gate=PEER_GATE,
            direction=direction,
            scanned_at=at,
            device_id=new_id(),
        )
        with self.store.write() as conn:
            apply_changes(conn, self.store.sealer, [change], self.clock.now())
        self.scans[label] = change.scan_id
        return change


def open_logged_venue(data_dir: Path) -> LoggedVenue:
    """A device at gate North with a server to upload to, and its scan log:

    ====================  ======  =========  ==================  ========================
    label                 gate    direction  result / reason     notes
    ====================  ======  =========  ==================  ========================
    peer_grace            South   entry      admitted            from the feed, DOORS+5m
    admitted (ada)        North   entry      admitted            uploaded, no conflict
    again (ada)           North   entry      already_checked_in  prior = admitted
    revoked (mallory)     North   entry      revoked
    exit (grace)          North   exit       admitted
    forged                North   entry      invalid_code
    conflict (formula)    North   entry      admitted            conflict of peer_formula
    peer_formula          South   entry      admitted            from the feed, DOORS+10m
    ====================  ======  =========  ==================  ========================
    """
    store = LocalStore.open(data_dir)
    clock = ManualClock(DOORS + timedelta(minutes=30))
    issuer = IssuerKeyRing.generate()
    gate_event = wire.GateEvent(
        event_id=new_id(),
        name="Autumn Concert",
        venue="Riverside Hall",
        starts_at=DOORS + timedelta(hours=1),
        ends_at=DOORS + timedelta(hours=5),
        admission_opens_at=DOORS,
    )
    enrollment = set_up_standalone(
        store, gate_event=gate_event, keys=issuer.scanner_ring, gate=HERE, now=clock.now()
    )
    # A server to upload to, so scans are queued (a standalone device queues nothing).
    with store.write() as conn:
        save_enrollment(
            conn, msgspec.structs.replace(enrollment, server_url="https://gatehouse.example")
        )
    venue = LoggedVenue(store, clock, issuer, gate_event, Gate(store, clock=clock))
    venue.ticket("ada", "Ada Lovelace")
    venue.ticket("grace", "Grace Hopper", ticket_type="VIP")
    venue.ticket("mallory", "Mallory Mole", status=TicketStatus.REVOKED)
    venue.ticket("formula", FORMULA_HOLDER, ticket_type=FORMULA_TYPE)

    venue.peer("peer_grace", "grace", DOORS + timedelta(minutes=5))
    assert venue.scan("admitted", venue.code("ada")).admitted
    assert not venue.scan("again", venue.code("ada")).admitted
    assert not venue.scan("revoked", venue.code("mallory")).admitted
    assert venue.scan("exit", venue.code("grace"), Direction.EXIT).admitted
    assert not venue.scan("forged", "GH1NOTAREALCODE").admitted
    assert venue.scan("conflict", venue.code("formula")).admitted
    # The feed then tells of South's earlier admission of the same ticket, and the server's
    # answer to the upload says North's was a double entry.
    south = venue.peer("peer_formula", "formula", DOORS + timedelta(minutes=10))
    with store.write() as conn:
        record_outcomes(
            conn,
            wire.ScanBatchOutcome(
                outcomes=[
                    wire.ScanOutcome(
                        scan_id=venue.scans["admitted"], result=VerdictResult.ADMITTED
                    ),
                    wire.ScanOutcome(
                        scan_id=venue.scans["conflict"],
                        result=VerdictResult.ADMITTED,
                        conflict_of=south.scan_id,
                    ),
                ],
                server_time=clock.now(),
            ),
        )
    return venue
