"""The Qt bridge between the scanner core and the screen.

``ScanBridge`` owns the ``ScanSession`` and keeps everything that may wait on disk, the network
or the camera off the GUI thread:

- scans (camera sightings, handheld-scanner bursts, typed codes) run one at a time, in arrival
  order, on one worker thread: the gate is thread-safe, but staff must see verdicts in the
  order the guests presented their codes, and an online check may take up to 0.8 s;
- the status (DeviceStatus, the sync engine's link state, counters) is read on a second thread,
  once a second and after each scan, so a slow count never delays a verdict;
- the camera runs in ``FramePipeline``'s own capture and decode threads; its sightings join the
  scan queue like any other code.

Results come back as signals, which Qt delivers on the GUI thread. Heavy imports (OpenCV, the
decoder, the sync engine) happen on the worker, after the window is up, so the gate screen
appears fast.

Also here, Qt-free: the two read-only queries the gate screen needs that the core does not
offer (who is inside now, and a name search over this device's own scans).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QImage

from scanner_app.core.store import LocalStore
from scanner_app.core.store.lookups import find_scanned_holders, inside_by_gate
from scanner_app.core.store.state import load_settings, save_settings
from shared.domain import Direction

if TYPE_CHECKING:
    from scanner_app.core.capture import CapturedFrame
    from scanner_app.core.decoding import DecodedSymbol
    from scanner_app.core.gate import GateVerdict
    from scanner_app.core.pipeline import CodeSighting, FramePipeline
    from scanner_app.core.session import DeviceStatus, ScanSession

log = logging.getLogger(__name__)

Point = tuple[float, float]

#: How often the status bar is refreshed while nothing happens.
STATUS_INTERVAL_MS = 1000


# --- Qt-free queries ---------------------------------------------------------------------------


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


class ScanBridge(QObject):
    """Runs one ``ScanSession`` for the screen (see the module docstring).

    Call ``start()`` once the window is shown; ``close()`` when it goes. All public methods are
    for the GUI thread and return at once; results arrive by signal.
    """

    #: A verdict, and the camera sighting that led to it (None: handheld scanner or typed).
    verdict = Signal(object, object)
    #: A camera frame and the outlines of the codes found in it (tuples of corner points).
    frame = Signal(QImage, object)
    #: A ``GateStatus``.
    status = Signal(object)
    #: A sentence for staff: something failed, scanning goes on where it can.
    error = Signal(str)
    #: Empty when the camera runs; otherwise why there is no camera picture (a sentence).
    camera = Signal(str)
    #: The session is open; carries the gate's ``GateSettings``.
    ready = Signal(object)
    #: The gate's settings changed (direction switched, settings dialog saved).
    settings_changed = Signal(object)
    #: An ``UndoOutcome``.
    undone = Signal(object)
    #: The ``NameMatch`` list for the last name search.
    names_found = Signal(object)

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
        self._session: ScanSession | None = None
        self._scans = ThreadPoolExecutor(1, thread_name_prefix="gatehouse-gate")
        self._reads = ThreadPoolExecutor(1, thread_name_prefix="gatehouse-status")
        self._status_pending = threading.Event()
        self._pipeline: FramePipeline | None = None
        self._pipeline_lock = threading.Lock()
        self._closed = False
        #: The last admitted entry of this session that can still be undone (worker thread).
        self._last_admission: GateVerdict | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(STATUS_INTERVAL_MS)
        self._timer.timeout.connect(self.refresh_status)

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, *, camera: bool = True) -> None:
        """Open the session on the worker, then the camera (if ``camera``) and the status."""
        self._submit(self._scans, self._open_session)
        if camera:
            self._submit(self._scans, self._start_camera)
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
        self._stop_camera()
        self._scans.submit(self._close_session)
        self._scans.shutdown(wait=True)
        self._reads.shutdown(wait=True, cancel_futures=True)

    # --- requests from the screen ---------------------------------------------------------------

    def scan_text(self, text: str) -> None:
        """Scan ``text`` as if it had been read (handheld scanner, typed or pasted code)."""
        self._submit(self._scans, self._scan, text, None)

    def set_direction(self, direction: Direction) -> None:
        """Switch the gate to entry or exit; saved in the gate's settings. Scans already
        queued are decided in the mode they were read in."""
        self._submit(self._scans, self._set_direction, direction)

    def reload_settings(self) -> None:
        """Pick up settings saved elsewhere (the settings dialog), restarting the camera when
        its source changed."""
        self._submit(self._scans, self._reload_settings)

    def undo_last_admission(self) -> None:
        """Annul the last entry admitted in this session; the answer comes as ``undone``."""
        self._submit(self._scans, self._undo)

    def search_names(self, query: str) -> None:
        """Search the holders of tickets this device scanned; the answer is ``names_found``."""
        self._submit(self._reads, self._search, query)

    def refresh_status(self) -> None:
        """Read the status now (at most one read waits at a time)."""
        if self._closed or self._status_pending.is_set():
            return
        self._status_pending.set()
        self._submit(self._reads, self._read_status)

    # --- worker side ----------------------------------------------------------------------------

    def _submit(self, pool: ThreadPoolExecutor, job: Callable[..., None], *args: Any) -> None:
        if self._closed and job is not self._close_session:
            return
        try:
            future = pool.submit(job, *args)
        except RuntimeError:  # shut down while the window closes
            return
        future.add_done_callback(self._report_crash)

    def _report_crash(self, future: Future[None]) -> None:
        error = future.exception() if not future.cancelled() else None
        if error is not None:
            log.error("gate worker failed", exc_info=error)
            self.error.emit(f"Something went wrong in the scanner: {error}")

    def _open_session(self) -> None:
        # Loads OpenCV and the sync engine: on the worker, once the window is up.
        from scanner_app.core.session import ScanSession  # noqa: PLC0415
        from scanner_app.core.store import StoreError  # noqa: PLC0415

        try:
            self._session = ScanSession.open(
                self.store, online=self._online, background_sync=self._background_sync
            )
        except StoreError as error:
            self.error.emit(str(error))
            return
        self.ready.emit(self._session.gate.settings)

    def _close_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _scan(self, text: str, sighting: CodeSighting | None) -> None:
        session = self._session
        if session is None:
            self.error.emit("The scanner is not ready: this code was not checked. Scan it again.")
            return
        try:
            verdict = session.scan_text(text)
        except Exception as error:
            # Not recorded means not decided: no verdict may be shown for this code.
            log.exception("a scan could not be recorded")
            self.error.emit(
                f"This scan could not be recorded ({error}). Scan the ticket again; if this keeps "
                "happening, restart the scanner."
            )
            return
        if (
            verdict.admitted
            and not verdict.repeat
            and verdict.verdict.direction is Direction.ENTRY
            and verdict.verdict.scan_id is not None
        ):
            self._last_admission = verdict
        self.verdict.emit(verdict, sighting)
        self.refresh_status()

    def _set_direction(self, direction: Direction) -> None:
        with self.store.write() as conn:
            settings = msgspec.structs.replace(load_settings(conn), direction=direction)
            save_settings(conn, settings)
        if self._session is not None:
            self._session.direction = None  # the saved setting decides
            self._session.gate.reload()
        self.settings_changed.emit(settings)

    def _reload_settings(self) -> None:
        with self.store.read() as conn:
            settings = load_settings(conn)
        old_camera = self._session.gate.settings.camera if self._session else None
        if self._session is not None:
            self._session.gate.reload()
        self.settings_changed.emit(settings)
        if old_camera is not None and settings.camera != old_camera:
            self._stop_camera()
            self._start_camera()

    def _undo(self) -> None:
        session = self._session
        last = self._last_admission
        if session is None or last is None or last.verdict.scan_id is None:
            self.undone.emit(UndoOutcome(False, "There is no admission to undo in this session."))
            return
        scan_id = last.verdict.scan_id
        if session.annul(scan_id):
            self._last_admission = None
            self.undone.emit(
                UndoOutcome(True, "Admission undone: the ticket can be scanned again.", scan_id)
            )
        else:
            self._last_admission = None
            self.undone.emit(
                UndoOutcome(
                    False,
                    "This admission cannot be undone any more (it was undone already, or the "
                    "server refused the scan).",
                    scan_id,
                )
            )
        self.refresh_status()

    def _search(self, query: str) -> None:
        with self.store.read() as conn:
            found = find_scanned_holders(conn, self.store.sealer, query)
        self.names_found.emit(found)

    def _read_status(self) -> None:
        try:
            from scanner_app.core.session import device_status  # noqa: PLC0415 - see above

            device = device_status(self.store)
            with self.store.read() as conn:
                inside = sum(inside_by_gate(conn).values())
            session = self._session
            engine = session.engine if session is not None else None
            online = syncing = False
            next_retry = None
            if engine is not None:
                link = engine.status()
                online, syncing, next_retry = link.online, link.syncing, link.next_retry_at
            self.status.emit(
                GateStatus(
                    device=device,
                    has_server=bool(device.server_url),
                    online=online,
                    syncing=syncing,
                    next_retry_at=next_retry,
                    inside_now=inside,
                )
            )
        finally:
            self._status_pending.clear()

    # --- camera -------------------------------------------------------------------------------

    def _start_camera(self) -> None:
        """Open the configured camera and run the pipeline; a camera that is missing is a
        message on the screen, never a stopped gate."""
        # OpenCV and the decoder load here, on the worker, not at start-up.
        from scanner_app.core.capture import CaptureError, open_source  # noqa: PLC0415
        from scanner_app.core.decoding import (  # noqa: PLC0415
            DecoderUnavailable,
            create_decoder,
        )
        from scanner_app.core.pipeline import FramePipeline  # noqa: PLC0415

        with self.store.read() as conn:
            spec = load_settings(conn).camera
        try:
            source = open_source(spec)
            decoder = create_decoder()
        except (CaptureError, DecoderUnavailable) as error:
            self.camera.emit(f"No camera picture: {error}")
            return
        pipeline = FramePipeline(
            source,
            decoder,
            self._on_sighting,
            on_frame=self._on_frame,
            on_error=self._on_camera_error,
        )
        with self._pipeline_lock:
            if self._closed:  # the window closed while the camera was opening
                pipeline.stop()  # closes the source of a pipeline never started
                return
            self._pipeline = pipeline
        pipeline.start()
        self.camera.emit("")

    def _stop_camera(self) -> None:
        with self._pipeline_lock:
            pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.stop(timeout=1.0)

    def _on_sighting(self, sighting: CodeSighting) -> None:
        # From the decode thread: join the scan queue so verdicts keep their order.
        self._submit(self._scans, self._scan, sighting.text, sighting)

    def _on_frame(self, frame: CapturedFrame, symbols: Sequence[DecodedSymbol]) -> None:
        image = frame.image
        height, width = image.shape[:2]
        picture = QImage(
            image.data, width, height, int(image.strides[0]), QImage.Format.Format_BGR888
        ).copy()  # the array is reused by the camera: keep our own pixels
        self.frame.emit(picture, tuple(symbol.corners for symbol in symbols))

    def _on_camera_error(self, error: Exception) -> None:
        self.camera.emit(f"The camera stopped: {error}")
