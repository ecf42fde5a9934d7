"""First-run enrollment and the gate's settings: the app's two dialogs.

Both are plain forms a steward can drive with the keyboard alone (every field has a mnemonic,
Enter presses the default button, Escape cancels), laid out by Qt layouts with no pixel sizes
or point sizes fixed, so they scale with the screen's DPI and the system font.

``EnrollmentDialog`` redeems an enrollment code (typed, or read from an enrollment QR code) and
downloads the event's tickets once. Network and disk work runs in a background thread (the
core's ``enroll()`` and ``SyncEngine.sync_once()``); the dialog only shows progress and the
outcome, as sentences, and never clears what was typed.

``SettingsDialog`` edits ``GateSettings`` and saves them in one store write when OK is pressed.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Generic, TypeVar

import msgspec
from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from scanner_app.core.cameras import available_cameras
from scanner_app.core.capture import IMAGE_SUFFIXES
from scanner_app.core.store import LocalStore, StoreError
from scanner_app.core.store.state import (
    Enrollment,
    GateSettings,
    load_enrollment,
    load_event,
    load_settings,
    save_settings,
)
from scanner_app.core.sync.client import (
    DeviceRejected,
    RequestRefused,
    ServerClient,
    ServerUnavailable,
)
from scanner_app.core.sync.engine import SyncEngine, SyncReport, enroll
from scanner_app.ui.enrollment_qr import QrScanDialog, read_enrollment_qr_image
from shared import wire
from shared.domain import Direction
from shared.enrollment_link import (
    CODE_EXAMPLE,
    URL_EXAMPLE,
    EnrollmentLink,
    EnrollmentLinkError,
    enrollment_code,
    server_url,
)

__all__ = [
    "ONLINE_TIMEOUT_RANGE",
    "VERDICT_SECONDS_RANGE",
    "BackgroundCall",
    "EnrollmentDialog",
    "SettingsDialog",
]

_R = TypeVar("_R")

#: Shortest and longest verdict display (seconds): shorter cannot be read, longer holds the
#: queue up (the next scan replaces a verdict anyway).
VERDICT_SECONDS_RANGE = (0.5, 60.0)
#: Online validation timeout (seconds): below 0.2 s a healthy server on Wi-Fi misses it; above
#: 5 s the person at the gate waits too long when the server is slow.
ONLINE_TIMEOUT_RANGE = (0.2, 5.0)

#: How long the enrollment request may take before the server counts as unreachable.
_ENROLL_TIMEOUT_S = 15.0
#: How long the first sync waits for a sync another program holds on this data folder.
_SYNC_LOCK_WAIT_S = 30.0


# --- work off the UI thread ---------------------------------------------------------------------


class BackgroundCall(QObject, Generic[_R]):
    """Runs ``work`` once in a daemon thread; ``done(result)`` or ``failed(exception)`` is
    delivered on the UI thread (queued signals, as the receivers live there).

    Daemon thread: a request stuck on a dead network must not keep the app from quitting.
    """

    done = Signal(object)
    failed = Signal(object)

    def __init__(self, work: Callable[[], _R], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._work = work

    def start(self) -> None:
        threading.Thread(target=self._run, name="gatehouse-dialog-work", daemon=True).start()

    def _run(self) -> None:
        try:
            result = self._work()
        except Exception as error:  # every failure becomes a sentence on screen
            self.failed.emit(error)
        else:
            self.done.emit(result)


def _error_label() -> QLabel:
    label = QLabel()
    label.setWordWrap(True)
    # White on dark red: readable on light and dark themes alike.
    label.setStyleSheet("color: white; background-color: #b3261e; padding: 0.2em;")
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    # As tall as its sentence, never taller: spare height is not the error's to take.
    label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
    label.hide()
    return label


def _show_error(label: QLabel, sentence: str | None) -> None:
    label.setText(sentence or "")
    label.setVisible(bool(sentence))
    _fit_height(label.window())


def _fit_height(window: QWidget) -> None:
    """Grow the window to fit wrapped sentences that appeared: a dialog does not grow by itself
    for a label whose height depends on its width, so the sentence would be cut off."""
    layout = window.layout()
    if layout is None or not window.isVisible():
        return
    needed = (
        layout.totalHeightForWidth(window.width())
        if layout.hasHeightForWidth()
        else layout.totalSizeHint().height()
    )
    if needed > window.height():
        window.resize(window.width(), needed)


def _heading(text: str, parent: QWidget) -> QLabel:
    label = QLabel(text)
    font = QFont(parent.font())
    # Relative to the system font, so it follows the DPI and the user's text size.
    font.setPointSizeF(font.pointSizeF() * 1.4)
    font.setBold(True)
    label.setFont(font)
    label.setWordWrap(True)
    return label


# --- enrollment -----------------------------------------------------------------------------------


class EnrollmentCancelled(Exception):
    """The person cancelled while the server was answering: nothing was written."""


class _CancellableClient(ServerClient):
    """The enrollment's client: an answer that arrives after Cancel is dropped before the core
    stores it, so a cancelled dialog leaves the data folder as it was."""

    def __init__(self, url: str, cancelled: threading.Event) -> None:
        super().__init__(url, None, timeout=_ENROLL_TIMEOUT_S)
        self._cancelled = cancelled

    def enroll(self, code: str, device_name: str) -> wire.EnrolledDevice:
        enrolled = super().enroll(code, device_name)
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
    if isinstance(error, DeviceRejected):
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

    enrolled = Signal(object)

    def __init__(self, data_dir: Path, parent: QWidget | None = None, *, camera: str = "0") -> None:
        super().__init__(parent)
        self.setWindowTitle("Enroll this scanner")
        self._data_dir = data_dir
        self._camera = camera
        self.store: LocalStore | None = None
        self.sync_report: SyncReport | None = None
        self._job: BackgroundCall[object] | None = None
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
        self.message_label = _error_label()

        self.enroll_button = QPushButton("&Enroll")
        self.enroll_button.clicked.connect(self.start_enrollment)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.reject)
        buttons = QDialogButtonBox()
        buttons.addButton(self.enroll_button, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.RejectRole)

        layout = QVBoxLayout(self)
        layout.addWidget(_heading("Enroll this scanner", self))
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
        self.server_error = _error_label()
        self.code_edit = QLineEdit()
        self.code_edit.setPlaceholderText(CODE_EXAMPLE)
        self.code_edit.setAccessibleName("Enrollment code")
        self.code_error = _error_label()
        self.name_edit = QLineEdit(socket.gethostname())
        self.name_edit.setAccessibleName("Device name")
        self.name_error = _error_label()

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
            url = server_url(self.server_edit.text())
            _show_error(self.server_error, None)
        except EnrollmentLinkError as error:
            _show_error(self.server_error, str(error))
        try:
            code = enrollment_code(self.code_edit.text())
            _show_error(self.code_error, None)
        except EnrollmentLinkError as error:
            _show_error(self.code_error, str(error))
        name = self.name_edit.text().strip()
        _show_error(self.name_error, None if name else "Give this scanner a name managers know.")
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

        def work() -> object:
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
        work: Callable[[], object],
        on_done: Callable[[object], None],
        on_failed: Callable[[object], None],
    ) -> None:
        job: BackgroundCall[object] = BackgroundCall(work)
        # Answers of a job the person walked away from (Cancel) are dropped.
        job.done.connect(lambda result: on_done(result) if self._job is job else None)
        job.failed.connect(lambda error: on_failed(error) if self._job is job else None)
        self._job = job
        job.start()

    def _begin(self, phase: str, status: str) -> None:
        self._phase = phase
        _show_error(self.message_label, None)
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

    def _failed(self, error: object, url: str) -> None:
        self._idle()
        self.status_label.clear()
        sentence = (
            enrollment_failure(error, url) if isinstance(error, BaseException) else str(error)
        )
        _show_error(self.message_label, sentence)
        if isinstance(error, RequestRefused) and error.code.startswith("enrollment_code"):
            self.code_edit.setFocus()
            self.code_edit.selectAll()

    def _enrolled(self, result: object) -> None:
        assert isinstance(result, LocalStore)
        store = result
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

        def work() -> object:
            return SyncEngine(store, lock_timeout_seconds=_SYNC_LOCK_WAIT_S).sync_once()

        self._run(work, self._downloaded, self._download_failed)

    def _downloaded(self, result: object) -> None:
        assert isinstance(result, SyncReport)
        self.sync_report = result
        if result.ok:
            self.status_label.setText(f"{self.status_label.text()} {result.tickets:,} tickets.")
        else:
            self.status_label.setText(
                "Enrolled. The tickets could not be downloaded yet "
                f"({'; '.join(result.errors)}); the scanner keeps trying and works offline."
            )
        self._finish()

    def _download_failed(self, error: object) -> None:
        self.status_label.setText(
            f"Enrolled. The tickets could not be downloaded yet ({error}); the scanner keeps "
            "trying and works offline."
        )
        self._finish()

    def _finish(self) -> None:
        self._job = None
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
            self._idle()
            self.status_label.setText("Cancelled. Nothing was changed on this scanner.")
            return
        super().reject()

    # --- enrollment QR --------------------------------------------------------------------------

    @Slot()
    def _choose_qr_file(self) -> None:
        suffixes = " ".join(f"*{suffix}" for suffix in sorted(IMAGE_SUFFIXES))
        chosen, _ = QFileDialog.getOpenFileName(
            self, "Enrollment QR code image", "", f"Images ({suffixes})"
        )
        if chosen:
            self.read_qr_file(Path(chosen))

    def read_qr_file(self, path: Path) -> None:
        """Read the enrollment QR code in the image at ``path`` (in the background), then
        enroll with it; a file without one gets a sentence."""
        if self.busy:
            return
        self._begin("reading", f"Reading the QR code in {path.name}…")
        self._run(lambda: read_enrollment_qr_image(path), self._qr_read, self._qr_failed)

    def _qr_read(self, result: object) -> None:
        assert isinstance(result, EnrollmentLink)
        self._idle()
        self.use_link(result)

    def _qr_failed(self, error: object) -> None:
        self._idle()
        self.status_label.clear()
        _show_error(self.message_label, str(error))

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


# --- settings -------------------------------------------------------------------------------------


def _seconds(text: str, bounds: tuple[float, float], what: str) -> float | str:
    """``text`` as seconds within ``bounds``, or the sentence saying what is wrong."""
    low, high = bounds
    problem = f"{what} must be a number of seconds from {low:g} to {high:g}."
    try:
        value = float(text.strip().replace(",", "."))
    except ValueError:
        return problem
    if not low <= value <= high:  # also refuses nan
        return problem
    return value


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone().strftime("%a %d %b %Y, %H:%M")


class SettingsDialog(QDialog):
    """The gate's settings; OK saves them all in one store write, Cancel changes nothing.

    The gate name and the event are the server's (set when the device was enrolled) and shown
    read-only. ``saved`` is emitted with the new ``GateSettings`` after they are on disk.
    """

    saved = Signal(object)

    def __init__(self, store: LocalStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Gate settings")
        self._store = store
        with store.read() as conn:
            self.settings = load_settings(conn)
            enrollment = load_enrollment(conn)
            gate_event = load_event(conn, enrollment.event_id) if enrollment else None
        has_server = enrollment is not None and bool(enrollment.server_url)
        current = self.settings

        camera_row = self._build_camera_row(current.camera)
        # The gate and the event are the server's: shown, not edited.
        self.gate_edit = QLineEdit(enrollment.gate if enrollment else "")
        self.gate_edit.setReadOnly(True)
        self.gate_edit.setAccessibleName("Gate (set by the server)")
        gate_note = QLabel(
            "Set by the server when this scanner was enrolled. For another gate, a manager "
            "creates a new enrollment code."
            if has_server
            else "Set when this scanner was prepared (no server)."
        )
        gate_note.setWordWrap(True)
        self.event_label = QLabel(self._event_text(gate_event))
        self.event_label.setWordWrap(True)

        mode_row = self._build_mode_row(current.direction)

        strict_note = self._build_behaviour(current)

        form = QFormLayout()
        camera_label = QLabel("&Camera:")
        camera_label.setBuddy(self.camera_combo)
        form.addRow(camera_label, camera_row)
        form.addRow("", self.camera_error)
        form.addRow("Gate:", self.gate_edit)
        form.addRow("", gate_note)
        form.addRow("Event:", self.event_label)
        form.addRow("Mode:", mode_row)
        form.addRow("", self.sounds_check)
        form.addRow("", self.strict_check)
        form.addRow("", strict_note)
        verdict_label = QLabel("&Verdict shown for (seconds):")
        verdict_label.setBuddy(self.verdict_edit)
        form.addRow(verdict_label, self.verdict_edit)
        form.addRow("", self.verdict_error)

        online_box = self._build_online_box(current, has_server)

        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.cancel_button = buttons.button(QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(_heading("Gate settings", self))
        layout.addLayout(form)
        layout.addWidget(online_box)
        layout.addWidget(buttons)
        self.camera_combo.setFocus()

    def _build_behaviour(self, current: GateSettings) -> QLabel:
        self.sounds_check = QCheckBox("Play a &sound for each verdict")
        self.sounds_check.setChecked(current.sounds)
        self.strict_check = QCheckBox("S&trict: refuse tickets not yet on this scanner")
        self.strict_check.setChecked(current.strict)
        strict_note = QLabel(
            "Refuses genuine codes of tickets sold since the last download, instead of "
            "admitting them on their signature alone (shown amber)."
        )
        strict_note.setWordWrap(True)
        self.verdict_edit = QLineEdit(f"{current.verdict_seconds:g}")
        self.verdict_edit.setAccessibleName("Verdict display time in seconds")
        self.verdict_error = _error_label()
        return strict_note

    def _build_mode_row(self, direction: Direction) -> QHBoxLayout:
        self.entry_radio = QRadioButton("E&ntry: let people in")
        self.exit_radio = QRadioButton("E&xit: let people out")
        self._mode_group = QButtonGroup(self)
        self._mode_group.addButton(self.entry_radio)
        self._mode_group.addButton(self.exit_radio)
        (self.exit_radio if direction is Direction.EXIT else self.entry_radio).setChecked(True)
        mode_row = QHBoxLayout()
        mode_row.addWidget(self.entry_radio)
        mode_row.addWidget(self.exit_radio)
        mode_row.addStretch(1)
        return mode_row

    def _build_camera_row(self, camera: str) -> QHBoxLayout:
        self.camera_combo = QComboBox()
        self.camera_combo.setEditable(True)
        self.camera_combo.setAccessibleName("Camera")
        for choice in available_cameras():
            self.camera_combo.addItem(choice.label, choice.spec)
        self._select_camera(camera)
        file_button = QPushButton("&File…")
        file_button.clicked.connect(self._choose_camera_file)
        folder_button = QPushButton("F&older…")
        folder_button.clicked.connect(self._choose_camera_folder)
        for side_button in (file_button, folder_button):
            side_button.setAutoDefault(False)  # Enter means OK, not "pick a file"
        camera_row = QHBoxLayout()
        camera_row.addWidget(self.camera_combo, 1)
        camera_row.addWidget(file_button)
        camera_row.addWidget(folder_button)
        self.camera_error = _error_label()
        return camera_row

    def _build_online_box(self, current: GateSettings, has_server: bool) -> QGroupBox:
        self.online_check = QCheckBox("Ask the server &first when it is reachable")
        self.online_check.setChecked(current.online_validation and has_server)
        self.online_check.setEnabled(has_server)
        self.timeout_edit = QLineEdit(f"{current.online_timeout_seconds:g}")
        self.timeout_edit.setAccessibleName("Online answer timeout in seconds")
        self.timeout_edit.setEnabled(self.online_check.isChecked())
        self.online_check.toggled.connect(self.timeout_edit.setEnabled)
        self.timeout_error = _error_label()
        online_note = QLabel(
            "The server's answer knows about every gate at once. When it does not come in "
            "time, the scanner decides offline at once."
            if has_server
            else "This scanner has no server: it always decides offline."
        )
        online_note.setWordWrap(True)

        online_box = QGroupBox("Online validation")
        online_form = QFormLayout(online_box)
        online_form.addRow(self.online_check)
        timeout_label = QLabel("&Wait for the server up to (seconds):")
        timeout_label.setBuddy(self.timeout_edit)
        online_form.addRow(timeout_label, self.timeout_edit)
        online_form.addRow(self.timeout_error)
        online_form.addRow(online_note)
        return online_box

    @staticmethod
    def _event_text(gate_event: wire.GateEvent | None) -> str:
        if gate_event is None:
            return "No event yet: enroll this scanner first."
        lines = [
            f"<b>{_escape(gate_event.name)}</b>",
            _escape(gate_event.venue),
            f"{_when(gate_event.starts_at)} – {_when(gate_event.ends_at)}",
        ]
        if gate_event.admission_opens_at is not None:
            lines.append(f"Gates open {_when(gate_event.admission_opens_at)}")
        lines.append("Re-entry allowed" if gate_event.allow_reentry else "No re-entry")
        return "<br>".join(lines)

    def _select_camera(self, spec: str) -> None:
        index = self.camera_combo.findData(spec)
        if index >= 0:
            self.camera_combo.setCurrentIndex(index)
        else:
            self.camera_combo.setEditText(spec)

    def camera_spec(self) -> str:
        """What the camera field says, as ``capture.open_source`` takes it."""
        text = self.camera_combo.currentText().strip()
        index = self.camera_combo.findText(text)
        if index >= 0:
            data = self.camera_combo.itemData(index)
            if isinstance(data, str):
                return data
        return text

    def _choose_camera_file(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(self, "Video or image file for the camera")
        if chosen:
            self.camera_combo.setEditText(chosen)

    def _choose_camera_folder(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Folder of images for the camera")
        if chosen:
            self.camera_combo.setEditText(chosen)

    def _camera_problem(self, spec: str) -> str | None:
        # Only what can be checked without opening the camera (which can take seconds).
        if not spec:
            return "Choose a camera, or a video file or folder of images."
        if spec.isdigit() or spec.startswith("/dev/"):
            return None
        if not Path(spec).expanduser().exists():
            return f"There is no camera, file or folder called {spec}."
        return None

    def edited_settings(self) -> GateSettings | None:
        """The settings as the form has them, or None (with the errors shown) when a field is
        not valid."""
        camera = self.camera_spec()
        camera_problem = self._camera_problem(camera)
        _show_error(self.camera_error, camera_problem)
        verdict = _seconds(self.verdict_edit.text(), VERDICT_SECONDS_RANGE, "The verdict time")
        _show_error(self.verdict_error, verdict if isinstance(verdict, str) else None)
        timeout: float | str = self.settings.online_timeout_seconds
        if self.online_check.isChecked():
            timeout = _seconds(self.timeout_edit.text(), ONLINE_TIMEOUT_RANGE, "The wait")
        _show_error(self.timeout_error, timeout if isinstance(timeout, str) else None)
        if camera_problem:
            self.camera_combo.setFocus()
        elif isinstance(verdict, str):
            self.verdict_edit.setFocus()
        elif isinstance(timeout, str):
            self.timeout_edit.setFocus()
        if camera_problem or isinstance(verdict, str) or isinstance(timeout, str):
            return None
        return msgspec.structs.replace(
            self.settings,
            camera=camera,
            direction=Direction.EXIT if self.exit_radio.isChecked() else Direction.ENTRY,
            sounds=self.sounds_check.isChecked(),
            strict=self.strict_check.isChecked(),
            verdict_seconds=verdict,
            online_validation=self.online_check.isChecked()
            if self.online_check.isEnabled()
            else self.settings.online_validation,
            online_timeout_seconds=timeout,
        )

    @Slot()
    def save(self) -> None:
        """Save and close, or show what is wrong and stay open."""
        edited = self.edited_settings()
        if edited is None:
            return
        with self._store.write() as conn:  # one small write, about a millisecond
            save_settings(conn, edited)
        self.settings = edited
        self.saved.emit(edited)
        self.accept()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
