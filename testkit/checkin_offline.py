"""A corpus case (tests/data/checkin_rules_corpus.json) decided by the scanner's real offline
gate: the case's event, days, ticket types and lists become a ``CheckinSetup`` applied the way
the changes feed applies it (one page, with the ticket and the other gates' admissions), the
ticket's earlier scans are the peers' admissions from that page and this device's own scans,
and ``Gate.scan`` decides the scanned code at the case's moment, gate and direction.

``OfflineCorpusGate.verdict_for(case)`` answers in the shape of the case's ``expect`` (like
``testkit.checkin_corpus.decide_case``): compare only the keys the case names. One store
serves many cases (reset between them), so that a run of the whole corpus stays quick; the
server-versus-scanner property test reuses it with its own generated cases.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from scanner_app.core.gate import Gate, GateVerdict
from scanner_app.core.standalone import set_up_standalone
from scanner_app.core.store import LocalStore
from scanner_app.core.store.scans import ScanRecord, record_scan
from scanner_app.core.store.state import Enrollment, save_enrollment, save_event
from scanner_app.core.sync.engine import apply_page
from shared import wire
from shared.clock import ManualClock
from shared.domain import Direction, TicketStatus, VerdictResult
from shared.keys import IssuerKeyRing
from shared.ticket_code import issue_code
from testkit.names import name_secret_of, sealed_holder


def list_uuid(corpus_id: str) -> uuid.UUID:
    """A corpus list id ("l-vip") as a UUID, as the server's lists have, keeping the ids'
    order: ``decide`` tries a gate's lists in order of id, and the corpus's ``list-11`` (two
    lists refuse; the first by id gives the refusal) depends on it. The id's bytes, padded:
    hex keeps byte order, so ``str`` of these UUIDs sorts as the corpus ids do."""
    raw = corpus_id.encode()
    if len(raw) > 16:
        raise ValueError(f"corpus list id {corpus_id!r} is longer than 16 bytes")
    return uuid.UUID(bytes=raw.ljust(16, b"\0"))


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def setup_of(raw: dict[str, Any], *, event_id: uuid.UUID, version: int) -> wire.CheckinSetup:
    """The case's event days, ticket types and lists as the feed carries them."""
    event = raw["event"]
    return wire.CheckinSetup(
        event_id=event_id,
        version=version,
        time_zone=event["tz"],
        days=[
            wire.EventDayIn(
                date=datetime.fromisoformat(day["date"]).date(),
                name=day.get("name", ""),
                starts_at=_time(day.get("starts_at")),
                ends_at=_time(day.get("ends_at")),
                admission_at=_time(day.get("admission_at")),
            )
            for day in event["days"]
        ],
        ticket_types=[
            wire.TicketTypeDays(
                id=kind["id"],
                name=kind["name"],
                days=[datetime.fromisoformat(d).date() for d in kind["days"]],
            )
            for kind in raw["ticket_types"]
        ],
        lists=[
            wire.CheckinListOut(
                id=list_uuid(item["id"]),
                event_id=event_id,
                name=item["name"],
                ticket_type_ids=list(item["ticket_type_ids"]),
                gates=list(item["gates"]),
                zone=item["zone"],
                allow_reentry=item["allow_reentry"],
                allow_multiple_entries=item.get("allow_multiple_entries", False),
                windows=[
                    wire.CheckinWindow(
                        opens_at=_time(w.get("opens_at")), closes_at=_time(w.get("closes_at"))
                    )
                    for w in item["windows"]
                ],
                rules=item["rules"],
                explanation=item.get("explanation"),
                archived=item.get("archived", False),
            )
            for item in raw["lists"]
        ],
    )


