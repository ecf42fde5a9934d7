"""The demos that run without a server.

Two of them share the ways a code can be bad (forged, tampered, foreign keys):

* ``prepare_demo_store``: the app's demo (``gatehouse-scanner --demo``) — an event happening
  now, about fifty tickets in a fresh embedded store, admissions other gates made earlier, the
  event's check-in lists (issue 16: the arena through gates A to C, a VIP gate into the lounge,
  a stage door into backstage, and a day pass for tomorrow), and one labelled code for each
  verdict a person can try at the gate screen, with the gate to try it at and the verdict it
  must give (the self-test and the tests hold the gate to it);
* ``run_demo``: the command-line demo — issue codes, film them with a simulated gate camera,
  read them back and check them (the code check only).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import cv2
import msgspec
import numpy as np

from scanner_app.core.decoding import QrDecoder
from scanner_app.core.gate import Gate, GateVerdict
from scanner_app.core.standalone import NO_SERVER, load_tickets, set_up_standalone
from scanner_app.core.store import LocalStore, StoreError
from scanner_app.core.store.database import DATABASE_FILE
from scanner_app.core.store.state import load_enrollment, save_enrollment
from scanner_app.core.sync.engine import apply_page
from scanner_app.core.synthetic_frames import render_qr, synthetic_frame
from shared import wire
from shared.domain import Direction, TicketStatus, VerdictReason, VerdictResult
from shared.holder_name import seal_name
from shared.ids import new_id
from shared.keys import EncryptionKey, IssuerKeyRing, ScannerKeyRing, SigningKey
from shared.ticket_code import CodeRejection, issue_code, new_name_secret, read_code


@dataclass(frozen=True, slots=True)
class DemoTicket:
    label: str
    code: str


@dataclass(frozen=True, slots=True)
class DemoScan:
    """One demo case after the camera: what was shown, what was read, what the gate says."""

    ticket: DemoTicket
    frame_path: Path
    read_text: str | None  # None when the decoder found no code in the frame
    decode_ms: float
    verdict: wire.Verdict | None


def check_code(keys: ScannerKeyRing, event_id: uuid.UUID, text: str) -> wire.Verdict:
    """The code-level part of a gate verdict: genuine, readable here, and for this event."""
    code = read_code(keys, text)
    if isinstance(code, CodeRejection):
        return wire.Verdict(result=VerdictResult.REJECTED, reason=code.reason)
    if code.event_id != event_id:
        return wire.Verdict(
            result=VerdictResult.REJECTED,
            reason=VerdictReason.WRONG_EVENT,
            ticket_id=code.ticket_id,
            event_id=code.event_id,
        )
    return wire.Verdict(
        result=VerdictResult.ADMITTED, ticket_id=code.ticket_id, event_id=code.event_id
    )


def forged_code(issuer: IssuerKeyRing, event_id: uuid.UUID, now: datetime) -> str:
    """A code made by someone who stole a scanner: they have its encryption key (and the key
    ids), but must sign with a key of their own, which no gate trusts."""
    stolen = issuer.active_encryption_key
    forger = IssuerKeyRing(
        [SigningKey.generate(issuer.active_signing_key.key_id)],
        [EncryptionKey(stolen.key_id, stolen.secret)],
        active_signing_id=issuer.active_signing_key.key_id,
        active_encryption_id=stolen.key_id,
    )
    return _issue(forger, event_id, now)


def tampered_code(code: str) -> str:
    """``code`` with one character in the middle changed: still valid base32, so only the
    seal can catch it."""
    middle = len(code) // 2
    return code[:middle] + ("A" if code[middle] != "A" else "B") + code[middle + 1 :]


def foreign_key_code(event_id: uuid.UUID, now: datetime) -> str:
    """A well-made code under keys this gate was never given."""
    return _issue(IssuerKeyRing.generate(), event_id, now)


def _issue(
    ring: IssuerKeyRing,
    event_id: uuid.UUID,
    now: datetime,
    *,
    ticket_id: uuid.UUID | None = None,
    secret_version: int = 0,
    name_secret: bytes | None = None,
) -> str:
    return issue_code(
        ring,
        ticket_id=ticket_id or new_id(),
        event_id=event_id,
        secret_version=secret_version,
        issued_at=now,
        name_secret=name_secret,
    )


def demo_tickets(issuer: IssuerKeyRing, event_id: uuid.UUID) -> list[DemoTicket]:
    """A valid ticket and one of each way a code can fail the code check."""
    now = datetime.now(UTC)
    valid = _issue(issuer, event_id, now)
    return [
        DemoTicket("valid ticket", valid),
        DemoTicket("another valid ticket", _issue(issuer, event_id, now)),
        DemoTicket("forged with a stolen scanner's keys", forged_code(issuer, event_id, now)),
        DemoTicket("one character altered", tampered_code(valid)),
        DemoTicket("ticket for another event", _issue(issuer, uuid.uuid4(), now)),
        DemoTicket("issued under keys this gate lacks", foreign_key_code(event_id, now)),
    ]


def run_demo(decoder: QrDecoder, out_dir: Path, seed: int = 7) -> Iterator[DemoScan]:
    """Issue the demo tickets, write each as a QR PNG and as a cluttered camera frame into
    ``out_dir``, decode the frame and check the code. Yields one ``DemoScan`` per ticket.

    Raises ``OSError`` when ``out_dir`` cannot be created or written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    issuer = IssuerKeyRing.generate()  # fresh keys every run: nothing secret lives on disk
    event_id = uuid.uuid4()
    scanner_keys = issuer.scanner_ring
    rng = np.random.default_rng(seed)
    for index, ticket in enumerate(demo_tickets(issuer, event_id), start=1):
        slug = f"{index:02d}-" + "-".join(ticket.label.replace("'", "").split())
        _write(out_dir / f"{slug}-code.png", render_qr(ticket.code, module_px=6))
        frame = synthetic_frame(ticket.code, rng).image
        frame_path = out_dir / f"{slug}-camera.jpg"
        _write(frame_path, frame)

        started = time.perf_counter()
        symbols = decoder.decode(frame)
        decode_ms = (time.perf_counter() - started) * 1000
        text = symbols[0].text if symbols else None
        verdict = check_code(scanner_keys, event_id, text) if text is not None else None
        yield DemoScan(ticket, frame_path, text, decode_ms, verdict)


