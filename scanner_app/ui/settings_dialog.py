"""The gate's settings: ``SettingsDialog`` edits ``GateSettings`` and saves them in one store
write when OK is pressed. A keyboard-only form (see ``ui.form``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import msgspec
from PySide6.QtCore import Signal, Slot
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
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from scanner_app.core.cameras import available_cameras
from scanner_app.core.store import LocalStore
from scanner_app.core.store.state import (
    GateSettings,
    load_enrollment,
    load_event,
    load_settings,
    parse_peer_address,
    save_settings,
)
from scanner_app.ui.form import error_label, heading, show_error
from shared import wire
from shared.domain import Direction

__all__ = ["ONLINE_TIMEOUT_RANGE", "VERDICT_SECONDS_RANGE", "SettingsDialog"]

#: Shortest and longest verdict display (seconds): shorter cannot be read, longer holds the
#: queue up (the next scan replaces a verdict anyway).
VERDICT_SECONDS_RANGE = (0.5, 60.0)
#: Online validation timeout (seconds): below 0.2 s a healthy server on Wi-Fi misses it; above
#: 5 s the person at the gate waits too long when the server is slow.
ONLINE_TIMEOUT_RANGE = (0.2, 5.0)


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

    saved = Signal(GateSettings)

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
        peer_box = self._build_peer_box(current)

        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.cancel_button = buttons.button(QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(heading("Gate settings", self))
        layout.addLayout(form)
        layout.addWidget(online_box)
        layout.addWidget(peer_box)
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
        self.verdict_error = error_label()
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
        self.camera_error = error_label()
        return camera_row

    def _build_online_box(self, current: GateSettings, has_server: bool) -> QGroupBox:
        self.online_check = QCheckBox("Ask the server &first when it is reachable")
        self.online_check.setChecked(current.online_validation and has_server)
        self.online_check.setEnabled(has_server)
        self.timeout_edit = QLineEdit(f"{current.online_timeout_seconds:g}")
        self.timeout_edit.setAccessibleName("Online answer timeout in seconds")
        self.timeout_edit.setEnabled(self.online_check.isChecked())
        self.online_check.toggled.connect(self.timeout_edit.setEnabled)
        self.timeout_error = error_label()
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

    def _build_peer_box(self, current: GateSettings) -> QGroupBox:
        self.peer_check = QCheckBox("Tell the other &gates of this event every admission")
        self.peer_check.setChecked(current.peer_sync)
        self.peer_port_edit = QLineEdit(str(current.peer_port))
        self.peer_port_edit.setAccessibleName("Peer sync port")
        self.discovery_check = QCheckBox("Find them on the local network by &itself (mDNS)")
        self.discovery_check.setChecked(current.peer_discovery)
        self.static_peers_edit = QLineEdit(", ".join(current.static_peers))
        self.static_peers_edit.setAccessibleName("Peer addresses (host:port, comma-separated)")
        self.static_peers_edit.setPlaceholderText("e.g. 10.0.0.12:47650, 10.0.0.13:47650")
        self.peer_error = error_label()
        for widget in (self.peer_port_edit, self.discovery_check, self.static_peers_edit):
            widget.setEnabled(current.peer_sync)
            self.peer_check.toggled.connect(widget.setEnabled)
        note = QLabel(
            "When the server cannot be reached, the gates still tell each other over the "
            "venue's network, so one ticket is not admitted at two gates. Peer addresses are "
            "for networks that block discovery. Takes effect when scanning starts again."
        )
        note.setWordWrap(True)
        box = QGroupBox("Peer sync between gates")
        box_form = QFormLayout(box)
        box_form.addRow(self.peer_check)
        port_label = QLabel("&Port:")
        port_label.setBuddy(self.peer_port_edit)
        box_form.addRow(port_label, self.peer_port_edit)
        box_form.addRow(self.discovery_check)
        peers_label = QLabel("P&eer addresses:")
        peers_label.setBuddy(self.static_peers_edit)
        box_form.addRow(peers_label, self.static_peers_edit)
        box_form.addRow(self.peer_error)
        box_form.addRow(note)
        return box

    def _peer_fields(self) -> tuple[int, tuple[str, ...]] | str:
        """The port and peer addresses as the form has them, or what is wrong with them."""
        port_text = self.peer_port_edit.text().strip()
        if not port_text.isdigit() or not 1024 <= int(port_text) <= 65_535:
            return "The port is a number from 1024 to 65535."
        peers: list[str] = []
        for part in self.static_peers_edit.text().replace(";", ",").split(","):
            if not part.strip():
                continue
            if parse_peer_address(part) is None:
                return f"“{part.strip()}” is not an address like 10.0.0.12:47650."
            peers.append(part.strip())
        return int(port_text), tuple(peers)

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
        show_error(self.camera_error, camera_problem)
        verdict = _seconds(self.verdict_edit.text(), VERDICT_SECONDS_RANGE, "The verdict time")
        show_error(self.verdict_error, verdict if isinstance(verdict, str) else None)
        timeout: float | str = self.settings.online_timeout_seconds
        if self.online_check.isChecked():
            timeout = _seconds(self.timeout_edit.text(), ONLINE_TIMEOUT_RANGE, "The wait")
        show_error(self.timeout_error, timeout if isinstance(timeout, str) else None)
        peer_fields = self._peer_fields() if self.peer_check.isChecked() else None
        show_error(self.peer_error, peer_fields if isinstance(peer_fields, str) else None)
        if camera_problem:
            self.camera_combo.setFocus()
        elif isinstance(verdict, str):
            self.verdict_edit.setFocus()
        elif isinstance(timeout, str):
            self.timeout_edit.setFocus()
        elif isinstance(peer_fields, str):
            self.peer_port_edit.setFocus()
        if (
            camera_problem
            or isinstance(verdict, str)
            or isinstance(timeout, str)
            or isinstance(peer_fields, str)
        ):
            return None
        port, static_peers = (
            peer_fields
            if peer_fields is not None
            else (self.settings.peer_port, self.settings.static_peers)
        )
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
            peer_sync=self.peer_check.isChecked(),
            peer_port=port,
            static_peers=static_peers,
            peer_discovery=self.discovery_check.isChecked(),
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
