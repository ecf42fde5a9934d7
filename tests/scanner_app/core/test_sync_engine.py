"""The sync engine and its HTTP client against a fake sync server.

``FakeServer`` is a small in-memory server behind ``httpx.MockTransport``: it speaks the same
routes, status codes and msgspec encodings as the real one (JSON; msgpack and gzip for the
feed when asked; RFC 9457 problems with a ``code``), places offline admissions by corrected time
with the shared timeline like the real ingest does, and has switches to make requests fail,
hang or be refused. The scanner side is real: a SQLite ``LocalStore`` in ``tmp_path``, the
``Gate``, the engine, the client — and a ``ManualClock``, so nothing here waits for time to pass
except the background-loop tests, which wait for events with generous timeouts.
"""

from __future__ import annotations

import gzip
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import filelock
import httpx
import msgspec
import pytest

from scanner_app.core.gate import Gate
from scanner_app.core.store import LocalStore
from scanner_app.core.store.cache import admissions_of, find_ticket, inside_now, ticket_count
from scanner_app.core.store.device_token import DeviceCredentials
from scanner_app.core.store.peers import load_peer_credentials, revoked_peers
from scanner_app.core.store.scanlog import find_scan, local_scans
from scanner_app.core.store.scans import (
    PendingOnline,
    ScanRecord,
    annul,
    begin_online,
    queue_length,
    record_scan,
    unresolved_online,
)
from scanner_app.core.store.setup import load_setup
from scanner_app.core.store.state import (
    SyncState,
    load_enrollment,
    load_event,
    load_keys,
    load_sync_state,
    save_enrollment,
)
from scanner_app.core.sync import lab_mode
from scanner_app.core.sync.client import (
    DeviceRejected,
    InsecureServer,
    RequestRefused,
    ServerClient,
    ServerUnavailable,
    SyncError,
)
from scanner_app.core.sync.engine import (
    DEVICE_UNKNOWN,
    LOCK_FILE,
    TOKEN_REFUSED,
    NotEnrolledForSync,
    SyncBusy,
    SyncEngine,
    SyncReport,
    SyncStatus,
    enroll,
)
from shared import wire
from shared.clock import ManualClock
from shared.domain import Direction, TicketStatus, VerdictReason, VerdictResult
from shared.enrollment_link import INSECURE_SERVER_SENTENCE
from shared.ids import new_id
from shared.keys import IssuerKeyRing
from shared.peers import DeviceKey, Refusal, succession_message, verifies_succession
from shared.ticket_code import CodeRejection, issue_code, read_code
from shared.timeline import AdmittedScan, replay
from testkit.names import name_secret_of, sealed_holder
from testkit.peers import TestEvent

SERVER_URL = "https://gatehouse.test"
ENROLLMENT_CODE = "K7Q2-MX4D"
DEVICE_TOKEN = "device-token-of-north-1"  # noqa: S105 - a fake server's token
GATE = "North"
DOORS = datetime(2026, 6, 12, 17, 0, tzinfo=UTC)
MSGPACK = "application/msgpack"
PROBLEM_JSON = "application/problem+json"
# The real server's sentences (sync_server/domain/devices/services.py).
CODE_INVALID = (
    "This enrollment code is not valid or has already been used. Ask a manager for a new one."
)
DEVICE_REVOKED = "This device has been revoked. Ask a manager to enroll it again."

UPLOAD = "/v1/sync/scans"
FEED = "/v1/sync/changes"
ME = "/v1/devices/me"
VALIDATE = "/v1/validate"
ANNUL = "/v1/scans/{scan_id}/annul"
RECORDED = "/v1/sync/scans/{scan_id}"


# --- the fake server ------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """What the fake does instead of answering one request: a problem answer (``status``, with
    ``Retry-After`` when given) or a transport error (``error``: no connection, a timeout).
    With ``after``, the request is handled first and the answer is lost on the way back."""

    status: int = 503
    code: str = "dependency_unavailable"
    detail: str = "The database is not reachable right now. Retry shortly."
    retry_after: str | None = None
    error: type[httpx.TransportError] | None = None
    after: bool = False


@dataclass
class ServerScan:
    scan_id: uuid.UUID
    ticket_id: uuid.UUID | None
    device_id: uuid.UUID
    gate: str
    direction: Direction
    #: Corrected time: what the server orders admissions by.
    at: datetime
    result: VerdictResult
    reason: VerdictReason | None
    conflict_of: uuid.UUID | None = None
    annulled: bool = False
    #: For an online ``already_checked_in``: the admission it ran into.
    prior: uuid.UUID | None = None
    checkin_list_id: uuid.UUID | None = None
    zone: str | None = None


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it."""

    method: str
    route: str
    path: str
    cursor: str | None = None
    accept: str = ""
    scan_ids: tuple[uuid.UUID, ...] = ()
    setup_version: str | None = None


def _problem(status: int, code: str, detail: str, path: str) -> httpx.Response:
    # As sync_server.http.problems.problem_response builds it.
    body = {
        "type": f"https://gatehouse.dev/problems/{code}",
        "title": "Error",
        "status": status,
        "code": code,
        "detail": detail,
        "instance": path,
    }
    return httpx.Response(
        status, content=msgspec.json.encode(body), headers={"content-type": PROBLEM_JSON}
    )


def _json(value: msgspec.Struct, status: int = 200) -> httpx.Response:
    return httpx.Response(
        status, content=msgspec.json.encode(value), headers={"content-type": "application/json"}
    )


_ANNUL_PATH = re.compile(r"^/v1/scans/([0-9a-f-]{36})/annul$")
_RECORDED_PATH = re.compile(r"^/v1/sync/scans/([0-9a-f-]{36})$")


