"""A scanning session: the gate, its sync engine and a code source wired together.

The command line's ``scan`` and the desktop app both run one; neither wires the parts itself:
the command line scans a source to its end (``scan_source``), the app keeps a camera running
beside its other inputs (``start_camera``), and both scan what is read with ``scan_text``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import msgspec

from scanner_app.core.capture import open_source
from scanner_app.core.checkin import access_plan, gate_label, setup_note, zone_label
from scanner_app.core.decoding import QrDecoder
from scanner_app.core.gate import Gate, GateVerdict
from scanner_app.core.pipeline import (
    CodeSink,
    ErrorListener,
    FrameListener,
    FramePipeline,
)
from scanner_app.core.sighting import CodeSighting
from scanner_app.core.store import LocalStore
from scanner_app.core.store.cache import inside_now, ticket_count
from scanner_app.core.store.scans import conflict_count, queue_length, scan_count
from scanner_app.core.store.setup import load_setup
from scanner_app.core.store.state import (
    load_enrollment,
    load_event,
    load_settings,
    load_sync_state,
)
from scanner_app.core.sync.engine import SyncEngine
from shared.clock import Clock, SystemClock
from shared.domain import Direction

VerdictPrinter = Callable[[GateVerdict, CodeSighting | None], None]


class ScanSession:
    """Scans into one store. ``close()`` stops the camera and the background sync.

    Thread-safe as the gate is: ``scan_text`` from any thread; the camera can be started and
    stopped from any thread (one camera at a time)."""

    def __init__(
        self,
        store: LocalStore,
        gate: Gate,
        engine: SyncEngine | None,
        direction: Direction | None = None,
    ) -> None:
        self.store = store
        self.gate = gate
        self.engine = engine
        self.direction = direction
        self._camera_lock = threading.Lock()
        self._pipeline: FramePipeline | None = None
        self._closed = False

    @classmethod
    def open(
        cls,
        store: LocalStore,
        *,
        online: bool = True,
        background_sync: bool = True,
        direction: Direction | None = None,
        clock: Clock | None = None,
    ) -> ScanSession:
        """Raises ``NotEnrolled`` (a ``StoreError``) when the store has no device yet."""
        clock = clock or SystemClock()
        engine: SyncEngine | None = None
        with store.read() as conn:
            enrollment = load_enrollment(conn)
        if enrollment is not None and enrollment.server_url:
            engine = SyncEngine(store, clock=clock)
        gate = Gate(
            store,
            clock=clock,
            online=engine.online_check if engine is not None and online else None,
            is_online=engine.is_online if engine is not None else (lambda: False),
        )
        if engine is not None:
            engine.interval_seconds = gate.settings.sync_interval_seconds
            engine.online_timeout_seconds = gate.settings.online_timeout_seconds
            engine.set_data_listener(gate.reload)
            if background_sync:
                engine.start()
        return cls(store, gate, engine, direction)

    def scan_text(self, text: str) -> GateVerdict:
        verdict = self.gate.scan(text, direction=self.direction)
        if self.engine is not None and verdict.mode == "offline" and not verdict.repeat:
            self.engine.wake()
        return verdict

    def annul(self, scan_id: uuid.UUID) -> bool:
        """Undo an admitted entry of this device (see ``Gate.annul``) and wake the sync, so
        the server hears of it soon. False when there was nothing to undo."""
        done = self.gate.annul(scan_id)
        if done and self.engine is not None:
            self.engine.wake()
        return done

    def scan_lines(self, lines: Iterable[str], on_verdict: VerdictPrinter) -> None:
        """Scan each non-blank line (a handheld scanner typing into a terminal, a file)."""
        for line in lines:
            if line.strip():
                on_verdict(self.scan_text(line.strip()), None)

    def scan_source(
        self, spec: str, decoder: QrDecoder, on_verdict: VerdictPrinter, *, paced: bool = False
    ) -> None:
        """Scan from a camera, video or images until the source ends (or Ctrl-C). Raises
        ``CaptureError`` when the source cannot be opened or fails."""

        def sink(sighting: CodeSighting) -> None:
            on_verdict(self.scan_text(sighting.text), sighting)

        pipeline = self.start_camera(spec, decoder, sink, paced=paced)
        while not pipeline.wait(0.2):
            pass
        if pipeline.error is not None:
            raise pipeline.error

    def start_camera(
        self,
        spec: str,
        decoder: QrDecoder,
        on_sighting: CodeSink,
        *,
        on_frame: FrameListener | None = None,
        on_error: ErrorListener | None = None,
        paced: bool = False,
    ) -> FramePipeline:
        """Open the camera, video or images ``spec`` names (``capture.open_source``) and read
        codes from it on the pipeline's threads until ``stop_camera`` or ``close``; returns at
        once. Each new sighting goes to ``on_sighting``, which decides when it is scanned (the
        app queues it behind the codes read before it). A camera already running is stopped
        first. Raises ``CaptureError`` when the source cannot be opened."""
        source = open_source(spec, paced=paced)
        pipeline = FramePipeline(source, decoder, on_sighting, on_frame=on_frame, on_error=on_error)
        with self._camera_lock:
            previous, self._pipeline = self._pipeline, pipeline
            closed = self._closed
        if previous is not None:
            previous.stop()
        if closed:  # closed while the camera was opening
            pipeline.stop()  # closes the source of a pipeline never started
        else:
            pipeline.start()
        return pipeline

    def stop_camera(self, timeout: float = 2.0) -> None:
        """Stop the camera (if one runs) and wait up to ``timeout`` seconds for it to let go."""
        with self._camera_lock:
            pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.stop(timeout=timeout)

    def close(self) -> None:
        with self._camera_lock:
            self._closed = True
        self.stop_camera()
        if self.engine is not None:
            self.engine.stop()


def verdict_json(verdict: GateVerdict, sighting: CodeSighting | None) -> str:
    """One line of ``scan --json``: the verdict's fields, how it was reached, and the frame."""
    line = msgspec.to_builtins(verdict.verdict)
    line |= {
        "sentence": verdict.sentence,
        "mode": verdict.mode,
        "on_signature": verdict.on_signature,
        "repeat": verdict.repeat,
        "reentry": verdict.reentry,
        "frame": sighting.frame_index if sighting else None,
    }
    return msgspec.json.encode(line).decode()


