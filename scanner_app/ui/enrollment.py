"""First-run enrollment: ``EnrollmentDialog`` ties this scanner to one event and gate.

It redeems an enrollment code (typed, or read from an enrollment QR code, ``enrollment_qr``) and
downloads the event's tickets once. Network and disk work (the core's ``enroll()`` and
``SyncEngine.sync_once()``, reading a QR code from an image) runs as jobs on the dialog's queue
(``ui.jobs``); the dialog only shows progress and the outcome, as sentences, and never clears
what was typed. A keyboard-only form (see ``ui.form``).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from scanner_app.core.store import LocalStore, StoreError
from scanner_app.core.store.state import Enrollment, load_enrollment, load_event
from scanner_app.core.sync.client import (
    DeviceRejected,
    InsecureServer,
    RequestRefused,
    ServerClient,
    ServerUnavailable,
)
from scanner_app.core.sync.engine import SyncEngine, SyncReport, enroll
from scanner_app.core.sync.lab_mode import insecure_http_allowed
from scanner_app.ui.enrollment_qr import QrScanDialog, read_enrollment_qr_image
from scanner_app.ui.form import choose_image, error_label, heading, show_error
from scanner_app.ui.jobs import Job, JobQueue
from shared import wire
from shared.enrollment_link import (
    CODE_EXAMPLE,
    URL_EXAMPLE,
    EnrollmentLink,
    EnrollmentLinkError,
    enrollment_code,
    server_url,
)

__all__ = ["EnrollmentCancelled", "EnrollmentDialog", "enrollment_failure"]

_R = TypeVar("_R")

#: How long the enrollment request may take before the server counts as unreachable.
_ENROLL_TIMEOUT_S = 15.0
#: How long the first sync waits for a sync another program holds on this data folder.
_SYNC_LOCK_WAIT_S = 30.0


class EnrollmentCancelled(Exception):
    """The person cancelled while the server was answering: nothing was written."""


class _CancellableClient(ServerClient):
    """The enrollment's client: an answer that arrives after Cancel is dropped before the core
    stores it, so a cancelled dialog leaves the data folder as it was."""

    def __init__(self, url: str, cancelled: threading.Event) -> None:
        super().__init__(url, None, timeout=_ENROLL_TIMEOUT_S)
        self._cancelled = cancelled

    def enroll(
        self,
        code: str,
        device_name: str,
        peer_public_key: bytes | None = None,
        succeeds: wire.Succession | None = None,
    ) -> wire.EnrolledDevice:
        enrolled = super().enroll(code, device_name, peer_public_key, succeeds)
        if self._cancelled.is_set():
            raise EnrollmentCancelled()
        return enrolled


def enrollment_failure(error: BaseException, url: str) -> str:
    """A sentence for why enrolling at ``url`` failed (the dialog's message)."""
    if isinstance(error, RequestRefused):
        if error.code == "invalid_url":
            return f"The server address is not valid. Check it: it looks like {URL_EXAMPLE}."
        if error.status in {404, 405}:
            return (
                f"{url} answered, but it is not a Gatehouse server (it has no enrollment). "
                "Check the address: it is the sync server's, not the ticket shop's."
            )
        return error.detail or str(error)
    if isinstance(error, ServerUnavailable):
        return (
            f"Cannot reach the server at {url}. Check the address and this computer's "
            f"network, then try again. ({error.reason})"
        )
    if isinstance(error, (DeviceRejected, InsecureServer)):
        return str(error)
    if isinstance(error, StoreError):
        return f"The scanner's data folder cannot be used: {error}"
    if isinstance(error, OSError):
        return f"The scanner's data folder cannot be used: {error.strerror or error}."
    return f"Enrolling failed unexpectedly: {error}"


class EnrollmentDialog(QDialog):
    """Ties this scanner to one event and gate with a manager's one-time code.

    ``exec()`` returns the enrolled ``LocalStore`` (open, tickets downloaded when the server
    allowed it) or None when the person cancelled. ``enrolled`` is emitted with that store
    just before the dialog accepts. On any failure the dialog stays open, says why in a
    sentence, and keeps what was typed.
    """

    enrolled = Signal(LocalStore)

    def __init__(self, data_dir: Path, parent: QWidget | None = None, *, camera: str = "0") -> None:
        super().__init__(parent)
        self.setWindowTitle("Enroll this scanner")
        self._data_dir = data_dir
        self._camera = camera
        self.store: LocalStore | None = None
        self.sync_report: SyncReport | None = None
        self._jobs = JobQueue("enrollment", self)
        #: The job whose answer the dialog waits for (None when idle).
        self._job: Job[Any] | None = None
        self._cancelled = threading.Event()
        self._phase = "idle"  # idle | enrolling | reading | downloading

        intro, form = self._build_fields()
        self.camera_button = QPushButton("Scan enrollment QR with the ca&mera…")
        self.camera_button.clicked.connect(self._scan_with_camera)
        self.file_button = QPushButton("Read enrollment QR from an &image file…")
        self.file_button.clicked.connect(self._choose_qr_file)
        qr_row = QHBoxLayout()
        qr_row.addWidget(self.camera_button)
        qr_row.addWidget(self.file_button)

        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)  # busy: no percentage is known
        self.busy_bar.setTextVisible(False)
        self.busy_bar.hide()
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.message_label = error_label()

        self.enroll_button = QPushButton("&Enroll")
        self.enroll_button.clicked.connect(self.start_enrollment)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.reject)
        buttons = QDialogButtonBox()
        buttons.addButton(self.enroll_button, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.RejectRole)

        layout = QVBoxLayout(self)
        layout.addWidget(heading("Enroll this scanner", self))
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addLayout(qr_row)
        layout.addWidget(self.busy_bar)
        layout.addWidget(self.status_label)
        layout.addWidget(self.message_label)
        layout.addWidget(buttons)
        # Enter anywhere means Enroll: only once the button is in the dialog can it be its
        # default, and the QR buttons must not take Enter when they had focus last.
        for side_button in (self.camera_button, self.file_button):
            side_button.setAutoDefault(False)
        self.enroll_button.setDefault(True)
        self.server_edit.setFocus()

    def _build_fields(self) -> tuple[QLabel, QFormLayout]:
        intro = QLabel(
            "A venue manager gives you an enrollment code, or shows it as a QR code. It ties "
            "this scanner to one event and one gate."
        )
        intro.setWordWrap(True)

        self.server_edit = QLineEdit()
        self.server_edit.setPlaceholderText(URL_EXAMPLE)
        self.server_edit.setAccessibleName("Server address")
        self.server_error = error_label()
        self.code_edit = QLineEdit()
        self.code_edit.setPlaceholderText(CODE_EXAMPLE)
        self.code_edit.setAccessibleName("Enrollment code")
        self.code_error = error_label()
        self.name_edit = QLineEdit(socket.gethostname())
        self.name_edit.setAccessibleName("Device name")
        self.name_error = error_label()

        form = QFormLayout()
        form.addRow("&Server address:", self.server_edit)
        form.addRow("", self.server_error)
        form.addRow("Enrollment &code:", self.code_edit)
        form.addRow("", self.code_error)
        form.addRow("Device &name:", self.name_edit)
        form.addRow("", self.name_error)
        return intro, form

    # The brief's interface: exec() gives the store, not Qt's result code.
    def exec(self) -> LocalStore | None:  # type: ignore[override]
        """Run modally; the enrolled store, or None when cancelled."""
        accepted = super().exec() == QDialog.DialogCode.Accepted
        return self.store if accepted else None

    @property
    def busy(self) -> bool:
        return self._phase != "idle"

    # --- input --------------------------------------------------------------------------------

    def _checked_input(self) -> tuple[str, str, str] | None:
        """The URL, code and name as they will be sent; inline errors and None if wrong."""
        url = code = None
        try:
            url = server_url(self.server_edit.text(), allow_insecure_http=insecure_http_allowed())
            show_error(self.server_error, None)
        except EnrollmentLinkError as error:
            show_error(self.server_error, str(error))
        try:
            code = enrollment_code(self.code_edit.text())
            show_error(self.code_error, None)
        except EnrollmentLinkError as error:
            show_error(self.code_error, str(error))
        name = self.name_edit.text().strip()
        show_error(self.name_error, None if name else "Give this scanner a name managers know.")
        if url is None:
            self.server_edit.setFocus()
        elif code is None:
            self.code_edit.setFocus()
        elif not name:
            self.name_edit.setFocus()
        if url is None or code is None or not name:
            return None
        return url, code, name

    def fill_from_link(self, link: EnrollmentLink) -> None:
        """Put a scanned link's address and code in the fields (visible, editable)."""
        self.server_edit.setText(link.server_url)
        self.code_edit.setText(link.code)

    def use_link(self, link: EnrollmentLink) -> None:
        """Fill the fields from an enrollment QR code and enroll with them at once."""
        self.fill_from_link(link)
        self.start_enrollment()

    # --- enrolling ------------------------------------------------------------------------------

    @Slot()
    def start_enrollment(self) -> None:
        """Check the fields and, if they are right, enroll in the background."""
        if self.busy:
            return
        checked = self._checked_input()
        if checked is None:
            return
        url, code, name = checked
        self._cancelled = cancelled = threading.Event()
        data_dir = self._data_dir

        def work() -> LocalStore:
            store = LocalStore.open(data_dir)
            try:
                enroll(
                    store,
                    url,
                    code,
                    name,
                    client_factory=lambda base, _token: _CancellableClient(base, cancelled),
                )
            except BaseException:
                store.close()
                raise
            return store

        self._begin("enrolling", f"Enrolling at {url}…")
        self._run(work, self._enrolled, lambda error: self._failed(error, url))

    def _run(
        self,
        work: Callable[[], _R],
        on_done: Callable[[_R], object],
        on_failed: Callable[[Exception], object],
    ) -> None:
        self._job = self._jobs.submit(work, on_done, on_failed)

    def _walk_away(self) -> None:
        """Drop the answer of the job in progress (Cancel, Continue without waiting). A request
        to a silent server runs on until its timeout: the next one goes to a fresh queue rather
        than waiting behind it."""
        if self._job is not None:
            self._job.cancel()
            self._job = None
            self._jobs.shut_down(wait=False)
            self._jobs = JobQueue("enrollment", self)

    def _begin(self, phase: str, status: str) -> None:
        self._phase = phase
        show_error(self.message_label, None)
        self.status_label.setText(status)
        self.busy_bar.show()
        for widget in self._inputs():
            widget.setEnabled(False)
        self.cancel_button.setText("Cancel")

    def _idle(self) -> None:
        self._phase = "idle"
        self._job = None
        self.busy_bar.hide()
        for widget in self._inputs():
            widget.setEnabled(True)
        self.cancel_button.setText("Cancel")

    def _inputs(self) -> list[QWidget]:
        return [
            self.server_edit,
            self.code_edit,
            self.name_edit,
            self.camera_button,
            self.file_button,
            self.enroll_button,
        ]

    def _failed(self, error: Exception, url: str) -> None:
        self._idle()
        self.status_label.clear()
        show_error(self.message_label, enrollment_failure(error, url))
        if isinstance(error, RequestRefused) and error.code.startswith("enrollment_code"):
            self.code_edit.setFocus()
            self.code_edit.selectAll()

    def _enrolled(self, store: LocalStore) -> None:
        self.store = store
        with store.read() as conn:
            enrollment = load_enrollment(conn)
            gate_event = load_event(conn, enrollment.event_id) if enrollment else None
        where = _enrolled_where(enrollment, gate_event)
        self._phase = "downloading"
        self.status_label.setText(f"Enrolled {where}. Downloading tickets…")
        # The download can be left to the app's background sync; the gate works offline.
        self.cancel_button.setText("&Continue without waiting")
        self.cancel_button.setEnabled(True)

        def work() -> SyncReport:
            return SyncEngine(store, lock_timeout_seconds=_SYNC_LOCK_WAIT_S).sync_once()

        self._run(work, self._downloaded, self._download_failed)

    def _downloaded(self, result: SyncReport) -> None:
        self._job = None
        self.sync_report = result
        if result.ok:
            self.status_label.setText(f"{self.status_label.text()} {result.tickets:,} tickets.")
        else:
            self.status_label.setText(
                "Enrolled. The tickets could not be downloaded yet "
                f"({'; '.join(result.errors)}); the scanner keeps trying and works offline."
            )
        self._finish()

    def _download_failed(self, error: Exception) -> None:
        self._job = None
        self.status_label.setText(
            f"Enrolled. The tickets could not be downloaded yet ({error}); the scanner keeps "
            "trying and works offline."
        )
        self._finish()

    def _finish(self) -> None:
        self._walk_away()  # the download, when the person did not wait for it
        self._phase = "idle"
        self.busy_bar.hide()
        assert self.store is not None
        self.enrolled.emit(self.store)
        self.accept()

    def reject(self) -> None:
        """Cancel: stops what is running (the dialog stays, fields intact), else closes.
        During the ticket download it closes as enrolled instead: the device is enrolled."""
        if self._phase == "downloading":
            self._finish()
            return
        if self._phase in {"enrolling", "reading"}:
            self._cancelled.set()
            self._walk_away()
            self._idle()
            self.status_label.setText("Cancelled. Nothing was changed on this scanner.")
            return
        super().reject()

    # --- enrollment QR --------------------------------------------------------------------------

    @Slot()
    def _choose_qr_file(self) -> None:
        chosen = choose_image(self, "Enrollment QR code image")
        if chosen is not None:
            self.read_qr_file(chosen)

    def read_qr_file(self, path: Path) -> None:
        """Read the enrollment QR code in the image at ``path`` (in the background), then
        enroll with it; a file without one gets a sentence."""
        if self.busy:
            return
        self._begin("reading", f"Reading the QR code in {path.name}…")
        self._run(lambda: read_enrollment_qr_image(path), self._qr_read, self._qr_failed)

    def _qr_read(self, link: EnrollmentLink) -> None:
        self._idle()
        self.use_link(link)

    def _qr_failed(self, error: Exception) -> None:
        self._idle()
        self.status_label.clear()
        show_error(self.message_label, str(error))

    @Slot()
    def _scan_with_camera(self) -> None:
        self.scan_qr_from(self._camera)

    def scan_qr_from(self, source: str) -> None:
        """Look for an enrollment QR code in ``source`` (a camera number, device or file)."""
        scanner = QrScanDialog(source, self)
        if scanner.exec() == QDialog.DialogCode.Accepted and scanner.link is not None:
            self.use_link(scanner.link)


def _enrolled_where(enrollment: Enrollment | None, gate_event: wire.GateEvent | None) -> str:
    if enrollment is None:
        return ""
    event = f" for {gate_event.name}" if gate_event else ""
    return f"at gate {enrollment.gate}{event}"