class FakeServer:
    """One tenant, one event, one enrolled device (gate North) and another gate (South)."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        #: How far the server's clock is ahead of the device's.
        self.skew = timedelta(0)
        #: Device-clock time each request takes (half on the way there, half back).
        self.latency = timedelta(0)
        self.issuer = IssuerKeyRing.generate()
        self.gate_event = wire.GateEvent(
            event_id=new_id(),
            name="Midsummer Night",
            venue="Harbour Hall",
            starts_at=DOORS,
            ends_at=DOORS + timedelta(hours=6),
        )
        self.tenant_id = new_id()
        self.device_id = new_id()
        self.south_device_id = new_id()
        self.enrollment_codes = {ENROLLMENT_CODE}
        self.revoked = False
        #: The most changes one feed page holds (the real server caps ``limit`` too).
        self.page_size = 10_000
        self.tickets: dict[uuid.UUID, wire.TicketChange] = {}
        self.scans: dict[uuid.UUID, ServerScan] = {}
        #: Scan ids another device already used: an upload naming one is refused (409).
        self.taken_scan_ids: set[uuid.UUID] = set()
        self.duplicate_uploads: set[uuid.UUID] = set()
        self.seen: list[Seen] = []
        self.pages_sent: list[wire.ChangesPage] = []
        #: Set whenever an upload has been stored.
        self.uploaded = threading.Event()
        self.transport = httpx.MockTransport(self.handle)
        self._failures: dict[str, list[Failure | None]] = {}
        self._holds: dict[str, tuple[threading.Event, threading.Event]] = {}
        self._feed: dict[tuple[str, uuid.UUID], int] = {}
        self._seq = 0
        self._lock = threading.RLock()
        self._touch("keys", self.gate_event.event_id)
        #: The event's check-in setup (issue 16), sent on a feed page whenever the device's
        #: ``setup_version`` differs from its version.
        self.checkin_setup: wire.CheckinSetup | None = None
        #: Peer sync (issue 18): the event's issuer certifies the key a device sends, unless
        #: ``before_peer_sync`` (a server that refuses the field, as a pre-18 one does).
        self.peer_event = TestEvent(tenant_id=self.tenant_id, event_id=self.gate_event.event_id)
        self.before_peer_sync = False
        self.peer_public_key: bytes | None = None
        #: Succession (issue 19): ``before_succession`` refuses the field as an older server
        #: does; the claim received; the devices whose scans are this device's (a proven claim
        #: adds the device it names, as the real server's lineage does).
        self.before_succession = False
        self.succession: wire.Succession | None = None
        self.lineage: set[uuid.UUID] = set()
        self.revoked_peers: list[uuid.UUID] | None = None
        self.peer_lifetime = timedelta(days=2)

    def client_factory(self, url: str, token: str | None) -> ServerClient:
        return ServerClient(url, token, transport=self.transport)

    # --- switches and set-up ------------------------------------------------------------------

    def fail(self, route: str, failure: Failure, *, times: int = 1, after_ok: int = 0) -> None:
        """Let ``after_ok`` requests to ``route`` through, then fail the next ``times``."""
        with self._lock:
            self._failures.setdefault(route, []).extend([None] * after_ok + [failure] * times)

    def hold(self, route: str) -> tuple[threading.Event, threading.Event]:
        """The next request to ``route`` sets the first event and waits for the second."""
        entered, release = threading.Event(), threading.Event()
        with self._lock:
            self._holds[route] = (entered, release)
        return entered, release

    def sell(
        self,
        count: int,
        *,
        ticket_type: str = "General admission",
        ticket_type_id: str | None = None,
    ) -> list[uuid.UUID]:
        with self._lock:
            ids = [new_id() for _ in range(count)]
            for number, ticket_id in enumerate(ids):
                self.tickets[ticket_id] = wire.TicketChange(
                    ticket_id=ticket_id,
                    event_id=self.gate_event.event_id,
                    status=TicketStatus.ACTIVE,
                    secret_version=1,
                    ticket_type=ticket_type,
                    sealed_holder=sealed_holder(ticket_id, f"Guest {number}", 1),
                    ticket_type_id=ticket_type_id,
                )
                self._touch("ticket", ticket_id)
            return ids

    def revoke(self, ticket_id: uuid.UUID) -> None:
        with self._lock:
            self.tickets[ticket_id] = msgspec.structs.replace(
                self.tickets[ticket_id], status=TicketStatus.REVOKED
            )
            self._touch("ticket", ticket_id)

    def rotate_keys(self) -> None:
        """New codes use fresh keys; scanners learn them from /me and the feed."""
        with self._lock:
            self.issuer = self.issuer.rotated()
            self._touch("keys", self.gate_event.event_id)

    def code(self, ticket_id: uuid.UUID) -> str:
        return issue_code(
            self.issuer,
            ticket_id=ticket_id,
            event_id=self.gate_event.event_id,
            secret_version=self.tickets[ticket_id].secret_version,
            issued_at=DOORS - timedelta(days=20),
            name_secret=name_secret_of(ticket_id),
        )

    def admit_elsewhere(
        self,
        ticket_id: uuid.UUID,
        at: datetime,
        *,
        checkin_list_id: uuid.UUID | None = None,
        zone: str | None = None,
    ) -> uuid.UUID:
        """Gate South admitted ``ticket_id`` at ``at`` and its upload has arrived."""
        with self._lock:
            scan = ServerScan(
                new_id(),
                ticket_id,
                self.south_device_id,
                "South",
                Direction.ENTRY,
                at,
                VerdictResult.ADMITTED,
                None,
                checkin_list_id=checkin_list_id,
                zone=zone,
            )
            self.scans[scan.scan_id] = scan
            self._touch("scan", scan.scan_id)
            self._reconcile({ticket_id})
            return scan.scan_id

    # --- what the tests read --------------------------------------------------------------------

    def requests_to(self, route: str, since: int = 0) -> list[Seen]:
        with self._lock:
            return [seen for seen in self.seen[since:] if seen.route == route]

    def upload_sizes(self) -> list[int]:
        return [len(seen.scan_ids) for seen in self.requests_to(UPLOAD)]

    def now(self) -> datetime:
        return self.clock.now() + self.skew

    # --- HTTP -------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        route, scan_id = self._route(request)
        with self._lock:
            self.seen.append(self._seen(route, request))
            hold = self._holds.pop(route, None)
            pending = self._failures.get(route)
            failure = pending.pop(0) if pending else None
        if hold is not None:
            hold[0].set()
            hold[1].wait(10)
        if failure is not None and not failure.after:
            return self._failed(request, failure)
        self.clock.advance(self.latency.total_seconds() / 2)
        with self._lock:
            response = self._answer(route, request, scan_id)
        self.clock.advance(self.latency.total_seconds() / 2)
        if failure is not None:
            return self._failed(request, failure)
        return response

    @staticmethod
    def _route(request: httpx.Request) -> tuple[str, uuid.UUID | None]:
        path = request.url.path
        for pattern, route in ((_ANNUL_PATH, ANNUL), (_RECORDED_PATH, RECORDED)):
            match = pattern.match(path)
            if match and (route != RECORDED or request.method == "GET"):
                return route, uuid.UUID(match.group(1))
        return path, None

    @staticmethod
    def _seen(route: str, request: httpx.Request) -> Seen:
        scan_ids: tuple[uuid.UUID, ...] = ()
        if route == UPLOAD and request.method == "POST":
            batch = msgspec.json.decode(request.content, type=wire.ScanBatch)
            scan_ids = tuple(scan.scan_id for scan in batch.scans)
        return Seen(
            method=request.method,
            route=route,
            path=request.url.path,
            cursor=request.url.params.get("cursor"),
            accept=request.headers.get("accept", ""),
            scan_ids=scan_ids,
            setup_version=request.url.params.get("setup_version"),
        )

    @staticmethod
    def _failed(request: httpx.Request, failure: Failure) -> httpx.Response:
        if failure.error is not None:
            raise failure.error("injected by the fake server", request=request)
        response = _problem(failure.status, failure.code, failure.detail, request.url.path)
        if failure.retry_after is not None:
            response.headers["Retry-After"] = failure.retry_after
        return response

    def _answer(
        self, route: str, request: httpx.Request, scan_id: uuid.UUID | None
    ) -> httpx.Response:
        path = request.url.path
        if route == "/v1/devices/enroll" and request.method == "POST":
            return self._enroll(request)
        if request.headers.get("authorization") != f"Bearer {DEVICE_TOKEN}":
            return _problem(401, "invalid_token", "The token is not valid.", path)
        if self.revoked:
            return _problem(401, "device_revoked", DEVICE_REVOKED, path)
        if route == ME and request.method == "GET":
            return _json(self._me())
        if route == UPLOAD and request.method == "POST":
            return self._ingest(msgspec.json.decode(request.content, type=wire.ScanBatch), path)
        if route == FEED and request.method == "GET":
            return self._changes(request)
        if route == VALIDATE and request.method == "POST":
            return self._validate(msgspec.json.decode(request.content, type=wire.ValidateRequest))
        if route == ANNUL and scan_id is not None:
            return self._annul(scan_id, path)
        if route == RECORDED and scan_id is not None:
            scan = self.scans.get(scan_id)
            if scan_id in self.taken_scan_ids or (scan is not None and not self._own(scan)):
                detail = f"Scan id {scan_id} belongs to another device's scan."
                return _problem(409, "scan_id_taken", detail, path)
            if scan is None:
                return _problem(404, "not_found", "No scan of this device with that id.", path)
            return _json(self._verdict(scan))
        return _problem(404, "not_found", "No such route.", path)

    def _peer_credentials(self) -> wire.PeerCredentials | None:
        if self.peer_public_key is None:
            return None
        issuer = self.peer_event.issuer
        expires_at = self.now() + self.peer_lifetime
        return wire.PeerCredentials(
            certificate=issuer.certify(
                device_id=self.device_id,
                gate=GATE,
                public_key=self.peer_public_key,
                issued_at=self.now(),
                expires_at=expires_at,
            ),
            issuer_public_key=issuer.public_key,
            event_key=self.peer_event.event_key,
            expires_at=expires_at,
        )

    def _own(self, scan: ServerScan) -> bool:
        return scan.device_id == self.device_id or scan.device_id in self.lineage

    def _enroll(self, request: httpx.Request) -> httpx.Response:
        raw = msgspec.json.decode(request.content)
        if self.before_succession and "succeeds" in raw:
            response = _problem(400, "validation_failed", "The request is not valid.", "/")
            extra = b', "errors": [{"message": "Object contains unknown field `succeeds`"}]'
            return httpx.Response(
                400, content=response.content[:-1] + extra + b"}", headers=response.headers
            )
        if self.before_peer_sync and "peer_public_key" in raw:
            # As a pre-18 server's validation problem names the unknown field.
            response = _problem(400, "validation_failed", "The request is not valid.", "/")
            extra = b', "errors": [{"message": "Object contains unknown field `peer_public_key`"}]'
            return httpx.Response(
                400, content=response.content[:-1] + extra + b"}", headers=response.headers
            )
        body = msgspec.json.decode(request.content, type=wire.EnrollRequest)
        previous_key, self.peer_public_key = self.peer_public_key, body.peer_public_key
        if body.code not in self.enrollment_codes:
            return _problem(422, "enrollment_code_invalid", CODE_INVALID, request.url.path)
        self.enrollment_codes.discard(body.code)
        self.succession = body.succeeds
        succeeds = None
        if (
            body.succeeds is not None
            and previous_key is not None
            and verifies_succession(
                previous_key,
                body.succeeds.signature,
                succession_message(body.succeeds.device_id, body.peer_public_key, body.code),
            )
        ):
            succeeds = body.succeeds.device_id
            self.lineage.add(succeeds)
        enrolled = wire.EnrolledDevice(
            device_id=self.device_id,
            device_token=DEVICE_TOKEN,
            tenant_id=self.tenant_id,
            event_id=self.gate_event.event_id,
            gate=GATE,
            keys=self.issuer.scanner_ring.to_wire(),
            server_time=self.now(),
            event=self.gate_event,
            peer=self._peer_credentials(),
            succeeds=succeeds,
        )
        return _json(enrolled, status=201)

    def _me(self) -> wire.DeviceSelf:
        return wire.DeviceSelf(
            device_id=self.device_id,
            name="North 1",
            event_id=self.gate_event.event_id,
            gate=GATE,
            revoked=False,
            keys=self.issuer.scanner_ring.to_wire(),
            server_time=self.now(),
            event=self.gate_event,
            peer=self._peer_credentials(),
            revoked_peers=self.revoked_peers,
        )

    def _ticket_of(self, code: str) -> uuid.UUID | None:
        read = read_code(self.issuer.scanner_ring, code)
        if isinstance(read, CodeRejection) or read.ticket_id not in self.tickets:
            return None
        return read.ticket_id

    def _ingest(self, batch: wire.ScanBatch, path: str) -> httpx.Response:
        for scan in batch.scans:
            stored = self.scans.get(scan.scan_id)
            if scan.scan_id in self.taken_scan_ids or (
                stored is not None and not self._own(stored)
            ):
                detail = f"Scan id {scan.scan_id} belongs to another device's scan."
                return _problem(409, "scan_id_taken", detail, path)
        known = {scan.scan_id for scan in batch.scans if scan.scan_id in self.scans}
        self.duplicate_uploads |= known
        touched: set[uuid.UUID] = set()
        for scan in batch.scans:
            if scan.scan_id in self.scans:
                continue
            ticket_id = self._ticket_of(scan.code)
            self.scans[scan.scan_id] = ServerScan(
                scan.scan_id,
                ticket_id,
                self.device_id,
                scan.gate,
                scan.direction,
                scan.scanned_at + timedelta(milliseconds=scan.clock_offset_ms),
                scan.device_result,
                scan.device_reason,
            )
            if ticket_id is not None and scan.device_result is VerdictResult.ADMITTED:
                touched.add(ticket_id)
                self._touch("scan", scan.scan_id)
        changed = self._reconcile(touched)
        in_batch = {scan.scan_id for scan in batch.scans}
        answer = wire.ScanBatchOutcome(
            outcomes=[
                self._outcome(self.scans[scan.scan_id], duplicate=scan.scan_id in known)
                for scan in batch.scans
            ],
            reclassified=[self._outcome(s) for s in changed if s.scan_id not in in_batch],
            server_time=self.now(),
        )
        self.uploaded.set()
        return _json(answer)

    def _reconcile(self, ticket_ids: set[uuid.UUID]) -> list[ServerScan]:
        """Earliest admission wins (as the real ingest): returns the scans whose conflict
        standing changed."""
        changed: list[ServerScan] = []
        for ticket_id in ticket_ids:
            history = [
                s
                for s in self.scans.values()
                if s.ticket_id == ticket_id
                and s.result is VerdictResult.ADMITTED
                and not s.annulled
            ]
            timeline = replay(
                (AdmittedScan(s.scan_id, s.at, s.direction) for s in history),
                allow_reentry=self.gate_event.allow_reentry,
            )
            for scan in history:
                wanted = timeline.conflicts.get(scan.scan_id)
                if wanted != scan.conflict_of:
                    scan.conflict_of = wanted
                    changed.append(scan)
                    self._touch("scan", scan.scan_id)
        return changed

    @staticmethod
    def _outcome(scan: ServerScan, *, duplicate: bool = False) -> wire.ScanOutcome:
        return wire.ScanOutcome(
            scan_id=scan.scan_id,
            result=scan.result,
            reason=scan.reason,
            conflict_of=scan.conflict_of,
            duplicate_upload=duplicate,
        )

    def _touch(self, kind: str, key: uuid.UUID) -> None:
        """A row changed: it gets the next number of the change sequence."""
        self._seq += 1
        self._feed[(kind, key)] = self._seq

    def _change(self, kind: str, key: uuid.UUID) -> wire.Change | None:
        if kind == "ticket":
            return self.tickets[key]
        if kind == "keys":
            return wire.KeysChange(keys=self.issuer.scanner_ring.to_wire())
        scan = self.scans[key]
        own_and_unchanged = (
            scan.device_id == self.device_id and scan.conflict_of is None and not scan.annulled
        )
        if scan.ticket_id is None or own_and_unchanged:
            return None
        return wire.AdmissionChange(
            scan_id=scan.scan_id,
            ticket_id=scan.ticket_id,
            gate=scan.gate,
            direction=scan.direction,
            scanned_at=scan.at,
            device_id=scan.device_id,
            conflict_of=scan.conflict_of,
            annulled=scan.annulled,
            checkin_list_id=scan.checkin_list_id,
            zone=scan.zone,
        )

    def _changes(self, request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        after = int(cursor[1:]) if cursor else 0
        limit = min(int(request.url.params.get("limit", "5000")), self.page_size)
        pending = sorted((seq, kind, key) for (kind, key), seq in self._feed.items() if seq > after)
        changes = [
            (seq, change)
            for seq, kind, key in pending
            if (change := self._change(kind, key)) is not None
        ]
        page = changes[:limit]
        setup = self.checkin_setup
        has = request.url.params.get("setup_version")
        answer = wire.ChangesPage(
            changes=[change for _, change in page],
            next_cursor=f"c{page[-1][0] if page else after}",
            has_more=len(changes) > limit,
            server_time=self.now(),
            checkin_setup=setup if setup is not None and has != str(setup.version) else None,
            checkin_setup_version=setup.version if setup is not None else 0,
        )
        self.pages_sent.append(answer)
        headers = {"content-type": "application/json"}
        if MSGPACK in request.headers.get("accept", ""):
            body = msgspec.msgpack.encode(answer)
            headers["content-type"] = MSGPACK
        else:
            body = msgspec.json.encode(answer)
        if "gzip" in request.headers.get("accept-encoding", "") and len(body) >= 1024:
            body = gzip.compress(body)
            headers["content-encoding"] = "gzip"
        return httpx.Response(200, content=body, headers=headers)

    def _verdict(self, scan: ServerScan) -> wire.Verdict:
        prior = None
        if scan.prior is not None:
            first = self.scans[scan.prior]
            prior = wire.PriorScan(
                scan_id=first.scan_id,
                scanned_at=first.at,
                gate=first.gate,
                device_id=first.device_id,
            )
        return wire.Verdict(
            result=scan.result,
            reason=scan.reason,
            scan_id=scan.scan_id,
            direction=scan.direction,
            gate=scan.gate,
            scanned_at=scan.at,
            ticket_id=scan.ticket_id,
            event_id=self.gate_event.event_id,
            ticket_type=self.tickets[scan.ticket_id].ticket_type if scan.ticket_id else None,
            prior=prior,
        )

    def _validate(self, request: wire.ValidateRequest) -> httpx.Response:
        scan_id = request.scan_id or new_id()
        if scan_id not in self.scans:
            reason: VerdictReason | None = None
            collides: uuid.UUID | None = None
            read = read_code(self.issuer.scanner_ring, request.code)
            ticket_id = None
            if isinstance(read, CodeRejection):
                reason = read.reason
            elif read.event_id != self.gate_event.event_id:
                reason = VerdictReason.WRONG_EVENT
            elif read.ticket_id not in self.tickets:
                reason = VerdictReason.NOT_FOUND
            elif self.tickets[read.ticket_id].status is TicketStatus.REVOKED:
                reason = VerdictReason.REVOKED
            else:
                ticket_id = read.ticket_id
                history = [
                    AdmittedScan(s.scan_id, s.at, s.direction)
                    for s in self.scans.values()
                    if s.ticket_id == ticket_id
                    and s.result is VerdictResult.ADMITTED
                    and not s.annulled
                ]
                timeline = replay(history, allow_reentry=self.gate_event.allow_reentry)
                if request.direction is Direction.ENTRY:
                    collides = timeline.entry_collides_with(self.gate_event.allow_reentry)
                if collides is not None:
                    reason = VerdictReason.ALREADY_CHECKED_IN
            self.scans[scan_id] = ServerScan(
                scan_id,
                ticket_id,
                self.device_id,
                GATE,
                request.direction,
                self.now(),
                VerdictResult.REJECTED if reason else VerdictResult.ADMITTED,
                reason,
                prior=collides,
            )
        verdict = self._verdict(self.scans[scan_id])
        if verdict.reason is None:
            return _json(verdict)
        return _json(verdict, 409 if verdict.reason is VerdictReason.ALREADY_CHECKED_IN else 422)

    def _annul(self, scan_id: uuid.UUID, path: str) -> httpx.Response:
        scan = self.scans.get(scan_id)
        if scan is None:
            return _problem(404, "not_found", "No scan with that id.", path)
        if scan.result is not VerdictResult.ADMITTED:
            return _problem(422, "not_an_admission", "Only an admitted entry can be undone.", path)
        if scan.annulled:
            return _problem(422, "already_annulled", "This admission was already undone.", path)
        scan.annulled = True
        self._touch("scan", scan_id)
        if scan.ticket_id is not None:
            self._reconcile({scan.ticket_id})
        return _json(self._verdict(scan))


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(DOORS + timedelta(hours=1))


@pytest.fixture
def server(clock: ManualClock) -> FakeServer:
    return FakeServer(clock)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    store = LocalStore.open(tmp_path / "scanner")
    yield store
    store.close()


@pytest.fixture
def engine(store: LocalStore, clock: ManualClock, server: FakeServer) -> Iterator[SyncEngine]:
    """An enrolled scanner's engine (no background loop unless a test starts it)."""
    enroll(
        store,
        SERVER_URL,
        ENROLLMENT_CODE,
        "North 1",
        clock=clock,
        client_factory=server.client_factory,
    )
    engine = SyncEngine(
        store, clock=clock, client_factory=server.client_factory, interval_seconds=3600
    )
    yield engine
    engine.stop()