class OfflineCorpusGate:
    """One scanner store in ``data_dir`` that decides corpus cases one after another."""

    def __init__(self, data_dir: Path) -> None:
        self.store = LocalStore.open(data_dir)
        self.issuer = IssuerKeyRing.generate()
        self.event_id = uuid.UUID(int=0x16E)
        self.device_id = uuid.UUID(int=0x16D)
        self._version = 0
        self._enrollment: Enrollment | None = None

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> OfflineCorpusGate:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def verdict_for(self, raw: dict[str, Any]) -> dict[str, Any]:
        verdict = self.scan(raw)
        return as_expect(raw, verdict)

    def scan(self, raw: dict[str, Any]) -> GateVerdict:
        """Set the store up as the case says, and scan its ticket at its gate."""
        event = raw["event"]
        now = datetime.fromisoformat(raw["now"])
        starts_at = _time(event["starts_at"])
        ends_at = _time(event["ends_at"])
        assert starts_at is not None
        assert ends_at is not None
        gate_event = wire.GateEvent(
            event_id=self.event_id,
            name="Corpus event",
            venue="Corpus venue",
            starts_at=starts_at,
            ends_at=ends_at,
            admission_opens_at=_time(event["admission_at"]),
            allow_reentry=event["allow_reentry"],
        )
        if self._enrollment is None:
            self._enrollment = set_up_standalone(
                self.store,
                gate_event=gate_event,
                keys=self.issuer.scanner_ring,
                gate=raw["gate"],
                now=now,
                device_id=self.device_id,
            )
        self._version += 1
        ticket_id = uuid.uuid4()
        types = {kind["id"]: kind for kind in raw["ticket_types"]}
        zones = {item["id"]: item["zone"] for item in raw["lists"]}
        setup = setup_of(raw, event_id=self.event_id, version=self._version)
        ticket = wire.TicketChange(
            ticket_id=ticket_id,
            event_id=self.event_id,
            status=TicketStatus.ACTIVE,
            secret_version=1,
            ticket_type=types[raw["ticket_type_id"]]["name"],
            sealed_holder=sealed_holder(ticket_id, "Corpus Holder", 1),
            ticket_type_id=raw["ticket_type_id"],
        )
        peers: list[wire.Change] = []
        own: list[ScanRecord] = []
        for index, scan in enumerate(raw["history"]):
            list_id = scan["list_id"]
            at = datetime.fromisoformat(scan["at"])
            direction = Direction(scan["direction"])
            checkin_list = list_uuid(list_id) if list_id is not None else None
            zone = zones.get(list_id) if list_id is not None else None
            scan_id = uuid.uuid4()
            if index % 2 == 0:  # another gate's, from the feed
                peers.append(
                    wire.AdmissionChange(
                        scan_id=scan_id,
                        ticket_id=ticket_id,
                        gate=scan["gate"],
                        direction=direction,
                        scanned_at=at,
                        device_id=uuid.UUID(int=0xBEE),
                        checkin_list_id=checkin_list,
                        zone=zone,
                    )
                )
            else:  # this device's own, decided here
                own.append(
                    ScanRecord(
                        scan_id=scan_id,
                        gate=scan["gate"],
                        direction=direction,
                        at=at,
                        device_time=at,
                        clock_offset_ms=0,
                        result=VerdictResult.ADMITTED,
                        reason=None,
                        mode="offline",
                        code="(corpus history)",
                        device_id=self.device_id,
                        ticket_lookup=self.store.sealer.lookup(ticket_id),
                        ticket_id=ticket_id,
                        checkin_list_id=str(checkin_list) if checkin_list else None,
                        zone=zone,
                    )
                )
        page = wire.ChangesPage(
            changes=[ticket, *peers],
            next_cursor=f"c{self._version}",
            has_more=False,
            server_time=now,
            checkin_setup=setup,
            checkin_setup_version=setup.version,
        )
        with self.store.write() as conn:
            for table in ("scans", "tickets", "upload_queue"):
                conn.exec_driver_sql(f"DELETE FROM {table}")  # noqa: S608 - fixed names
            save_event(conn, gate_event)
            save_enrollment(conn, msgspec.structs.replace(self._enrollment, gate=raw["gate"]))
            applied, stored = apply_page(
                conn, self.store.sealer, page, event_id=self.event_id, now=now
            )
            assert stored is setup, "the case's setup must be one a scanner stores"
            assert applied.tickets == 1
            for record in own:
                record_scan(conn, record, upload=False, now=now)
        code = issue_code(
            self.issuer,
            ticket_id=ticket_id,
            event_id=self.event_id,
            secret_version=1,
            issued_at=now - timedelta(days=30),
            name_secret=name_secret_of(ticket_id),
        )
        gate = Gate(self.store, clock=ManualClock(now))
        return gate.scan(code, direction=Direction(raw["direction"]))


def as_expect(raw: dict[str, Any], verdict: GateVerdict) -> dict[str, Any]:
    """The verdict in the shape of a corpus case's ``expect``."""
    names = {str(list_uuid(item["id"])): item["id"] for item in raw["lists"]}
    got: dict[str, Any] = {
        "lists_apply": verdict.lists_apply,
        "result": verdict.verdict.result.value,
        "reason": verdict.verdict.reason.value if verdict.verdict.reason else None,
        "list_id": names.get(verdict.checkin_list_id or "", verdict.checkin_list_id),
        "leaves_zone": verdict.leaves_zone,
        "enters_zone": verdict.enters_zone,
        "mode": verdict.mode,
    }
    if verdict.verdict.reason is not None:
        got["sentence"] = verdict.sentence
    return got


def offline_verdict_for(raw: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """One case through a fresh scanner store in ``data_dir``."""
    with OfflineCorpusGate(data_dir) as gate:
        return gate.verdict_for(raw)


__all__ = ["OfflineCorpusGate", "as_expect", "list_uuid", "offline_verdict_for", "setup_of"]