def _write(path: Path, image: np.typing.NDArray[np.uint8]) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


# --- the app's demo: a store with an event happening now ----------------------------------------

DEMO_EVENT_NAME = "Gatehouse Demo Night"
DEMO_VENUE = "The Demo Hall"
#: The gate this device stands at; the other gates' admissions arrive as the feed brings them.
DEMO_GATE = "Gate A"
#: Written into a demo data folder, so that a fresh demo may wipe it and nothing else.
DEMO_MARKER = "gatehouse-demo.txt"
DEMO_TICKET_COUNT = 50

_GENERAL, _VIP, _LATE = "General admission", "VIP", "Late show"
_DAY_PASS, _CREW = "Day pass", "Crew"
#: The ticket types' ids, which the check-in lists name.
_TYPE_IDS = {
    _GENERAL: "general",
    _VIP: "vip",
    _LATE: "late-show",
    _DAY_PASS: "day-pass",
    _CREW: "crew",
}
#: The other gates a person can stand at in the demo (the device's gate changes with the code).
VIP_GATE, STAGE_DOOR = "VIP gate", "Stage door"
ARENA, LOUNGE, BACKSTAGE = "Arena", "Lounge", "Backstage"
#: The demo's check-in lists, by name: fixed ids, so that the demo's scans name them.
_LIST_IDS = {
    ARENA: uuid.UUID("00000000-0000-4000-8000-0000000000a1"),
    "VIP": uuid.UUID("00000000-0000-4000-8000-0000000000a2"),
    BACKSTAGE: uuid.UUID("00000000-0000-4000-8000-0000000000a3"),
}