@pytest.fixture
def gate(store: LocalStore, clock: ManualClock, engine: SyncEngine) -> Gate:
    """The enrolled scanner's gate, deciding offline (online validation is not wired)."""
    return Gate(store, clock=clock)


def scan_offline(gate: Gate, server: FakeServer, tickets: list[uuid.UUID]) -> list[uuid.UUID]:
    ids = []
    for ticket_id in tickets:
        verdict = gate.scan(server.code(ticket_id))
        assert verdict.mode == "offline"
        assert verdict.admitted
        assert verdict.verdict.scan_id is not None
        ids.append(verdict.verdict.scan_id)
    return ids


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def sync_threads_since(before: set[threading.Thread]) -> list[threading.Thread]:
    """Background sync threads started since ``before`` that are still running."""
    return [t for t in threading.enumerate() if t not in before and t.name == "gatehouse-sync"]


def sync_in_thread(engine: SyncEngine) -> tuple[threading.Thread, list[SyncReport]]:
    """``engine.sync_once()`` in another thread; its report lands in the list."""
    reports: list[SyncReport] = []
    thread = threading.Thread(target=lambda: reports.append(engine.sync_once()), name="test-sync")
    thread.start()
    return thread, reports


# --- enrollment --------------------------------------------------------------------------------


def test_enroll_stores_identity_event_keys_and_the_clock_offset(
    store: LocalStore, clock: ManualClock, server: FakeServer
) -> None:
    server.skew = timedelta(seconds=90)  # the server's clock is 90 s ahead of this device's
    server.latency = timedelta(seconds=2)
    enrollment = enroll(
        store,
        SERVER_URL + "/",
        f"  {ENROLLMENT_CODE} ",
        "North 1",
        clock=clock,
        client_factory=server.client_factory,
    )

    assert enrollment.device_id == server.device_id
    assert enrollment.server_url == SERVER_URL
    assert (enrollment.gate, enrollment.event_id) == (GATE, server.gate_event.event_id)
    credentials = DeviceCredentials.decode(store.vault.load())
    assert credentials is not None
    assert credentials.access == DEVICE_TOKEN
    assert DEVICE_TOKEN not in repr(enrollment)
    with store.read() as conn:
        assert load_enrollment(conn) == enrollment
        assert load_event(conn, server.gate_event.event_id) == server.gate_event
        keys = load_keys(conn)
        state = load_sync_state(conn)
    assert keys.verify_key_ids == server.issuer.scanner_ring.verify_key_ids
    assert keys.encryption_key_ids == server.issuer.scanner_ring.encryption_key_ids
    # Server time against the midpoint of the request: the 2 s round trip does not count.
    assert state.clock_offset_ms == pytest.approx(90_000, abs=1)
    assert state.last_contact_at == clock.now()
    assert state.cursor is None

    engine = SyncEngine(store, clock=clock, client_factory=server.client_factory)
    assert engine.is_online()
    assert engine.status().clock_offset_ms == pytest.approx(90_000, abs=1)
    # The keys read codes, and scans are timed on the server's clock.
    (ticket,) = server.sell(1)
    verdict = Gate(store, clock=clock).scan(server.code(ticket))
    assert verdict.admitted
    assert verdict.verdict.scanned_at == clock.now() + timedelta(seconds=90)


