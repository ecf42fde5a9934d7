"""The Qt bridge between the scanner core and the screen.

``ScanBridge`` owns the ``ScanSession`` and keeps everything that may wait on disk, the network
or the camera off the GUI thread, as jobs on two ``JobQueue``s (``ui.jobs``):

- scans (camera sightings, handheld-scanner bursts, typed codes) run one at a time, in arrival
  order, on the "gate" queue: the gate is thread-safe, but staff must see verdicts in the order
  the guests presented their codes, and an online check may take up to 0.8 s. Opening the
  session, switching entry/exit, reloading the settings and undo run there too, so each is
  decided between the scans before and after it;
- the status (DeviceStatus, the sync engine's link state, counters) and name searches are read
  on the "status" queue, once a second and after each scan, so a slow count never delays a
  verdict;
- the camera is the session's (``ScanSession.start_camera``) and runs in ``FramePipeline``'s own
  capture and decode threads — a stream, not a job; its sightings cross to the GUI thread by a
  signal and join the scan queue like any other code, its frames are shown as they come.

Results come back as signals on the GUI thread. Heavy imports (OpenCV, the decoder, the sync
engine) happen on the gate queue, after the window is up, so the gate screen appears fast.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import msgspec
from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QImage

from scanner_app.core.gate import GateVerdict
from scanner_app.core.sighting import CodeSighting
from scanner_app.core.store import LocalStore, StoreError
from scanner_app.core.store.lookups import NameMatch, find_scanned_holders, inside_by_gate
from scanner_app.core.store.state import GateSettings, load_settings, save_settings
from scanner_app.ui.jobs import JobQueue
from shared.domain import Direction

if TYPE_CHECKING:
    from scanner_app.core.capture import CapturedFrame, CaptureError
    from scanner_app.core.decoding import DecodedSymbol
    from scanner_app.core.session import DeviceStatus, ScanSession

log = logging.getLogger(__name__)

_R = TypeVar("_R")

#: How often the status bar is refreshed while nothing happens.
STATUS_INTERVAL_MS = 1000


# --- what the bridge reports ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GateStatus:
    """Everything the status bar and the counters show, read in one go off the GUI thread."""

    device: DeviceStatus
    #: A sync server is configured (False: a standalone demo device).
    has_server: bool
    online: bool
    syncing: bool
    next_retry_at: datetime | None
    inside_now: int
    #: The device's clock when the status was read (cache age is measured against it).
    read_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class UndoOutcome:
    """The answer to "undo the last admission"."""

    done: bool
    message: str
    scan_id: uuid.UUID | None = None


class _NotScanned(Exception):
    """A code was not decided (no session, or its scan could not be recorded): the sentence
    for staff. No verdict may be shown for it."""


@dataclass(frozen=True, slots=True)
class _Scanned:
    verdict: GateVerdict
    sighting: CodeSighting | None


@dataclass(frozen=True, slots=True)
class _Reloaded:
    settings: GateSettings
    #: The camera's new state when it was restarted (see ``ScanBridge.camera``), else None.
    camera: str | None


class ScanBridge(QObject):
    """Runs one ``ScanSession`` for the screen (see the module docstring).

    Call ``start()`` once the window is shown; ``close()`` when it goes. All public methods are
    for the GUI thread and return at once; results arrive by signal.
    """

    #: A verdict, and the camera sighting that led to it (None: handheld scanner or typed).
    verdict = Signal(GateVerdict, CodeSighting)
    #: A camera frame and the outlines of the codes found in it (tuples of corner points).
    frame = Signal(QImage, tuple)
    #: The status, read again.
    status = Signal(GateStatus)
    #: A sentence for staff: something failed, scanning goes on where it can.
    error = Signal(str)
    #: Empty when the camera runs; otherwise why there is no camera picture (a sentence).
    camera = Signal(str)
    #: The session is open; carries the gate's settings.
    ready = Signal(GateSettings)
    #: The gate's settings changed (direction switched, settings dialog saved).
    settings_changed = Signal(GateSettings)
    #: The answer to ``undo_last_admission``.
    undone = Signal(UndoOutcome)
    #: The ``NameMatch`` list for the last name search.
    names_found = Signal(list)
    # Camera decode thread → GUI thread: a sighting, to join the scan queue.
    _sighted = Signal(CodeSighting)
    # Peer node thread → GUI thread: records arrived or a peer came or went.
    _peers_changed = Signal()

    def __init__(
        self,
        store: LocalStore,
        *,
        online: bool = True,
        background_sync: bool = True,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self._online = online
        self._background_sync = background_sync
        #: The session, opened and closed on the gate queue (read by the status queue).
        self._session: ScanSession | None = None
        self._scans = JobQueue("gate", self)
        self._reads = JobQueue("status", self)
        self._scans.failed.connect(self._report_crash)
        self._reads.failed.connect(self._report_crash)
        self._sighted.connect(self._queue_sighting)
        # Queued to the GUI thread (the signal is emitted on the node's thread).
        self._peers_changed.connect(self.refresh_status, Qt.ConnectionType.QueuedConnection)
        self._status_pending = False
        self._closed = False
        #: The last admitted entry of this session that can still be undone (gate queue).
        self._last_admission: GateVerdict | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(STATUS_INTERVAL_MS)
        self._timer.timeout.connect(self.refresh_status)

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, *, camera: bool = True) -> None:
        """Open the session on the gate queue, then the camera (if ``camera``) and the
        status."""
        if not self._closed:
            self._scans.submit(self._open_session, self._opened, self._not_opened)
        if camera:
            self._submit_scan_job(self._start_camera, self._camera_state)
        else:
            self.camera.emit("The camera is switched off.")
        self._timer.start()
        self.refresh_status()

    def close(self) -> None:
        """Stop the camera, the background sync and the workers. Waits for a scan in progress
        (its verdict is on disk before it is shown; nothing is lost by waiting)."""
        if self._closed:
            return
        self._closed = True
        self._timer.stop()
        self._stop_camera()  # here, not queued: a scan may be running on the gate queue
        self._scans.submit(self._close_session)
        self._scans.shut_down(wait=True)
        self._reads.shut_down(wait=True, cancel_pending=True)

    # --- requests from the screen ---------------------------------------------------------------

    def scan_text(self, text: str) -> None:
        """Scan ``text`` as if it had been read (handheld scanner, typed or pasted code)."""
        self._queue_scan(text, None)

    def set_direction(self, direction: Direction) -> None:
        """Switch the gate to entry or exit; saved in the gate's settings. Scans already
        queued are decided in the mode they were read in."""
        self._submit_scan_job(lambda: self._set_direction(direction), self._settings_saved)

    def reload_settings(self) -> None:
        """Pick up settings saved elsewhere (the settings dialog), restarting the camera when
        its source changed."""
        self._submit_scan_job(self._reload_settings, self._settings_reloaded)

    def undo_last_admission(self) -> None:
        """Annul the last entry admitted in this session; the answer comes as ``undone``."""
        self._submit_scan_job(self._undo, self._undo_answered)

    def move_to_gate(self, gate: str) -> None:
        """The demo only (``scanner_app.core.demo.stand_at``): stand at ``gate`` from the next
        scan on — queued with the scans, so a scan asked for after it is decided there."""
        self._submit_scan_job(
            lambda: self._move_to_gate(gate), lambda _moved: self.refresh_status()
        )

    def search_names(self, query: str) -> None:
        """Search the holders of tickets this device scanned; the answer is ``names_found``."""
        if not self._closed:
            self._reads.submit(lambda: self._search(query), self._names_found)

    def refresh_status(self) -> None:
        """Read the status now (at most one read waits at a time)."""
        if self._closed or self._status_pending:
            return
        self._status_pending = True
        self._reads.submit(self._read_status, self._status_read, self._status_failed)

    # --- GUI thread: queueing and answers ---------------------------------------------------------

    def _submit_scan_job(self, work: Callable[[], _R], on_done: Callable[[_R], object]) -> None:
        if not self._closed:
            self._scans.submit(work, on_done)

    def _queue_scan(self, text: str, sighting: CodeSighting | None) -> None:
        if not self._closed:
            self._scans.submit(lambda: self._scan(text, sighting), self._scanned, self._not_scanned)

    @Slot(CodeSighting)
    def _queue_sighting(self, sighting: CodeSighting) -> None:
        self._queue_scan(sighting.text, sighting)

    @Slot(Exception)
    def _report_crash(self, error: Exception) -> None:
        self.error.emit(f"Something went wrong in the scanner: {error}")

    def _opened(self, settings: GateSettings) -> None:
        self.ready.emit(settings)

    def _camera_state(self, sentence: str) -> None:
        self.camera.emit(sentence)

    def _settings_saved(self, settings: GateSettings) -> None:
        self.settings_changed.emit(settings)

    def _names_found(self, found: list[NameMatch]) -> None:
        self.names_found.emit(found)

    def _not_opened(self, error: Exception) -> None:
        if isinstance(error, StoreError):
            self.error.emit(str(error))
        else:
            log.error("the scanning session could not be opened", exc_info=error)
            self._report_crash(error)

    def _scanned(self, scanned: _Scanned) -> None:
        self.verdict.emit(scanned.verdict, scanned.sighting)
        self.refresh_status()

    def _not_scanned(self, error: Exception) -> None:
        if isinstance(error, _NotScanned):
            self.error.emit(str(error))
        else:
            log.error("a scan failed", exc_info=error)
            self._report_crash(error)

    def _settings_reloaded(self, reloaded: _Reloaded) -> None:
        self.settings_changed.emit(reloaded.settings)
        if reloaded.camera is not None:
            self.camera.emit(reloaded.camera)

    def _undo_answered(self, outcome: UndoOutcome) -> None:
        self.undone.emit(outcome)
        if outcome.scan_id is not None:  # an admission was there to undo
            self.refresh_status()

    def _status_read(self, status: GateStatus) -> None:
        self._status_pending = False
        self.status.emit(status)

    def _status_failed(self, error: Exception) -> None:
        self._status_pending = False
        log.error("the status could not be read", exc_info=error)
        self._report_crash(error)

    # --- the gate queue -----------------------------------------------------------------------

    def _open_session(self) -> GateSettings:
        """Raises ``StoreError`` when the store cannot be scanned into (not enrolled)."""
        # Loads OpenCV and the sync engine: on the gate queue, once the window is up.
        from scanner_app.core.session import ScanSession  # noqa: PLC0415

        self._session = ScanSession.open(
            self.store,
            online=self._online,
            background_sync=self._background_sync,
            on_peer_change=self._peers_changed.emit,
        )
        return self._session.gate.settings

    def _move_to_gate(self, gate: str) -> bool:
        from scanner_app.core.demo import stand_at  # noqa: PLC0415 - the demo's, on demand

        moved = stand_at(self.store, gate)
        if moved and self._session is not None:
            self._session.gate.reload()
        return moved

    def _close_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _scan(self, text: str, sighting: CodeSighting | None) -> _Scanned:
        session = self._session
        if session is None:
            raise _NotScanned("The scanner is not ready: this code was not checked. Scan it again.")
        try:
            verdict = session.scan_text(text)
        except Exception as error:
            # Not recorded means not decided: no verdict may be shown for this code.
            log.exception("a scan could not be recorded")
            raise _NotScanned(
                f"This scan could not be recorded ({error}). Scan the ticket again; if this keeps "
                "happening, restart the scanner."
            ) from error
        if (
            verdict.admitted
            and not verdict.repeat
            and verdict.verdict.direction is Direction.ENTRY
            and verdict.verdict.scan_id is not None
        ):
            self._last_admission = verdict
        return _Scanned(verdict, sighting)

    def _set_direction(self, direction: Direction) -> GateSettings:
        with self.store.write() as conn:
            settings = msgspec.structs.replace(load_settings(conn), direction=direction)
            save_settings(conn, settings)
        if self._session is not None:
            self._session.direction = None  # the saved setting decides
            self._session.gate.reload()
        return settings

    def _reload_settings(self) -> _Reloaded:
        with self.store.read() as conn:
            settings = load_settings(conn)
        old_camera = self._session.gate.settings.camera if self._session else None
        if self._session is not None:
            self._session.gate.reload()
        if old_camera is not None and settings.camera != old_camera:
            self._stop_camera()
            return _Reloaded(settings, self._start_camera())
        return _Reloaded(settings, None)

    def _undo(self) -> UndoOutcome:
        session = self._session
        last = self._last_admission
        if session is None or last is None or last.verdict.scan_id is None:
            return UndoOutcome(False, "There is no admission to undo in this session.")
        scan_id = last.verdict.scan_id
        self._last_admission = None
        if session.annul(scan_id):
            return UndoOutcome(True, "Admission undone: the ticket can be scanned again.", scan_id)
        return UndoOutcome(
            False,
            "This admission cannot be undone any more (it was undone already, or the server "
            "refused the scan).",
            scan_id,
        )

    # --- the status queue ---------------------------------------------------------------------

    def _search(self, query: str) -> list[NameMatch]:
        with self.store.read() as conn:
            return find_scanned_holders(conn, self.store.sealer, query)

    def _read_status(self) -> GateStatus:
        from scanner_app.core.session import device_status  # noqa: PLC0415 - see above

        session = self._session
        device = device_status(
            self.store,
            session=session is not None,
            peers_heard=session.peers_heard() if session is not None else None,
        )
        with self.store.read() as conn:
            inside = sum(inside_by_gate(conn).values())
        engine = session.engine if session is not None else None
        online = syncing = False
        next_retry = None
        if engine is not None:
            link = engine.status()
            online, syncing, next_retry = link.online, link.syncing, link.next_retry_at
        return GateStatus(
            device=device,
            has_server=bool(device.server_url),
            online=online,
            syncing=syncing,
            next_retry_at=next_retry,
            inside_now=inside,
        )

    # --- camera (the session's; started and stopped on the gate queue) --------------------------

    def _start_camera(self) -> str:
        """Start the session's camera; the camera's state for ``camera`` ("" when it runs). A
        camera that is missing is a message on the screen, never a stopped gate."""
        # OpenCV and the decoder load here, on the gate queue, not at start-up.
        from scanner_app.core.capture import CaptureError  # noqa: PLC0415
        from scanner_app.core.decoding import (  # noqa: PLC0415
            DecoderUnavailable,
            create_decoder,
        )

        session = self._session
        if session is None:
            return "No camera picture: the scanner is not ready."
        if self._closed:  # the window closed while the session was opening
            return ""
        with self.store.read() as conn:
            spec = load_settings(conn).camera
        try:
            session.start_camera(
                spec,
                create_decoder(),
                self._on_sighting,
                on_frame=self._on_frame,
                on_error=self._on_camera_error,
            )
        except (CaptureError, DecoderUnavailable) as error:
            return f"No camera picture: {error}"
        return ""

    def _stop_camera(self) -> None:
        session = self._session
        if session is not None:
            session.stop_camera(timeout=1.0)

    # --- the camera's threads (a stream: each call forwards by a signal) ----------------------

    def _on_sighting(self, sighting: CodeSighting) -> None:
        self._sighted.emit(sighting)  # joins the scan queue on the GUI thread

    def _on_frame(self, frame: CapturedFrame, symbols: Sequence[DecodedSymbol]) -> None:
        image = frame.image
        height, width = image.shape[:2]
        picture = QImage(
            image.data, width, height, int(image.strides[0]), QImage.Format.Format_BGR888
        ).copy()  # the array is reused by the camera: keep our own pixels
        self.frame.emit(picture, tuple(symbol.corners for symbol in symbols))

    def _on_camera_error(self, error: CaptureError) -> None:
        self.camera.emit(f"The camera stopped: {error}")