# Holders of the tickets nobody is shown a code for: the rest of the audience.
_AUDIENCE = (
    "Emmy Noether", "John von Neumann", "Barbara Liskov", "Edsger Dijkstra", "Frances Allen",
    "Donald Knuth", "Radia Perlman", "Tim Berners-Lee", "Margaret Hamilton", "Dennis Ritchie",
    "Ken Thompson", "Shafi Goldwasser", "Leslie Lamport", "Adele Goldberg", "Claude Shannon",
    "Sophie Wilson", "Niklaus Wirth", "Jean Sammet", "John McCarthy", "Karen Spärck Jones",
    "Tony Hoare", "Anita Borg", "Vint Cerf", "Mary Kenneth Keller", "Bjarne Stroustrup",
    "Evelyn Berezin", "Guido van Rossum", "Ida Rhodes", "Whitfield Diffie", "Lynn Conway",
    "Robin Milner", "Kathleen Booth", "Ralph Merkle", "Joan Clarke", "Martin Hellman",
    "Dorothy Vaughan", "Butler Lampson", "Carol Shaw", "Peter Naur", "Elizabeth Feinler",
    "Fernando Corbató", "Jean Bartik",
)  # fmt: skip


class DemoFolderInUse(StoreError):
    """The folder given for the demo holds a real scanner's data."""


@dataclass(frozen=True, slots=True)
class DemoCode:
    """One code to show the gate, with what the gate must say about it."""

    label: str  # what the demo window shows above the code
    code: str
    result: VerdictResult
    reason: VerdictReason | None = None
    #: Admitted on the code's signature alone (amber): genuine, not on the list yet.
    on_signature: bool = False
    #: What to try with it, in a sentence.
    hint: str = ""
    #: The gate to scan it at (the demo device stands there for it: ``scan_demo_code``).
    gate: str = DEMO_GATE
    #: Where given, the exact sentence staff must read.
    sentence: str | None = None

    @property
    def expected(self) -> str:
        """The verdict it is for, in a few words ("admitted", "rejected: revoked")."""
        if self.reason is not None:
            return f"{self.result}: {self.reason}"
        return f"{self.result} on signature" if self.on_signature else str(self.result)

    def matches(self, verdict: GateVerdict) -> bool:
        """Whether the gate said what this code is for (a first scan of it)."""
        said = (verdict.verdict.result, verdict.verdict.reason, verdict.on_signature)
        if self.sentence is not None and verdict.sentence != self.sentence:
            return False
        return said == (self.result, self.reason, self.on_signature)


@dataclass(frozen=True, slots=True)
class DemoSetup:
    """A demo store, ready for the app: open it with ``LocalStore.open(data_dir)``."""

    data_dir: Path
    gate_event: wire.GateEvent
    gate: str
    codes: tuple[DemoCode, ...]
    tickets: int
    #: Admissions other gates made before the demo began (as the feed would bring them).
    peer_admissions: int
    #: The event's check-in setup (lists, days, ticket types' days), as the feed brings it.
    checkin_setup: wire.CheckinSetup | None = None


def prepare_demo_store(data_dir: Path, *, now: datetime | None = None) -> DemoSetup:
    """Make a fresh demo store in ``data_dir``: "Gatehouse Demo Night" happening now, with fresh
    keys, ``DEMO_TICKET_COUNT`` tickets, other gates' admissions from the last hour, and the
    labelled demo codes. No server: the device queues nothing.

    A folder that held an earlier demo is wiped first (keys are fresh on every run, so old
    codes would not read anyway). Raises ``DemoFolderInUse`` when ``data_dir`` holds a real
    scanner's store, and ``StoreError`` when the folder cannot be written.
    """
    now = now or datetime.now(UTC)
    _fresh_demo_folder(data_dir)
    issuer = IssuerKeyRing.generate()  # nothing secret is kept: codes live as long as the demo
    gate_event = wire.GateEvent(
        event_id=new_id(),
        name=DEMO_EVENT_NAME,
        venue=DEMO_VENUE,
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=4),
        admission_opens_at=now - timedelta(hours=1, minutes=30),
        allow_reentry=True,
    )
    cases = _DemoCases(issuer, gate_event, now)
    store = LocalStore.open(data_dir)
    try:
        set_up_standalone(
            store,
            gate_event=gate_event,
            keys=issuer.scanner_ring,
            gate=DEMO_GATE,
            now=now,
            device_name="demo scanner",
        )
        loaded = load_tickets(store, cases.tickets, now)
        setup = cases.checkin_setup()
        page = wire.ChangesPage(
            changes=list(cases.admissions),
            next_cursor="demo",
            has_more=False,
            server_time=now,
            checkin_setup=setup,
            checkin_setup_version=setup.version,
        )
        with store.write() as conn:
            apply_page(conn, store.sealer, page, event_id=gate_event.event_id, now=now)
        store.checkpoint()
    finally:
        store.close()
    return DemoSetup(
        data_dir=data_dir,
        gate_event=gate_event,
        gate=DEMO_GATE,
        codes=tuple(cases.codes),
        tickets=loaded.tickets,
        peer_admissions=len(cases.admissions),
        checkin_setup=setup,
    )