def test_a_refused_enrollment_code_says_why_and_stores_nothing(
    store: LocalStore, clock: ManualClock, server: FakeServer
) -> None:
    with pytest.raises(RequestRefused) as refused:
        enroll(
            store,
            SERVER_URL,
            "USED-CODE",
            "North 1",
            clock=clock,
            client_factory=server.client_factory,
        )

    assert refused.value.status == 422
    assert refused.value.code == "enrollment_code_invalid"
    assert refused.value.detail == CODE_INVALID
    with store.read() as conn:
        assert load_enrollment(conn) is None
        assert load_sync_state(conn) == SyncState()
        assert not load_keys(conn).verify_key_ids
    with pytest.raises(NotEnrolledForSync):
        SyncEngine(store, clock=clock, client_factory=server.client_factory).sync_once()


def test_sync_measures_the_clock_offset_again(
    engine: SyncEngine, clock: ManualClock, server: FakeServer
) -> None:
    server.skew = timedelta(seconds=-30)
    server.latency = timedelta(milliseconds=400)

    assert engine.sync_once().ok
    assert engine.status().clock_offset_ms == pytest.approx(-30_000, abs=1)


def test_new_keys_reach_the_gate_through_the_data_listener(
    store: LocalStore, clock: ManualClock, server: FakeServer, engine: SyncEngine, gate: Gate
) -> None:
    server.rotate_keys()
    (ticket,) = server.sell(1)
    reloads: list[bool] = []

    def reload() -> None:
        reloads.append(True)
        gate.reload()

    engine.set_data_listener(reload)
    report = engine.sync_once()

    assert report.ok
    assert report.new_keys == 2  # a verify key and an encryption key
    assert reloads
    verdict = gate.scan(server.code(ticket))  # made with the new keys
    assert verdict.admitted
    assert not verdict.on_signature  # and the ticket came with the same sync

    def broken() -> None:
        raise RuntimeError("a listener's bug")

    engine.set_data_listener(broken)
    server.sell(1)
    assert engine.sync_once().ok  # a listener's bug does not stop syncing


# --- uploads -------------------------------------------------------------------------------------


def test_the_queue_goes_up_in_batches_of_at_most_1000(
    store: LocalStore, clock: ManualClock, server: FakeServer, engine: SyncEngine, gate: Gate
) -> None:
    tickets = server.sell(2500)
    made_by_gate = scan_offline(gate, server, tickets[:3])
    # The other 2,497 exactly as the gate records them, in one transaction (one durable commit
    # per Gate.scan would make this test slow without testing anything more).
    queued: list[uuid.UUID] = []
    with store.write() as conn:
        for ticket_id in tickets[3:]:
            scan_id = new_id()
            record_scan(
                conn,
                ScanRecord(
                    scan_id=scan_id,
                    gate=GATE,
                    direction=Direction.ENTRY,
                    at=clock.now(),
                    device_time=clock.now(),
                    clock_offset_ms=0,
                    result=VerdictResult.ADMITTED,
                    reason=None,
                    mode="offline",
                    code=server.code(ticket_id),
                    device_id=server.device_id,
                    ticket_lookup=store.sealer.lookup(ticket_id),
                    ticket_id=ticket_id,
                ),
                upload=True,
                now=clock.now(),
            )
            queued.append(scan_id)
    assert engine.status().queued == 2500

    report = engine.sync_once()

    assert report.ok
    assert report.uploaded == 2500
    assert server.upload_sizes() == [1000, 1000, 500]
    assert server.requests_to(UPLOAD)[0].scan_ids[:3] == tuple(made_by_gate)  # oldest first
    assert set(server.scans) == set(made_by_gate + queued)
    assert engine.status().queued == 0
    with store.read() as conn:
        logged = local_scans(conn, limit=3000)
    assert len(logged) == 2500
    assert all(scan.uploaded and scan.server_result == "admitted" for scan in logged)


def test_a_conflict_found_by_the_server_lands_on_the_local_scan(
    store: LocalStore, clock: ManualClock, server: FakeServer, engine: SyncEngine, gate: Gate
) -> None:
    doubled, clean = server.sell(2)
    # South admitted the ticket five minutes ago; this gate has not heard of it yet.
    south = server.admit_elsewhere(doubled, clock.now() - timedelta(minutes=5))
    ours, other = scan_offline(gate, server, [doubled, clean])

    report = engine.sync_once()

    assert report.ok
    assert report.new_conflicts == 1
    with store.read() as conn:
        mine = find_scan(conn, ours)
        fine = find_scan(conn, other)
    assert mine is not None
    assert fine is not None
    assert mine.conflict_of == south
    assert mine.result is VerdictResult.ADMITTED  # what happened at the gate stands
    assert mine.server_result == "admitted"
    assert fine.conflict_of is None
    assert engine.status().conflicts == 1
    # A conflict no longer counts as an admission: the ticket is inside on South's entry.
    clock.advance(10)
    again = gate.scan(server.code(doubled))
    assert again.verdict.reason is VerdictReason.ALREADY_CHECKED_IN
    assert again.verdict.prior is not None
    assert again.verdict.prior.scan_id == south


def test_scans_reclassified_by_an_upload_are_updated_from_its_answer(
    store: LocalStore, clock: ManualClock, server: FakeServer, engine: SyncEngine, gate: Gate
) -> None:
    (ticket,) = server.sell(1)
    # A sync is downloading (its upload found nothing to send) when this gate admits the ticket.
    entered, release = server.hold(FEED)
    first_sync, reports = sync_in_thread(engine)
    try:
        assert entered.wait(10)
        (ours,) = scan_offline(gate, server, [ticket])
        clock.advance(20)
        south = server.admit_elsewhere(ticket, clock.now())  # 20 s later, uploaded at once
    finally:
        release.set()
        first_sync.join(10)
    assert reports[0].ok
    with store.read() as conn:
        known = find_scan(conn, south)
    assert known is not None  # the download brought South's admission
    assert known.conflict_of is None
    # Only the upload's answer can tell now: the download will fail.
    server.fail(FEED, Failure(error=httpx.ConnectError))

    report = engine.sync_once()

    assert report.uploaded == 1
    assert not report.ok
    assert report.new_conflicts == 1
    with store.read() as conn:
        reclassified = find_scan(conn, south)
        mine = find_scan(conn, ours)
    assert reclassified is not None
    assert mine is not None
    assert reclassified.conflict_of == ours  # ours was earlier: South's is the double entry
    assert reclassified.server_result == "admitted"
    assert mine.conflict_of is None
    assert engine.status().conflicts == 1


