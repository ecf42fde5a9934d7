"""A scanning session: the gate, its sync engine and a code source wired together.

The command line's ``scan`` and the desktop app both run one; neither wires the parts itself:
the command line scans a source to its end (``scan_source``), the app keeps a camera running
beside its other inputs (``start_camera``), and both scan what is read with ``scan_text``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec
from sqlalchemy import Connection

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
from scanner_app.core.store.peers import load_peer_credentials
from scanner_app.core.store.scans import conflict_count, queue_length, scan_count
from scanner_app.core.store.setup import load_setup
from scanner_app.core.store.state import (
    GateSettings,
    load_enrollment,
    load_event,
    load_settings,
    load_sync_state,
    parse_peer_address,
)
from scanner_app.core.sync.engine import SyncEngine
from shared.clock import Clock, SystemClock
from shared.domain import Direction

if TYPE_CHECKING:
    from scanner_app.core.peers import PeerNode

log = logging.getLogger(__name__)

VerdictPrinter = Callable[[GateVerdict, CodeSighting | None], None]

#: Peer sync switched off in the settings, or the device has no certificate for it.
PEER_SYNC_OFF = "Peer sync off"


@dataclass(frozen=True, slots=True)
class PeerOptions:
    """This run's peer sync, where it differs from the gate's settings (the command line's
    ``--peer-port``, ``--peer``, ``--no-discover``, ``--no-peers``); None keeps the setting."""

    enabled: bool | None = None
    port: int | None = None
    static_peers: tuple[str, ...] | None = None
    discover: bool | None = None
    #: The address the node listens on (all interfaces unless given).
    listen_host: str = "0.0.0.0"  # noqa: S104 - peers on the venue network must reach it

    def applied(self, settings: GateSettings) -> GateSettings:
        return msgspec.structs.replace(
            settings,
            peer_sync=settings.peer_sync if self.enabled is None else self.enabled,
            peer_port=settings.peer_port if self.port is None else self.port,
            static_peers=(
                settings.static_peers if self.static_peers is None else self.static_peers
            ),
            peer_discovery=settings.peer_discovery if self.discover is None else self.discover,
        )


def peer_sentence(heard: int | None) -> str:
    """What the status bar says of the other gates: how many this one hears (None: off)."""
    if heard is None:
        return PEER_SYNC_OFF
    if heard <= 0:
        return "Hears no other gate"
    return f"Hears {heard} other gate{'' if heard == 1 else 's'}"


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
        peers: PeerRunner | None = None,
    ) -> None:
        self.store = store
        self.gate = gate
        self.engine = engine
        self.direction = direction
        #: The peer node's runner (None: peer sync is off, or the device has no certificate).
        self.peers = peers
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
        peers: PeerOptions | None = None,
        on_peer_change: Callable[[], None] | None = None,
    ) -> ScanSession:
        """Raises ``NotEnrolled`` (a ``StoreError``) when the store has no device yet.

        The peer node starts with the session when peer sync is on (the gate's settings, as
        ``peers`` changes them for this run) and the device has a peer certificate;
        ``on_peer_change`` is called on the node's thread when what it hears changes (records
        arrived, a peer came or went)."""
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
        runner = PeerRunner.wanted(store, gate, peers or PeerOptions(), clock, on_peer_change)
        if engine is not None:
            engine.set_peer_link(runner)
            if background_sync:
                engine.start()
        return cls(store, gate, engine, direction, runner)

    @property
    def node(self) -> PeerNode | None:
        """The running peer node (None: peer sync off, or still starting)."""
        return self.peers.node if self.peers is not None else None

    def peers_heard(self) -> int | None:
        """How many other gates the node hears now; None when peer sync is off."""
        return self.peers.peers_heard() if self.peers is not None else None

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
        if self.peers is not None:
            self.gate.set_announcer(None)
            self.peers.stop()


class PeerRunner:
    """Starts the peer node beside the session, without holding the session up (loading the
    network code and registering with mDNS take about 2 s), and stops it with the session.

    Until the node listens no peer is connected, so nothing is lost meanwhile: the records of
    scans made before then are in the store, and the digest exchange on each new connection
    sends them. Serves the sync engine as its ``PeerLink`` from the start."""

    def __init__(
        self,
        store: LocalStore,
        gate: Gate,
        settings: GateSettings,
        *,
        listen_host: str,
        clock: Clock,
        on_change: Callable[[], None] | None,
    ) -> None:
        self._store = store
        self._gate = gate
        self._settings = settings
        self._listen_host = listen_host
        self._clock = clock
        self._on_change = on_change
        self.node: PeerNode | None = None
        self._stopped = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._start, name="peer-start", daemon=True)
        self._thread.start()

    @classmethod
    def wanted(
        cls,
        store: LocalStore,
        gate: Gate,
        options: PeerOptions,
        clock: Clock,
        on_change: Callable[[], None] | None,
    ) -> PeerRunner | None:
        """A runner starting the node, or None when peer sync is off or the device has no
        certificate."""
        settings = options.applied(gate.settings)
        if not settings.peer_sync:
            return None
        with store.read() as conn:
            if load_peer_credentials(conn, store.sealer) is None:
                return None
        return cls(
            store,
            gate,
            settings,
            listen_host=options.listen_host,
            clock=clock,
            on_change=on_change,
        )

    def _start(self) -> None:
        # The node's network code loads here, off the session's thread.
        from scanner_app.core.peers import PeerConfig, PeerNode  # noqa: PLC0415

        settings = self._settings
        config = PeerConfig(
            port=settings.peer_port,
            listen_host=self._listen_host,
            # Addresses the settings dialog and the command line checked.
            static_peers=tuple(t for t in settings.static_peers if parse_peer_address(t)),
            discover=settings.peer_discovery,
        )
        node = PeerNode(self._store, config, clock=self._clock)
        node.on_change = self._on_change
        try:
            node.start()
        except OSError as error:
            log.warning("peer sync not started: %s", error)
            return
        with self._lock:
            if self._stopped:  # the session closed while the node was starting
                node.stop()
                return
            self.node = node
        self._gate.set_announcer(node.announce)
        if self._on_change is not None:
            self._on_change()  # the status bar: from "starting" to what it hears

    def reload_trust(self) -> None:
        node = self.node
        if node is not None:
            node.reload_trust()

    def peers_heard(self) -> int:
        node = self.node
        return node.peers_heard() if node is not None else 0

    def stop(self) -> None:
        """Stop the node; waits for a start in progress (it takes about 2 s at most)."""
        self._thread.join(timeout=35)
        with self._lock:
            self._stopped = True
            node, self.node = self.node, None
        if node is not None:
            node.stop()


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
    #: Peer sync (issue 18): how many other gates the running node hears (None: off, or no
    #: node runs in this program), and the status bar's sentence for it.
    peers_heard: int | None = None
    peers: str = PEER_SYNC_OFF

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
            ("other gates", self.peers),
            ("data", self.data_file),
        ]


def _when(at: datetime | None) -> str:
    return "never" if at is None else at.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _zones_text(inside: dict[str, int]) -> str:
    return " · ".join(f"{zone_label(zone)} {count:,}" for zone, count in sorted(inside.items()))


def device_status(
    store: LocalStore,
    now: datetime | None = None,
    *,
    session: bool = False,
    peers_heard: int | None = None,
) -> DeviceStatus:
    """The device as the status bar and ``gatehouse-scanner status`` show it. In a scanning
    ``session``, ``peers_heard`` is its node's count (``ScanSession.peers_heard``; None: peer
    sync off); outside one, what peer sync would do when scanning."""
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
            peers_heard=peers_heard if session else None,
            peers=peer_sentence(peers_heard) if session else _peer_setup(conn, store),
        )


def _peer_setup(conn: Connection, store: LocalStore) -> str:
    if not load_settings(conn).peer_sync:
        return f"{PEER_SYNC_OFF} (settings)"
    if load_peer_credentials(conn, store.sealer) is None:
        return f"{PEER_SYNC_OFF} (no peer certificate from the server)"
    return "On while scanning"