def stand_at(store: LocalStore, gate: str) -> bool:
    """Move the demo device to ``gate`` (its lists decide from then on); True when it moved.
    Only a device without a server moves: a real scanner's gate is the one it was enrolled
    for. Raises ``StoreError`` for an enrolled device or one without an identity."""
    with store.write() as conn:
        enrollment = load_enrollment(conn)
        if enrollment is None or enrollment.server_url != NO_SERVER:
            raise StoreError("Only the demo scanner can move to another gate.")
        if enrollment.gate == gate:
            return False
        save_enrollment(conn, msgspec.structs.replace(enrollment, gate=gate))
    return True


def scan_demo_code(store: LocalStore, gate: Gate, code: DemoCode) -> GateVerdict:
    """Scan ``code`` at its gate: the device moves there first (and stays)."""
    if stand_at(store, code.gate):
        gate.reload()
    return gate.scan(code.code)


def _fresh_demo_folder(data_dir: Path) -> None:
    marker = data_dir / DEMO_MARKER
    database = data_dir / DATABASE_FILE
    if database.exists() and not marker.exists():
        raise DemoFolderInUse(
            f"{data_dir} holds a scanner's own data; the demo will not overwrite it. "
            "Give the demo an empty folder."
        )
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            (data_dir / f"{DATABASE_FILE}{suffix}").unlink(missing_ok=True)
        marker.write_text(
            "This folder holds a Gatehouse scanner demo; each demo start wipes and refills it.\n"
        )
    except OSError as error:
        raise StoreError(f"Cannot prepare the demo folder {data_dir}: {error}") from error