@pytest.mark.parametrize(
    ("queued", "uploads"), [(5, [5, 1, 1, 1, 1, 1]), (1, [1])], ids=["in-a-batch", "alone"]
)
def test_a_refused_batch_is_retried_scan_by_scan_and_the_poison_scan_leaves_the_queue(
    queued: int,
    uploads: list[int],
    store: LocalStore,
    server: FakeServer,
    engine: SyncEngine,
    gate: Gate,
) -> None:
    ids = scan_offline(gate, server, server.sell(queued))
    poison = ids[queued // 2]
    server.taken_scan_ids.add(poison)

    report = engine.sync_once()

    assert report.ok
    assert (report.uploaded, report.refused) == (queued - 1, 1)
    assert server.upload_sizes() == uploads
    assert set(server.scans) == set(ids) - {poison}
    assert engine.status().queued == 0
    with store.read() as conn:
        refused = find_scan(conn, poison)
        others = [find_scan(conn, scan_id) for scan_id in ids if scan_id != poison]
    assert refused is not None
    assert refused.server_result == "refused"
    assert refused.server_reason == f"Scan id {poison} belongs to another device's scan."
    assert refused.result is VerdictResult.ADMITTED  # kept in the log as it happened
    assert refused.uploaded  # i.e. no longer queued
    assert all(o is not None and o.server_result == "admitted" for o in others)
    # It is not sent again.
    before = len(server.seen)
    assert engine.sync_once().ok
    assert server.requests_to(UPLOAD, since=before) == []


def test_an_annulment_is_sent_only_after_its_scan(
    store: LocalStore, clock: ManualClock, server: FakeServer, engine: SyncEngine, gate: Gate
) -> None:
    (scan_id,) = scan_offline(gate, server, server.sell(1))
    with store.write() as conn:
        assert annul(conn, scan_id, clock.now())
    server.fail(UPLOAD, Failure(status=503, retry_after="1"))

    assert not engine.sync_once().ok  # the scan could not go up...
    assert server.requests_to(ANNUL) == []  # ...so its annulment waits
    assert engine.status().queued == 2

    clock.advance(5)
    before = len(server.seen)
    report = engine.sync_once()

    assert report.ok
    assert report.annulments == 1
    sent = [(s.route, s.scan_ids or (s.path,)) for s in server.seen[before:]]
    uploads = [i for i, (route, ids) in enumerate(sent) if route == UPLOAD and scan_id in ids]
    annulments = [i for i, (route, _) in enumerate(sent) if route == ANNUL]
    assert len(uploads) == 1
    assert len(annulments) == 1
    assert uploads[0] < annulments[0]
    assert server.requests_to(ANNUL)[0].path == f"/v1/scans/{scan_id}/annul"
    assert server.scans[scan_id].annulled
    assert engine.status().queued == 0
    with store.read() as conn:
        logged = find_scan(conn, scan_id)
    assert logged is not None
    assert logged.annulled


def test_an_annulment_the_server_refuses_leaves_the_queue(
    store: LocalStore, clock: ManualClock, server: FakeServer, engine: SyncEngine, gate: Gate
) -> None:
    (scan_id,) = scan_offline(gate, server, server.sell(1))
    assert engine.sync_once().ok
    server.scans[scan_id].annulled = True  # a manager undid it on the server meanwhile
    with store.write() as conn:
        assert annul(conn, scan_id, clock.now())

    report = engine.sync_once()

    assert report.ok
    assert len(server.requests_to(ANNUL)) == 1  # answered 422 already_annulled
    assert engine.status().queued == 0  # nothing left to retry
    before = len(server.seen)
    assert engine.sync_once().ok
    assert server.requests_to(ANNUL, since=before) == []


# --- the changes feed ----------------------------------------------------------------------------


def test_the_feed_resumes_from_the_saved_cursor_after_a_dropped_connection(
    store: LocalStore, clock: ManualClock, server: FakeServer, engine: SyncEngine
) -> None:
    server.page_size = 10
    tickets = server.sell(25)
    server.fail(FEED, Failure(error=httpx.ConnectError), after_ok=1)

    report = engine.sync_once()

    assert not report.ok
    assert report.pages == 1
    first_page = server.pages_sent[0]
    assert first_page.has_more
    with store.read() as conn:
        saved = load_sync_state(conn).cursor
        applied = ticket_count(conn)
    assert saved == first_page.next_cursor  # page 1 stays applied, with its cursor
    assert applied == sum(isinstance(c, wire.TicketChange) for c in first_page.changes) > 0

    # While the scanner is away, a ticket it already has is revoked and more are sold.
    server.revoke(tickets[0])
    tickets += server.sell(3)
    # The scanner restarts: the cursor comes from its data file.
    restarted = SyncEngine(store, clock=clock, client_factory=server.client_factory)
    before = len(server.seen)
    clock.advance(5)
    report = restarted.sync_once()

    assert report.ok
    feed = server.requests_to(FEED, since=before)
    assert feed[0].cursor == saved
    assert len(feed) > 1
    assert all(MSGPACK in request.accept for request in server.requests_to(FEED))
    with store.read() as conn:
        assert ticket_count(conn) == len(server.tickets) == 28
        for ticket_id in tickets:
            cached = find_ticket(conn, store.sealer.lookup(ticket_id))
            assert cached is not None
            assert cached.status is server.tickets[ticket_id].status
            assert cached.secret_version == server.tickets[ticket_id].secret_version
        assert load_sync_state(conn).cursor == server.pages_sent[-1].next_cursor
        revoked = find_ticket(conn, store.sealer.lookup(tickets[0]))
    assert revoked is not None
    assert revoked.status is TicketStatus.REVOKED


# --- failures, backoff, revocation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "retry_after"),
    [(503, "dependency_unavailable", 30), (429, "rate_limited", 45)],
    ids=["503", "429"],
)
def test_a_busy_server_is_retried_no_sooner_than_it_asked_and_nothing_is_lost(
    status: int,
    code: str,
    retry_after: int,
    store: LocalStore,
    clock: ManualClock,
    server: FakeServer,
    engine: SyncEngine,
    gate: Gate,
) -> None:
    ids = scan_offline(gate, server, server.sell(3))
    server.fail(UPLOAD, Failure(status=status, code=code, retry_after=str(retry_after)))

    report = engine.sync_once()

    assert not report.ok
    status_now = engine.status()
    assert not status_now.online
    assert not engine.is_online()
    assert status_now.offline_reason
    assert status_now.next_retry_at is not None
    assert status_now.next_retry_at >= clock.now() + timedelta(seconds=retry_after)
    assert status_now.queued == 3
    assert server.scans == {}
    with store.read() as conn:
        assert load_sync_state(conn).failures == 1
        assert len(local_scans(conn)) == 3

    clock.advance(retry_after)
    report = engine.sync_once()

    assert report.ok
    recovered = engine.status()
    assert recovered.online
    assert engine.is_online()
    assert recovered.offline_reason is None
    assert recovered.next_retry_at is None
    assert recovered.queued == 0
    assert recovered.last_sync_at == clock.now()
    with store.read() as conn:
        assert load_sync_state(conn).failures == 0
    assert set(server.scans) == set(ids)
    assert sum(server.upload_sizes()) == 6  # the 3 scans, twice: once refused, once stored


def test_backoff_doubles_with_each_failure_up_to_a_minute(
    store: LocalStore, clock: ManualClock, server: FakeServer, engine: SyncEngine
) -> None:
    server.fail(ME, Failure(error=httpx.ConnectError), times=6)
    server.fail(ME, Failure(error=httpx.ReadTimeout), times=6)
    delays = []
    for _ in range(12):
        assert not engine.sync_once().ok
        retry_at = engine.status().next_retry_at
        assert retry_at is not None
        delays.append((retry_at - clock.now()).total_seconds())

    for failures, delay in enumerate(delays, start=1):
        ceiling = min(60.0, 2.0 ** (failures - 1))
        assert ceiling / 2 <= delay <= ceiling, (failures, delay)
    assert delays[:7] == sorted(delays[:7])  # grows until the cap (jitter stays within a step)
    assert max(delays) <= 60
    with store.read() as conn:
        assert load_sync_state(conn).failures == 12

    assert engine.sync_once().ok
    assert engine.status().next_retry_at is None
    with store.read() as conn:
        assert load_sync_state(conn).failures == 0


def test_a_revoked_device_stops_syncing(server: FakeServer, engine: SyncEngine) -> None:
    server.revoked = True
    before = set(threading.enumerate())
    engine.start()
    try:
        assert wait_until(lambda: engine.status().revoked)
        status = engine.status()
        assert not status.online
        assert status.offline_reason == DEVICE_REVOKED
        asked = len(server.seen)
        assert asked >= 1
        engine.wake()
        time.sleep(0.3)
        engine.wake()
        time.sleep(0.3)
        assert len(server.seen) == asked  # no further requests
    finally:
        engine.stop()
    assert sync_threads_since(before) == []


def test_the_background_loop_keeps_to_the_backoff_even_when_woken(
    clock: ManualClock, server: FakeServer, engine: SyncEngine
) -> None:
    server.fail(ME, Failure(status=503, retry_after="30"))
    engine.start()
    try:
        assert wait_until(lambda: engine.status().offline_reason is not None)
        asked = len(server.seen)
        engine.wake()  # e.g. a scan was queued
        time.sleep(0.3)
        assert len(server.seen) == asked  # the server asked for 30 s of quiet
        clock.advance(31)
        engine.wake()
        assert wait_until(lambda: engine.status().online)
        assert len(server.seen) > asked
    finally:
        engine.stop()


def test_an_online_check_that_finds_the_device_revoked_stops_it(
    clock: ManualClock, server: FakeServer, engine: SyncEngine
) -> None:
    (ticket,) = server.sell(1)
    server.revoked = True

    answer = engine.online_check(wire.ValidateRequest(code=server.code(ticket), scan_id=new_id()))

    assert answer is None  # the gate decides offline
    assert engine.status().revoked
    assert not engine.is_online()
    asked = len(server.seen)
    assert engine.online_check(wire.ValidateRequest(code=server.code(ticket))) is None
    assert len(server.seen) == asked  # not asked again


# --- online validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        Failure(error=httpx.ReadTimeout),
        Failure(error=httpx.ConnectError),
        Failure(error=httpx.ReadTimeout, after=True),
        Failure(status=503),
    ],
    ids=["timeout", "no-connection", "answer-lost", "503"],
)
def test_a_failed_online_check_makes_the_gate_decide_offline_until_a_sync(
    failure: Failure,
    store: LocalStore,
    clock: ManualClock,
    server: FakeServer,
    engine: SyncEngine,
) -> None:
    gate = Gate(store, clock=clock, online=engine.online_check, is_online=engine.is_online)
    tickets = server.sell(4)

    first = gate.scan(server.code(tickets[0]))
    assert (first.mode, first.admitted) == ("online", True)
    assert len(server.requests_to(VALIDATE)) == 1

    server.fail(VALIDATE, failure)
    second = gate.scan(server.code(tickets[1]))
    assert (second.mode, second.admitted) == ("offline", True)
    assert len(server.requests_to(VALIDATE)) == 2
    assert not engine.is_online()
    assert engine.status().offline_reason

    third = gate.scan(server.code(tickets[2]))
    assert third.mode == "offline"
    assert len(server.requests_to(VALIDATE)) == 2  # decided at once, without asking

    clock.advance(60)
    assert engine.sync_once().ok
    assert engine.is_online()
    assert second.verdict.scan_id in server.scans  # the fallback's scan id, uploaded
    # When the server had recorded the question, the upload is recognised as that same scan.
    assert (second.verdict.scan_id in server.duplicate_uploads) == failure.after

    fourth = gate.scan(server.code(tickets[3]))
    assert fourth.mode == "online"
    assert len(server.requests_to(VALIDATE)) == 3