class DeviceStatus(msgspec.Struct, kw_only=True):
    """What ``gatehouse-scanner status`` shows."""

    enrolled: bool
    device_id: uuid.UUID | None = None
    device_name: str | None = None
    gate: str | None = None
    server_url: str | None = None
    event_name: str | None = None
    event_id: uuid.UUID | None = None
    tickets_cached: int = 0
    scans_recorded: int = 0
    queued: int = 0
    conflicts: int = 0
    last_sync_at: datetime | None = None
    last_contact_at: datetime | None = None
    offline_reason: str | None = None
    clock_offset_ms: int = 0
    revoked: bool = False
    data_file: str = ""
    #: The check-in setup (issue 16): its version, what the status says of it (and whether
    #: that is a warning: the lists may be out of date), what this gate scans, and who is
    #: inside each zone as this device knows it (``GENERAL_AREA``, "", the general area).
    setup_version: int | None = None
    lists_note: str = ""
    lists_stale: bool = False
    gate_lists: str | None = None
    inside_by_zone: dict[str, int] = msgspec.field(default_factory=dict)

    def lines(self) -> list[tuple[str, str]]:
        if not self.enrolled:
            return [
                ("device", "not enrolled (gatehouse-scanner enroll --server URL --code CODE)"),
                ("data", self.data_file),
            ]
        link = "standalone (no server)" if not self.server_url else self.server_url
        state = "revoked: enroll again" if self.revoked else (self.offline_reason or "ok")
        return [
            ("device", f"{self.device_name} ({self.device_id})"),
            ("gate", str(self.gate)),
            ("event", f"{self.event_name} ({self.event_id})"),
            ("server", link),
            ("link", state),
            ("last sync", _when(self.last_sync_at)),
            ("clock offset", f"{self.clock_offset_ms:+d} ms"),
            ("tickets cached", f"{self.tickets_cached:,}"),
            ("scans recorded", f"{self.scans_recorded:,}"),
            ("queued", f"{self.queued:,}"),
            ("conflicts", f"{self.conflicts:,}"),
            ("check-in lists", self.lists_note or "none"),
            ("this gate scans", self.gate_lists or "no list (decides as before lists)"),
            ("inside by zone", _zones_text(self.inside_by_zone) or "nobody"),
            ("data", self.data_file),
        ]


def _when(at: datetime | None) -> str:
    return "never" if at is None else at.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _zones_text(inside: dict[str, int]) -> str:
    return " · ".join(f"{zone_label(zone)} {count:,}" for zone, count in sorted(inside.items()))


def device_status(store: LocalStore, now: datetime | None = None) -> DeviceStatus:
    now = now or datetime.now(UTC)
    with store.read() as conn:
        enrollment = load_enrollment(conn)
        if enrollment is None:
            return DeviceStatus(enrolled=False, data_file=str(store.path))
        gate_event = load_event(conn, enrollment.event_id)
        sync = load_sync_state(conn)
        stored = load_setup(conn)
        note, stale = setup_note(
            stored=stored,
            server_version=sync.server_setup_version,
            has_server=bool(enrollment.server_url),
            last_sync_at=sync.last_sync_at,
            now=now,
            interval_seconds=load_settings(conn).sync_interval_seconds,
        )
        access = access_plan(gate_event, stored) if gate_event is not None else None
        return DeviceStatus(
            setup_version=stored.version if stored is not None else None,
            lists_note=note,
            lists_stale=stale,
            gate_lists=gate_label(access, enrollment.gate),
            # Replayed per ticket in Python: only for events with lists (the gate screen's
            # plain "inside now" is counted in SQL).
            inside_by_zone=inside_now(conn) if access is not None and access.plan.lists else {},
            enrolled=True,
            device_id=enrollment.device_id,
            device_name=enrollment.name,
            gate=enrollment.gate,
            server_url=enrollment.server_url,
            event_name=gate_event.name if gate_event else None,
            event_id=enrollment.event_id,
            tickets_cached=ticket_count(conn),
            scans_recorded=scan_count(conn),
            queued=queue_length(conn),
            conflicts=conflict_count(conn),
            last_sync_at=sync.last_sync_at,
            last_contact_at=sync.last_contact_at,
            offline_reason=sync.offline_reason,
            clock_offset_ms=sync.clock_offset_ms,
            revoked=sync.revoked,
            data_file=str(store.path),
        )