class _DemoCases:
    """The demo's tickets, other gates' admissions, and the labelled codes, built together so
    that each code's expected verdict follows from the data next to it."""

    def __init__(self, issuer: IssuerKeyRing, gate_event: wire.GateEvent, now: datetime) -> None:
        self.issuer = issuer
        self.event_id = gate_event.event_id
        self.now = now
        #: The event's days, in its time zone (UTC: the demo has no venue's zone).
        self.today = now.astimezone(UTC).date()
        self.tomorrow = self.today + timedelta(days=1)
        self.tickets: list[wire.TicketChange] = []
        self.admissions: list[wire.AdmissionChange] = []
        self.codes: list[DemoCode] = []
        #: Each ticket's name secret, as the server keeps it (its codes carry it).
        self.name_secrets: dict[uuid.UUID, bytes] = {}
        admitted = VerdictResult.ADMITTED
        rejected = VerdictResult.REJECTED

        for name, kind in (("Ada Lovelace", _GENERAL), ("Grace Hopper", _VIP)):
            self._code(
                f"Valid — {name}, {kind}",
                self._ticket(name, kind),
                admitted,
                hint="Scan it: green. Scan it again after 3 s: already checked in.",
            )
        self._code(
            f"Valid — Alan Turing, {_GENERAL}",
            self._ticket("Alan Turing", _GENERAL),
            admitted,
            hint="Scan it at entry, switch the gate to exit and scan, back to entry: re-entry.",
        )
        used = self._ticket("Katherine Johnson", _VIP)
        self._admitted_elsewhere(used, "Gate B", minutes_ago=20)
        self._code(
            "Already used — Katherine Johnson, admitted at Gate B 20 minutes ago",
            used,
            rejected,
            VerdictReason.ALREADY_CHECKED_IN,
        )
        self._code(
            "Revoked — Charles Babbage's ticket was cancelled",
            self._ticket("Charles Babbage", _GENERAL, status=TicketStatus.REVOKED),
            rejected,
            VerdictReason.REVOKED,
        )
        # Transferred to Hedy Lamarr: her new code has secret version 1, the old one 0.
        moved = self._ticket("Hedy Lamarr", _GENERAL, secret_version=1)
        self._code(
            "Superseded — the old code of a ticket transferred to Hedy Lamarr",
            moved,
            rejected,
            VerdictReason.SUPERSEDED,
            secret_version=0,
        )
        self._code(
            "Expired — Konrad Zuse's ticket expired",
            self._ticket("Konrad Zuse", _GENERAL, status=TicketStatus.EXPIRED),
            rejected,
            VerdictReason.EXPIRED,
        )
        self._code(
            f"Not yet valid — Annie Easley, {_LATE} (from {_clock(now + timedelta(hours=2))})",
            self._ticket("Annie Easley", _LATE, valid_from=now + timedelta(hours=2)),
            rejected,
            VerdictReason.NOT_YET_VALID,
        )
        self.codes.append(
            DemoCode(
                "Wrong event — a ticket for another night",
                _issue(issuer, new_id(), now),
                rejected,
                VerdictReason.WRONG_EVENT,
            )
        )
        self.codes.append(
            DemoCode(
                "Forged — signed with a key this gate does not trust",
                forged_code(issuer, self.event_id, now),
                rejected,
                VerdictReason.INVALID_CODE,
            )
        )
        self.codes.append(
            DemoCode(
                "Tampered — one character of Ada's code altered",
                tampered_code(self.codes[0].code),
                rejected,
                VerdictReason.INVALID_CODE,
            )
        )
        self.codes.append(
            DemoCode(
                "Unknown key — made under keys this gate was never given",
                foreign_key_code(self.event_id, now),
                rejected,
                VerdictReason.UNKNOWN_KEY,
            )
        )
        # Sold after the last sync: genuine, for this event, not in the cache.
        self.codes.append(
            DemoCode(
                "Not on the list yet — genuine, sold after the last sync",
                _issue(issuer, self.event_id, now),
                admitted,
                on_signature=True,
                hint="Admitted on its signature alone: amber, not green.",
            )
        )

        # Check-in lists (issue 16). The VIP gate admits VIP tickets only.
        self._code(
            f"At the {VIP_GATE} — Alan Kay, {_GENERAL}",
            self._ticket("Alan Kay", _GENERAL),
            rejected,
            VerdictReason.NOT_ON_LIST,
            gate=VIP_GATE,
            sentence="General admission tickets enter at Gate A, Gate B or Gate C.",
            hint=f"The device stands at the {VIP_GATE} for this one: its list takes VIPs only.",
        )
        # In the arena since a quarter of an hour; the stage door leads backstage.
        crew = self._ticket("Hal Abelson", _CREW)
        self._admitted_elsewhere(crew, "Gate C", minutes_ago=15)
        self._code(
            f"Arena to backstage — Hal Abelson, {_CREW}, in the arena since 15 minutes",
            crew,
            admitted,
            gate=STAGE_DOOR,
            sentence=f"Welcome! Into {BACKSTAGE}, out of {ARENA}.",
            hint=f"At the {STAGE_DOOR}: inside now moves from the arena to backstage.",
        )
        # Last, at Gate A again: a day pass for tomorrow.
        self._code(
            f"Wrong day — Ellen Ochoa's {_DAY_PASS} is for tomorrow",
            self._ticket("Ellen Ochoa", _DAY_PASS),
            rejected,
            VerdictReason.RULE_FAILED,
            sentence=f"{_DAY_PASS} for {_weekday(self.tomorrow)} — today is "
            f"{_weekday(self.today)}.",
        )

        # The rest of the audience; some came in through the other gates in the last hour.
        for index, name in enumerate(_AUDIENCE[: DEMO_TICKET_COUNT - len(self.tickets)]):
            ticket = self._ticket(name, _VIP if index % 5 == 0 else _GENERAL)
            if index % 3 == 0:
                self._admitted_elsewhere(
                    ticket, "Gate B" if index % 2 else "Gate C", minutes_ago=55 - index
                )

    def _ticket(
        self,
        holder: str,
        ticket_type: str,
        *,
        status: TicketStatus = TicketStatus.ACTIVE,
        secret_version: int = 0,
        valid_from: datetime | None = None,
    ) -> wire.TicketChange:
        ticket_id = new_id()
        secret = self.name_secrets[ticket_id] = new_name_secret()
        ticket = wire.TicketChange(
            ticket_id=ticket_id,
            event_id=self.event_id,
            status=status,
            secret_version=secret_version,
            ticket_type=ticket_type,
            ticket_type_id=_TYPE_IDS[ticket_type],
            valid_from=valid_from,
            # Sealed as the server's feed seals it: only the ticket's code opens it.
            sealed_holder=seal_name(
                secret, holder, ticket_id=ticket_id, secret_version=secret_version
            ),
        )
        self.tickets.append(ticket)
        return ticket

    def _admitted_elsewhere(
        self, ticket: wire.TicketChange, gate: str, *, minutes_ago: int
    ) -> None:
        self.admissions.append(
            wire.AdmissionChange(
                scan_id=new_id(),
                ticket_id=ticket.ticket_id,
                gate=gate,
                direction=Direction.ENTRY,
                scanned_at=self.now - timedelta(minutes=minutes_ago),
                device_id=uuid.uuid5(uuid.NAMESPACE_URL, f"gatehouse-demo:{gate}"),
                # Gates A to C scan the arena's list.
                checkin_list_id=_LIST_IDS[ARENA],
                zone=ARENA,
            )
        )

    def checkin_setup(self) -> wire.CheckinSetup:
        """The arena through gates A to C (every ticket type), the VIP gate into the lounge
        (VIP tickets), the stage door into backstage (crew); two days, today and tomorrow, and
        a day pass for tomorrow only."""

        def listed(name: str, types: list[str], gates: list[str], zone: str) -> wire.CheckinListOut:
            return wire.CheckinListOut(
                id=_LIST_IDS[name],
                event_id=self.event_id,
                name=name,
                ticket_type_ids=[_TYPE_IDS[kind] for kind in types],
                gates=gates,
                zone=zone,
            )

        return wire.CheckinSetup(
            event_id=self.event_id,
            version=1,
            time_zone="UTC",
            days=[wire.EventDayIn(date=self.today), wire.EventDayIn(date=self.tomorrow)],
            ticket_types=[
                wire.TicketTypeDays(
                    id=kind_id,
                    name=name,
                    days=[self.tomorrow] if name == _DAY_PASS else [],
                )
                for name, kind_id in _TYPE_IDS.items()
            ],
            lists=[
                listed(ARENA, [], [DEMO_GATE, "Gate B", "Gate C"], ARENA),
                listed("VIP", [_VIP], [VIP_GATE], LOUNGE),
                listed(BACKSTAGE, [_CREW], [STAGE_DOOR], BACKSTAGE),
            ],
        )

    def _code(
        self,
        label: str,
        ticket: wire.TicketChange,
        result: VerdictResult,
        reason: VerdictReason | None = None,
        *,
        secret_version: int | None = None,
        hint: str = "",
        gate: str = DEMO_GATE,
        sentence: str | None = None,
    ) -> None:
        version = ticket.secret_version if secret_version is None else secret_version
        code = _issue(
            self.issuer,
            self.event_id,
            self.now,
            ticket_id=ticket.ticket_id,
            secret_version=version,
            # An older version's code (superseded) had a secret of its own.
            name_secret=self.name_secrets[ticket.ticket_id]
            if version == ticket.secret_version
            else None,
        )
        self.codes.append(
            DemoCode(label, code, result, reason, hint=hint, gate=gate, sentence=sentence)
        )


def _weekday(day: date) -> str:
    # As shared.checkin_lists names days (English, whatever the locale).
    return ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")[
        day.weekday()
    ]


def _clock(moment: datetime) -> str:
    return moment.astimezone().strftime("%H:%M")