def test_online_check_returns_the_servers_verdict(
    clock: ManualClock, server: FakeServer, engine: SyncEngine
) -> None:
    (ticket,) = server.sell(1)
    first_id, second_id = new_id(), new_id()

    admitted = engine.online_check(
        wire.ValidateRequest(code=server.code(ticket), scan_id=first_id, scanned_at=clock.now())
    )
    clock.advance(30)
    refused = engine.online_check(
        wire.ValidateRequest(code=server.code(ticket), scan_id=second_id, scanned_at=clock.now())
    )

    assert admitted is not None
    assert admitted.result is VerdictResult.ADMITTED
    assert refused is not None  # 409 carries a verdict too
    assert refused.reason is VerdictReason.ALREADY_CHECKED_IN
    assert refused.prior is not None
    assert refused.prior.scan_id == first_id
    assert engine.is_online()


# --- one sync at a time -------------------------------------------------------------------------


def test_only_one_sync_runs_at_a_time(
    store: LocalStore, clock: ManualClock, server: FakeServer, engine: SyncEngine
) -> None:
    other_store = LocalStore.open(store.path.parent)  # another program on the same data folder
    try:
        other = SyncEngine(other_store, clock=clock, client_factory=server.client_factory)
        entered, release = server.hold(ME)
        running, reports = sync_in_thread(engine)
        try:
            assert entered.wait(10)
            assert engine.status().syncing
            with pytest.raises(SyncBusy):
                engine.sync_once()
            with pytest.raises(SyncBusy):
                other.sync_once()
            assert len(server.requests_to(ME)) == 1  # neither of them asked anything
        finally:
            release.set()
            running.join(10)
        assert reports[0].ok
        assert not engine.status().syncing
        assert other.sync_once().ok  # its turn now
    finally:
        other_store.close()


def test_the_background_loop_waits_its_turn_while_another_program_syncs(
    store: LocalStore, clock: ManualClock, server: FakeServer, engine: SyncEngine
) -> None:
    statuses: list[SyncStatus] = []
    looping = SyncEngine(
        store,
        clock=clock,
        client_factory=server.client_factory,
        on_status=statuses.append,
        interval_seconds=3600,
    )
    other_program = filelock.FileLock(str(store.path.parent / LOCK_FILE))
    other_program.acquire()
    asked = len(server.seen)
    try:
        looping.wake()  # a scan was queued
        looping.start()
        assert wait_until(lambda: len(statuses) >= 1)  # it tried and found the folder busy...
        time.sleep(0.5)
        assert len(statuses) <= 3  # ...and waits a second before trying again: no spinning
        assert len(server.seen) == asked
        other_program.release()
        assert wait_until(lambda: looping.status().last_sync_at is not None)
    finally:
        looping.stop()
        if other_program.is_locked:
            other_program.release()


# --- the background loop ------------------------------------------------------------------------


def test_the_background_loop_uploads_a_queued_scan_when_woken(
    store: LocalStore, clock: ManualClock, server: FakeServer, engine: SyncEngine, gate: Gate
) -> None:
    before = set(threading.enumerate())
    engine.start()
    try:
        assert wait_until(lambda: engine.status().last_sync_at is not None)  # first sync
        assert not server.uploaded.is_set()
        (scan_id,) = scan_offline(gate, server, server.sell(1))
        engine.wake()
        assert server.uploaded.wait(10)
        assert scan_id in server.scans
        assert wait_until(lambda: engine.status().queued == 0)
    finally:
        engine.stop()
    assert sync_threads_since(before) == []


# --- the client's error mapping -----------------------------------------------------------------


def _answering(response: httpx.Response) -> ServerClient:
    return ServerClient(SERVER_URL, DEVICE_TOKEN, transport=httpx.MockTransport(lambda _: response))


@pytest.mark.parametrize(
    ("response", "error", "attributes"),
    [
        (
            _problem(503, "dependency_unavailable", "Database down.", ME),
            ServerUnavailable,
            {"retry_after": None},
        ),
        (
            httpx.Response(
                503,
                content=msgspec.json.encode({"code": "dependency_unavailable", "detail": "x"}),
                headers={"Retry-After": "30"},
            ),
            ServerUnavailable,
            {"retry_after": 30.0},
        ),
        (
            httpx.Response(429, content=b'{"code":"rate_limited"}', headers={"Retry-After": "45"}),
            ServerUnavailable,
            {"retry_after": 45.0},
        ),
        (
            httpx.Response(
                503, content=b"down", headers={"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}
            ),
            ServerUnavailable,
            {"retry_after": None},
        ),
        (httpx.Response(502, content=b"<html>Bad gateway</html>"), ServerUnavailable, {}),
        (
            _problem(401, "device_revoked", DEVICE_REVOKED, ME),
            DeviceRejected,
            {"code": "device_revoked", "args": (DEVICE_REVOKED,)},
        ),
        (
            _problem(403, "wrong_role", "This needs a scanner token.", ME),
            RequestRefused,
            {"status": 403, "code": "wrong_role", "detail": "This needs a scanner token."},
        ),
        (httpx.Response(200, content=b"{not json"), ServerUnavailable, {}),
    ],
    ids=[
        "503",
        "503-retry-after",
        "429-retry-after",
        "retry-after-date",
        "502-html",
        "401",
        "403",
        "garbage",
    ],
)
def test_the_client_maps_answers_to_three_errors(
    response: httpx.Response, error: type[SyncError], attributes: dict[str, object]
) -> None:
    with _answering(response) as client, pytest.raises(error) as raised:
        client.me()
    for name, value in attributes.items():
        assert getattr(raised.value, name) == value


def test_validate_reads_a_verdict_from_422_but_not_a_problem() -> None:
    rejected = wire.Verdict(result=VerdictResult.REJECTED, reason=VerdictReason.REVOKED)
    with _answering(_json(rejected, 422)) as client:
        assert client.validate(wire.ValidateRequest(code="GH1X"), timeout=0.8) == rejected
    problem = _problem(422, "unprocessable", "Bad direction.", VALIDATE)
    with _answering(problem) as client, pytest.raises(RequestRefused):
        client.validate(wire.ValidateRequest(code="GH1X"), timeout=0.8)


# --- crashes and a server that forgot -----------------------------------------------------------


def test_an_online_question_cut_off_by_a_crash_is_resolved_by_the_next_sync(
    store: LocalStore, clock: ManualClock, server: FakeServer, engine: SyncEngine
) -> None:
    arrived, lost = server.sell(2)
    assert engine.sync_once().ok
    enrollment = engine.enrollment
    assert enrollment is not None
    asked_id, never_id = new_id(), new_id()
    # The scanner wrote both questions down, asked the first (the server recorded it) and
    # died before it recorded the answer; the second never left the device.
    with store.write() as conn:
        begin_online(
            conn, PendingOnline(asked_id, server.code(arrived), Direction.ENTRY, clock.now())
        )
        begin_online(conn, PendingOnline(never_id, server.code(lost), Direction.ENTRY, clock.now()))
    with ServerClient(SERVER_URL, DEVICE_TOKEN, transport=server.transport) as client:
        request = wire.ValidateRequest(code=server.code(arrived), scan_id=asked_id)
        assert client.validate(request, timeout=5).result is VerdictResult.ADMITTED

    clock.advance(11)  # no longer possibly in flight
    report = engine.sync_once()

    assert report.ok, report.errors
    assert report.recovered == 1
    with store.read() as conn:
        assert unresolved_online(conn, clock.now() + timedelta(days=1)) == []
        recovered = find_scan(conn, asked_id)
        assert find_scan(conn, never_id) is None
        assert queue_length(conn) == 0
    assert recovered is not None
    assert (recovered.result, recovered.mode) == (VerdictResult.ADMITTED, "online")
    # Its verdict was never shown, so it let nobody in: logged, and undone here and on the
    # server (the live tests check the reason the server keeps).
    assert recovered.annulled
    assert report.never_shown == 1
    assert [seen.path for seen in server.requests_to(ANNUL)] == [f"/v1/scans/{asked_id}/annul"]
    assert server.scans[asked_id].annulled
    # The person presenting the ticket now is let in, once.
    gate = Gate(store, clock=clock)
    assert gate.scan(server.code(arrived)).verdict.result is VerdictResult.ADMITTED
    clock.advance(5)  # past the debounce
    again = gate.scan(server.code(arrived))
    assert again.verdict.reason is VerdictReason.ALREADY_CHECKED_IN


def test_an_online_question_whose_id_another_device_holds_is_forgotten(
    store: LocalStore, clock: ManualClock, server: FakeServer, engine: SyncEngine
) -> None:
    (ticket,) = server.sell(1)
    assert engine.sync_once().ok
    pending = PendingOnline(new_id(), server.code(ticket), Direction.ENTRY, clock.now())
    with store.write() as conn:
        begin_online(conn, pending)
    server.taken_scan_ids.add(pending.scan_id)  # the server answers 409 scan_id_taken
    clock.advance(11)

    report = engine.sync_once()

    assert report.ok, report.errors  # not a refused sync: the server has no scan of ours
    assert report.recovered == 0
    assert len(server.requests_to(RECORDED)) == 1
    with store.read() as conn:
        assert unresolved_online(conn, clock.now() + timedelta(days=1)) == []
        assert find_scan(conn, pending.scan_id) is None


def test_a_question_still_in_flight_is_left_alone(
    store: LocalStore, clock: ManualClock, server: FakeServer, engine: SyncEngine
) -> None:
    (ticket,) = server.sell(1)
    pending = PendingOnline(new_id(), server.code(ticket), Direction.ENTRY, clock.now())
    with store.write() as conn:
        begin_online(conn, pending)
    clock.advance(1)
    assert engine.sync_once().ok
    assert server.requests_to(RECORDED) == []
    with store.read() as conn:
        assert unresolved_online(conn, clock.now() + timedelta(days=1)) == [pending]


def test_a_cursor_the_server_no_longer_knows_starts_the_feed_over(
    store: LocalStore, server: FakeServer, engine: SyncEngine
) -> None:
    server.sell(3)
    assert engine.sync_once().ok
    server.sell(2)
    refused = Failure(
        status=400, code="invalid_cursor", detail="The cursor is not one this feed returned."
    )
    server.fail(FEED, refused)

    report = engine.sync_once()

    assert report.ok, report.errors
    cursors = [seen.cursor for seen in server.requests_to(FEED)]
    assert cursors[-2] is not None  # the refused one
    assert cursors[-1] is None  # started over
    with store.read() as conn:
        assert ticket_count(conn) == 5


def test_a_feed_reset_starts_the_feed_over_and_uploads_this_gates_scans_again(
    store: LocalStore, server: FakeServer, engine: SyncEngine, gate: Gate
) -> None:
    """The server was restored from a backup (issue 19): the scans it took from this gate
    after the backup are gone. Every scan made here goes up again; the server takes each id
    once."""
    tickets = server.sell(3)
    assert engine.sync_once().ok
    assert scan_offline(gate, server, tickets)
    assert engine.sync_once().ok
    lost = set(server.scans)
    assert len(lost) == 3
    server.scans.clear()  # the restored database never saw them
    server.fail(FEED, Failure(status=409, code="feed_reset", detail="Restored from a backup."))

    report = engine.sync_once()

    assert report.ok, report.errors
    assert (report.feed_resets, report.requeued) == (1, 3)
    assert set(server.scans) == lost
    assert engine.status().queued == 0
    cursors = [seen.cursor for seen in server.requests_to(FEED)]
    assert cursors[-2] is not None  # the refused one
    assert cursors[-1] is None  # started over
    # Not again: the next sync goes on from the new cursor and uploads nothing.
    again = engine.sync_once()
    assert (again.feed_resets, again.uploaded) == (0, 0)


def test_a_cursor_the_server_cannot_read_starts_over_without_uploading_again(
    server: FakeServer, engine: SyncEngine, gate: Gate
) -> None:
    tickets = server.sell(2)
    assert engine.sync_once().ok
    assert scan_offline(gate, server, tickets)
    assert engine.sync_once().ok
    server.fail(FEED, Failure(status=400, code="invalid_cursor", detail="Not a cursor."))

    report = engine.sync_once()

    assert (report.feed_resets, report.requeued, report.uploaded) == (1, 0, 0)


def test_a_server_that_does_not_know_the_device_leaves_it_admitting_with_its_scans_queued(
    server: FakeServer, engine: SyncEngine, gate: Gate
) -> None:
    """Restored from a backup older than the enrollment (401 ``device_unknown``): not revoked;
    the sentence says the way back; the scans the server lost wait in the queue for the next
    enrollment."""
    first, second = server.sell(2)
    assert engine.sync_once().ok
    assert scan_offline(gate, server, [first])
    assert engine.sync_once().ok
    assert engine.status().queued == 0
    server.fail(ME, Failure(status=401, code="device_unknown", detail="Unknown device."))

    report = engine.sync_once()

    assert report.errors == [DEVICE_UNKNOWN]
    status = engine.status()
    assert not status.revoked
    assert status.offline_reason == DEVICE_UNKNOWN
    assert status.queued == 1
    assert scan_offline(gate, server, [second])


def test_a_sync_the_server_refuses_is_reported_not_raised(
    server: FakeServer, engine: SyncEngine
) -> None:
    server.fail(ME, Failure(status=403, code="forbidden", detail="Not for this role."))

    report = engine.sync_once()

    assert not report.ok
    assert "Not for this role." in report.errors[0]
    status = engine.status()
    assert not status.online
    assert status.offline_reason is not None
    assert "Not for this role." in status.offline_reason


def test_a_revoked_scanner_admits_nobody(
    store: LocalStore, server: FakeServer, engine: SyncEngine, gate: Gate
) -> None:
    (ticket,) = server.sell(1)
    assert engine.sync_once().ok
    server.revoked = True
    assert not engine.sync_once().ok

    verdict = gate.scan(server.code(ticket))

    assert verdict.verdict.result is VerdictResult.REJECTED
    assert verdict.verdict.reason is VerdictReason.DEVICE_REVOKED
    with store.read() as conn:
        logged = find_scan(conn, verdict.verdict.scan_id or new_id())
    assert logged is not None  # recorded like every scan


# --- the link to the server: https only off this computer (issue 14) ---------------------------


def test_enrolling_at_a_plain_http_server_is_refused_before_any_connection(
    store: LocalStore, connection_attempts: list[object]
) -> None:
    # What a rogue enrollment QR code would have the scanner do.
    with pytest.raises(InsecureServer) as raised:
        enroll(store, "http://evil.example", ENROLLMENT_CODE, "North 1")

    assert str(raised.value) == INSECURE_SERVER_SENTENCE
    assert connection_attempts == []
    with store.read() as conn:
        assert load_enrollment(conn) is None


def test_a_device_enrolled_at_plain_http_sends_nothing_and_keeps_scanning_offline(
    monkeypatch: pytest.MonkeyPatch,
    store: LocalStore,
    clock: ManualClock,
    server: FakeServer,
    engine: SyncEngine,
    gate: Gate,
) -> None:
    monkeypatch.setenv(lab_mode.ENV_VAR, "0")
    first, second, later = server.sell(3)
    assert engine.sync_once().ok
    scan_offline(gate, server, [first, second])
    with store.write() as conn:  # enrolled at http:// before the rule (or in a lab)
        enrollment = load_enrollment(conn)
        assert enrollment is not None
        plain = msgspec.structs.replace(enrollment, server_url="http://gatehouse.test")
        save_enrollment(conn, plain)
    asked = len(server.seen)
    plain_engine = SyncEngine(store, clock=clock, client_factory=server.client_factory)
    assert plain_engine.is_online()  # as the last sync left it

    assert plain_engine.online_check(wire.ValidateRequest(code=server.code(later))) is None
    report = plain_engine.sync_once()

    assert report.errors == [INSECURE_SERVER_SENTENCE]
    assert len(server.seen) == asked  # the token and the codes never left
    status = plain_engine.status()
    assert status.offline_reason == INSECURE_SERVER_SENTENCE
    assert not status.revoked
    assert status.queued == 2  # nothing a steward recorded is dropped
    assert scan_offline(gate, server, [later])  # the gate goes on admitting offline

    # A lab turns the rule off explicitly: then the queue goes up.
    monkeypatch.setenv(lab_mode.ENV_VAR, "1")
    assert plain_engine.sync_once().ok
    assert plain_engine.status().queued == 0


# --- a 401 is not a revocation unless the server says so (issue 14) ------------------------------


def test_a_401_without_device_revoked_leaves_the_gate_admitting_and_the_queue_intact(
    clock: ManualClock, server: FakeServer, engine: SyncEngine, gate: Gate
) -> None:
    first, second, third = server.sell(3)
    assert engine.sync_once().ok
    scan_offline(gate, server, [first])
    # A server restored from a backup, with a new secret, or not ours: it does not know the token.
    refused = Failure(status=401, code="invalid_token", detail="The token is not valid.")
    server.fail(ME, refused, times=1)
    server.fail(VALIDATE, refused, times=1)

    asked = len(server.seen)
    online = engine.online_check(wire.ValidateRequest(code=server.code(second)))
    report = engine.sync_once()

    assert online is None
    assert len(server.seen) == asked + 2  # the server was asked both times
    assert report.errors == [TOKEN_REFUSED]
    status = engine.status()
    assert not status.revoked
    assert status.offline_reason == TOKEN_REFUSED
    assert status.queued == 1  # nothing a steward recorded is dropped
    assert scan_offline(gate, server, [second])  # still admitting, not "device revoked"

    # Not for good: once the server accepts the token again, the queue goes up.
    assert engine.sync_once().ok
    assert engine.status().queued == 0
    assert engine.status().online
    assert scan_offline(gate, server, [third])


# --- check-in lists (issue 16) --------------------------------------------------------------------

VIP_LIST = uuid.UUID(int=0xB1)
MAIN_LIST = uuid.UUID(int=0xB2)
BACKSTAGE_LIST = uuid.UUID(int=0xB3)


def _setup(server: FakeServer, version: int, *, vip_gate: str = GATE) -> wire.CheckinSetup:
    """VIP tickets at gate ``vip_gate``; general admission at Main; crew into Backstage."""

    def listed(
        list_id: uuid.UUID, name: str, types: list[str], gates: list[str], zone: str | None
    ) -> wire.CheckinListOut:
        return wire.CheckinListOut(
            id=list_id,
            event_id=server.gate_event.event_id,
            name=name,
            ticket_type_ids=types,
            gates=gates,
            zone=zone,
        )

    return wire.CheckinSetup(
        event_id=server.gate_event.event_id,
        version=version,
        time_zone="Europe/Berlin",
        ticket_types=[
            wire.TicketTypeDays(id="tt-ga", name="General admission"),
            wire.TicketTypeDays(id="tt-vip", name="VIP"),
        ],
        lists=[
            listed(VIP_LIST, "VIP", ["tt-vip"], [vip_gate], None),
            listed(MAIN_LIST, "Main", ["tt-ga"], ["Main"], None),
            listed(BACKSTAGE_LIST, "Backstage", [], ["Stage door"], "Backstage"),
        ],
    )


def test_the_checkin_setup_reaches_the_gate_within_one_sync_and_is_asked_for_by_version(
    store: LocalStore, server: FakeServer, engine: SyncEngine, gate: Gate
) -> None:
    """The first feed request names no setup version, so the page carries the setup; it is
    stored with the page, and the gate (made before the sync) decides by it at once: a general
    admission ticket at the VIP gate is refused with the sentence naming where it enters."""
    server.checkin_setup = _setup(server, 1)
    (ga,) = server.sell(1, ticket_type_id="tt-ga")
    (vip,) = server.sell(1, ticket_type="VIP", ticket_type_id="tt-vip")

    report = engine.sync_once()

    assert report.ok
    assert report.new_setup == 1
    assert [seen.setup_version for seen in server.requests_to(FEED)] == [None]
    with store.read() as conn:
        stored = load_setup(conn)
        assert stored is not None
        assert stored.setup == server.checkin_setup
        assert find_ticket(conn, store.sealer.lookup(ga)) is not None
    refused = gate.scan(server.code(ga))
    assert refused.verdict.reason is VerdictReason.NOT_ON_LIST
    # The shared sentence: every gate whose lists admit the type (Backstage admits every type).
    assert refused.sentence == "General admission tickets enter at the Main or Stage door gate."
    admitted = gate.scan(server.code(vip))
    assert admitted.admitted
    assert (admitted.list_name, admitted.checkin_list_id) == ("VIP", str(VIP_LIST))
    with store.read() as conn:
        row = conn.exec_driver_sql(
            "SELECT checkin_list_id, zone FROM scans WHERE scan_id = ?",
            (admitted.verdict.scan_id.bytes if admitted.verdict.scan_id else b"",),
        ).one()
    assert (row[0], row[1]) == (VIP_LIST.bytes, None)

    # The next sync says which version it has: no setup comes again until it changes.
    assert engine.sync_once().new_setup is None
    assert server.requests_to(FEED)[-1].setup_version == "1"
    assert server.pages_sent[-1].checkin_setup is None

    # The manager moves the VIP list to another gate: this gate no longer scans any list, and
    # decides as before lists.
    server.checkin_setup = _setup(server, 2, vip_gate="VIP")
    assert engine.sync_once().new_setup == 2
    assert gate.scan(server.code(ga)).admitted


def test_peer_admissions_bring_their_list_and_zone_and_count_inside_per_zone(
    store: LocalStore, clock: ManualClock, server: FakeServer, engine: SyncEngine
) -> None:
    server.checkin_setup = _setup(server, 1)
    crew, guest = server.sell(2, ticket_type_id="tt-ga")
    server.admit_elsewhere(
        crew, clock.now() - timedelta(minutes=5), checkin_list_id=BACKSTAGE_LIST, zone="Backstage"
    )
    server.admit_elsewhere(guest, clock.now() - timedelta(minutes=4), checkin_list_id=MAIN_LIST)

    assert engine.sync_once().ok

    with store.read() as conn:
        known = admissions_of(conn, store.sealer.lookup(crew))
        assert [(a.list_id, a.zone) for a in known] == [(str(BACKSTAGE_LIST), "Backstage")]
        assert inside_now(conn) == {"Backstage": 1, "": 1}


def test_a_setup_for_another_event_or_an_unknown_time_zone_is_not_stored(
    store: LocalStore, server: FakeServer, engine: SyncEngine
) -> None:
    """The old setup stays, and the sync state keeps the server's version, so the status can
    say the lists are not the server's."""
    server.checkin_setup = _setup(server, 1)
    assert engine.sync_once().new_setup == 1
    server.checkin_setup = msgspec.structs.replace(_setup(server, 2), time_zone="Mars/Olympus_Mons")
    report = engine.sync_once()
    assert report.ok
    assert report.new_setup is None
    server.checkin_setup = msgspec.structs.replace(_setup(server, 3), event_id=new_id())
    assert engine.sync_once().new_setup is None
    with store.read() as conn:
        stored = load_setup(conn)
        assert stored is not None
        assert stored.version == 1
        assert load_sync_state(conn).server_setup_version == 3


# --- peer sync (issue 18): the certificate at enrollment and each sync ------------------------


class FakePeerLink:
    def __init__(self, heard: int = 0) -> None:
        self.heard = heard
        self.reloads = 0

    def reload_trust(self) -> None:
        self.reloads += 1

    def peers_heard(self) -> int:
        return self.heard


def test_enrollment_sends_a_peer_key_and_keeps_the_certificate(
    engine: SyncEngine, store: LocalStore, server: FakeServer, clock: ManualClock
) -> None:
    with store.read() as conn:
        credentials = load_peer_credentials(conn, store.sealer)
    assert credentials is not None
    # The server certified the public half of the key the device keeps.
    assert server.peer_public_key == credentials.device_key.public_key
    certificate = server.peer_event.trust().certificate(credentials.certificate, clock.now())
    assert not isinstance(certificate, Refusal)
    assert certificate.device_id == server.device_id
    assert certificate.gate == GATE


def test_a_server_before_peer_sync_enrolls_the_scanner_without_it(
    store: LocalStore, clock: ManualClock, server: FakeServer
) -> None:
    server.before_peer_sync = True
    enrollment = enroll(
        store,
        SERVER_URL,
        ENROLLMENT_CODE,
        "North 1",
        clock=clock,
        client_factory=server.client_factory,
    )
    assert enrollment.device_id == server.device_id
    with store.read() as conn:
        assert load_peer_credentials(conn, store.sealer) is None
    assert ENROLLMENT_CODE not in server.enrollment_codes  # spent once, by the second try


def test_a_refused_code_is_not_taken_for_a_server_before_peer_sync(
    store: LocalStore, clock: ManualClock, server: FakeServer
) -> None:
    with pytest.raises(RequestRefused) as refused:
        enroll(
            store,
            SERVER_URL,
            "NOPE-NOPE",
            "North 1",
            clock=clock,
            client_factory=server.client_factory,
        )
    assert refused.value.status == 422


def test_each_sync_renews_the_certificate_and_the_revoked_peers(
    engine: SyncEngine, store: LocalStore, server: FakeServer, clock: ManualClock
) -> None:
    link = FakePeerLink(heard=3)
    engine.set_peer_link(link)
    with store.read() as conn:
        first = load_peer_credentials(conn, store.sealer)
    assert first is not None
    clock.advance(3600)
    revoked = new_id()
    server.revoked_peers = [revoked]
    assert engine.sync_once().ok
    with store.read() as conn:
        renewed = load_peer_credentials(conn, store.sealer)
        assert revoked_peers(conn) == frozenset({revoked})
    assert renewed is not None
    assert renewed.certificate != first.certificate
    assert renewed.device_key.seed == first.device_key.seed  # the device's own key stays
    assert link.reloads == 1
    # The heartbeat tells the server how many gates this one hears.
    assert engine.heartbeat().peers_heard == 3
    # Nothing new: the node is not told to reload.
    assert engine.sync_once().ok
    assert link.reloads == 1


def test_the_heartbeat_says_nothing_of_peers_when_peer_sync_is_off(engine: SyncEngine) -> None:
    assert engine.heartbeat().peers_heard is None


# --- enrolled again on the same computer (issue 19): taking over the old device ---------------

SECOND_CODE = "SECOND-CODE"


def _enroll_again(store: LocalStore, server: FakeServer, clock: ManualClock) -> None:
    server.device_id = new_id()
    server.enrollment_codes.add(SECOND_CODE)
    enroll(
        store, SERVER_URL, SECOND_CODE, "North 1", clock=clock, client_factory=server.client_factory
    )


def test_a_gate_enrolled_again_takes_over_its_old_device_and_sends_its_scans_again(
    store: LocalStore, server: FakeServer, engine: SyncEngine, gate: Gate, clock: ManualClock
) -> None:
    """A restored server made the gate enroll again: it claims the device it was, signed with
    that device's peer key, and — taken over — queues every scan made here to go up again; the
    server answers the ones it has as repeats and keeps the ones it lost."""
    tickets = server.sell(3)
    assert engine.sync_once().ok
    made = scan_offline(gate, server, tickets)
    assert engine.sync_once().ok
    old_device, old_key = server.device_id, server.peer_public_key
    assert old_key is not None
    del server.scans[made[0]]  # the restored database lacks the first
    engine.stop()

    _enroll_again(store, server, clock)

    claim = server.succession
    assert claim is not None
    assert claim.device_id == old_device
    assert server.peer_public_key is not None
    assert server.peer_public_key != old_key
    message = succession_message(old_device, server.peer_public_key, SECOND_CODE)
    assert verifies_succession(old_key, claim.signature, message)
    again = SyncEngine(store, clock=clock, client_factory=server.client_factory)
    try:
        assert again.status().queued == 3
        report = again.sync_once()
        assert report.ok, report.errors
        assert set(server.scans) == set(made)
        assert server.scans[made[0]].device_id == server.device_id  # kept under the new device
        assert server.duplicate_uploads >= set(made[1:])
        assert again.status().queued == 0
    finally:
        again.stop()


def test_a_gate_not_taken_over_does_not_send_its_scans_again(
    store: LocalStore, server: FakeServer, engine: SyncEngine, gate: Gate, clock: ManualClock
) -> None:
    """A server older than succession refuses the field (asked again without it, the code is
    spent once); one that does not take the old device over (another event, say) gets nothing
    of it: its scans are another device's there."""
    tickets = server.sell(2)
    assert engine.sync_once().ok
    scan_offline(gate, server, tickets)
    assert engine.sync_once().ok
    engine.stop()
    server.before_succession = True
    _enroll_again(store, server, clock)
    assert SECOND_CODE not in server.enrollment_codes
    with store.read() as conn:
        assert queue_length(conn) == 0

    server.before_succession = False
    server.peer_public_key = DeviceKey.generate().public_key  # the claim will not verify
    _enroll_again(store, server, clock)
    assert server.succession is not None
    with store.read() as conn:
        assert queue_length(conn) == 0
