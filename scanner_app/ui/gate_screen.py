"""The gate screen: camera picture, verdict panel, mode switch, counters, lookup and undo.

Layout: the verdict panel fills most of the screen (it is what staff read from two metres);
the camera picture sits beside it, with the code it reads outlined, so a guest can aim; below,
the entry/exit switch, the counters, the lookup field and the undo button.

Keyboard: the handheld scanner works whatever has the focus (``WedgeFilter``). F3 / F4 (and
Alt+E / Alt+X) switch entry / exit, Ctrl+F goes to the lookup field, Ctrl+Z undoes the last
admission — none of them a plain letter, because a scanner types plain letters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QKeySequence, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QButtonGroup,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from scanner_app.core.checkin import zone_label
from scanner_app.core.gate import GateVerdict
from scanner_app.core.store.lookups import NameMatch
from scanner_app.core.store.state import GateSettings
from scanner_app.ui.scanning import GateStatus, ScanBridge, UndoOutcome
from scanner_app.ui.sounds import VerdictSounds
from scanner_app.ui.verdict_panel import Tone, VerdictPanel, look_of
from shared.checkin_lists import GENERAL_AREA
from shared.domain import Direction, VerdictResult
from shared.ticket_code import PREFIX, PREFIX_V1

if TYPE_CHECKING:  # the pipeline module loads OpenCV: not at start-up
    from scanner_app.core.sighting import CodeSighting

Point = tuple[float, float]


class CameraView(QWidget):
    """The camera picture, scaled to fit, with the outlines of the codes it sees; or, with no
    camera, a sentence saying why and what still works."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._image: QImage | None = None
        self._outlines: tuple[tuple[Point, ...], ...] = ()
        self.message = "Starting the camera…"
        self.setAccessibleName("Camera")

    def show_frame(self, image: QImage, outlines: Sequence[Sequence[Point]]) -> None:
        self._image = image
        self._outlines = tuple(tuple(outline) for outline in outlines)
        self.message = ""
        self.update()

    def show_sighting(self, sighting: CodeSighting) -> None:
        self._outlines = (sighting.corners,)
        self.update()

    def show_message(self, message: str) -> None:
        """``message`` instead of the picture; an empty one means the camera runs."""
        self.message = message
        if message:
            self._image = None
            self._outlines = ()
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor("#000000"))
        if self._image is not None and not self.message:
            self._paint_frame(painter, self._image)
        else:
            font = QFont(self.font())
            font.setPixelSize(max(12, min(self.height() // 14, self.width() // 22)))
            painter.setFont(font)
            painter.setPen(QColor("#eceff1"))
            painter.drawText(
                self.rect().adjusted(12, 12, -12, -12),
                int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap),
                self.message,
            )
        painter.end()

    def _paint_frame(self, painter: QPainter, image: QImage) -> None:
        scale = min(self.width() / image.width(), self.height() / image.height())
        width, height = image.width() * scale, image.height() * scale
        left, top = (self.width() - width) / 2, (self.height() - height) / 2
        painter.drawImage(QRectF(left, top, width, height), image)
        pen = QPen(QColor("#00e676"))
        pen.setWidthF(max(3.0, self.width() / 150))
        painter.setPen(pen)
        for outline in self._outlines:
            points = [QPointF(left + x * scale, top + y * scale) for x, y in outline]
            if len(points) >= 3:
                painter.drawPolygon(points)


def _hidden_label(name: str) -> QLabel:
    label = QLabel()
    label.setObjectName(name)
    font = label.font()
    font.setBold(True)  # what the gate scans: read at a glance
    label.setFont(font)
    label.hide()
    return label


class GateScreen(QWidget):
    """The "Gate" tab. Talks to the core only through ``bridge``."""

    #: The number of admissions in this session changed (for tests and the window title).
    counters_changed = Signal()

    def __init__(
        self,
        bridge: ScanBridge,
        *,
        sounds: VerdictSounds | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.sounds = sounds
        self.admitted_this_session = 0
        self.inside_now: int | None = None
        self.last_admission: GateVerdict | None = None

        self.panel = VerdictPanel(self)
        self.camera_view = CameraView(self)
        self.entry_button = self._mode_button("&Entry", "Let people in (F3)")
        self.exit_button = self._mode_button("E&xit", "Let people out (F4)")
        self._modes = QButtonGroup(self)
        self._modes.setExclusive(True)
        self._modes.addButton(self.entry_button)
        self._modes.addButton(self.exit_button)
        self.entry_button.setChecked(True)
        self.entry_button.clicked.connect(lambda: self.set_direction(Direction.ENTRY))
        self.exit_button.clicked.connect(lambda: self.set_direction(Direction.EXIT))

        self.admitted_label = QLabel()
        self.inside_label = QLabel()
        #: What this gate scans (issue 16), e.g. "VIP list · Lounge"; hidden without lists.
        self.lists_label = _hidden_label("gateLists")
        self.lookup_field = QLineEdit()
        self.lookup_field.setPlaceholderText("Type or paste a ticket code, or a name (Ctrl+F)")
        self.lookup_field.setClearButtonEnabled(True)
        self.lookup_field.returnPressed.connect(self.look_up)
        self.lookup_button = QPushButton("Look up")
        self.lookup_button.clicked.connect(self.look_up)
        self.lookup_hint = QLabel(
            "Name search covers only tickets scanned at this device: holder names are sealed "
            "on the scanner and open only with the ticket's code."
        )
        self.lookup_hint.setWordWrap(True)
        self.results = QListWidget()
        self.results.setMaximumHeight(self.fontMetrics().height() * 6)
        self.results.hide()
        self.results.itemActivated.connect(self._scan_result)
        self.undo_button = QPushButton("&Undo last admission…")
        self.undo_button.setToolTip("Annul the last entry admitted here (Ctrl+Z)")
        self.undo_button.setShortcut(QKeySequence("Ctrl+Z"))
        self.undo_button.setEnabled(False)
        self.undo_button.clicked.connect(self.undo_last_admission)
        self.message_label = QLabel()
        self.message_label.setWordWrap(True)

        self._layout()
        self._show_counters()
        bridge.verdict.connect(self.show_verdict)
        bridge.frame.connect(self.camera_view.show_frame)
        bridge.camera.connect(self._camera_state)
        bridge.status.connect(self.show_status)
        bridge.error.connect(self.show_error)
        bridge.ready.connect(self.apply_settings)
        bridge.settings_changed.connect(self.apply_settings)
        bridge.undone.connect(self._undone)
        bridge.names_found.connect(self._names_found)

    def _mode_button(self, text: str, tip: str) -> QPushButton:
        button = QPushButton(text)
        button.setCheckable(True)
        button.setToolTip(tip)
        button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        font = button.font()
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        button.setFont(font)
        button.setMinimumHeight(button.fontMetrics().height() * 2)
        return button

    def _layout(self) -> None:
        top = QHBoxLayout()
        top.addWidget(self.panel, 3)
        top.addWidget(self.camera_view, 2)

        modes = QHBoxLayout()
        modes.addWidget(self.entry_button)
        modes.addWidget(self.exit_button)

        counters = QGridLayout()
        big = self.admitted_label.font()
        big.setPointSizeF(big.pointSizeF() * 1.4)
        big.setBold(True)
        for column, label in enumerate((self.admitted_label, self.inside_label)):
            label.setFont(big)
            counters.addWidget(label, 0, column)

        lookup = QHBoxLayout()
        lookup.addWidget(self.lookup_field, 1)
        lookup.addWidget(self.lookup_button)
        lookup.addWidget(self.undo_button)

        controls = QVBoxLayout()
        controls.addWidget(self.lists_label)
        controls.addLayout(modes)
        controls.addLayout(counters)
        controls.addLayout(lookup)
        controls.addWidget(self.lookup_hint)
        controls.addWidget(self.results)
        controls.addWidget(self.message_label)

        layout = QVBoxLayout(self)
        layout.addLayout(top, 1)
        layout.addLayout(controls)

    # --- verdicts ------------------------------------------------------------------------------

    def show_verdict(self, verdict: GateVerdict, sighting: CodeSighting | None) -> None:
        self.panel.show_verdict(verdict)
        if sighting is not None:
            self.camera_view.show_sighting(sighting)
        if self.sounds is not None:
            self.sounds.play(look_of(verdict).tone)
        if verdict.admitted and not verdict.repeat and verdict.verdict.direction is Direction.ENTRY:
            self.admitted_this_session += 1
            self.last_admission = verdict
            self.undo_button.setEnabled(True)
            self._show_counters()

    def show_error(self, sentence: str) -> None:
        self.panel.show_failure(sentence)
        if self.sounds is not None:
            self.sounds.play(Tone.REJECT)

    #: Who is inside each zone, from the last status (empty without zones).
    inside_by_zone: dict[str, int] | None = None

    def show_status(self, status: GateStatus) -> None:
        self.inside_now = status.inside_now
        self.inside_by_zone = dict(status.device.inside_by_zone)
        lists = status.device.gate_lists
        self.lists_label.setText(f"This gate scans: {lists}" if lists else "")
        self.lists_label.setVisible(bool(lists))
        self._show_counters()

    def _show_counters(self) -> None:
        self.admitted_label.setText(f"Admitted this session: {self.admitted_this_session:,}")
        inside = "…" if self.inside_now is None else f"{self.inside_now:,}"
        zones = self.inside_by_zone or {}
        if zones and set(zones) != {GENERAL_AREA}:
            inside += (
                " ("
                + " · ".join(
                    f"{zone_label(zone)} {count:,}" for zone, count in sorted(zones.items())
                )
                + ")"
            )
        self.inside_label.setText(f"Inside now: {inside}")
        self.counters_changed.emit()

    def _camera_state(self, message: str) -> None:
        if message:
            message += "\n\nThe handheld scanner and typed codes still work."
        self.camera_view.show_message(message)

    # --- settings and mode -----------------------------------------------------------------------

    def apply_settings(self, settings: GateSettings) -> None:
        self.panel.hold_seconds = settings.verdict_seconds
        if self.sounds is not None:
            self.sounds.enabled = settings.sounds
        button = self.exit_button if settings.direction is Direction.EXIT else self.entry_button
        button.setChecked(True)

    @property
    def direction(self) -> Direction:
        return Direction.EXIT if self.exit_button.isChecked() else Direction.ENTRY

    def set_direction(self, direction: Direction) -> None:
        """Switch entry/exit (saved in the gate's settings)."""
        button = self.exit_button if direction is Direction.EXIT else self.entry_button
        button.setChecked(True)
        self.bridge.set_direction(direction)

    # --- lookup ---------------------------------------------------------------------------------

    def look_up(self) -> None:
        """A code in the field is scanned as if read; anything else searches holder names."""
        text = self.lookup_field.text().strip()
        if not text:
            return
        self.lookup_field.clear()
        if text.upper().startswith((PREFIX, PREFIX_V1)):
            self.results.hide()
            self.bridge.scan_text(text)
        else:
            self.message_label.setText(f"Searching tickets scanned at this device for “{text}”…")
            self.bridge.search_names(text)

    def _names_found(self, matches: list[NameMatch]) -> None:
        self.results.clear()
        if not matches:
            self.results.hide()
            self.message_label.setText(
                "No ticket scanned at this device has a holder by that name. (Tickets never "
                "scanned here cannot be found by name.)"
            )
            return
        for match in matches:
            when = match.last_scan_at.astimezone().strftime("%H:%M")
            outcome = "admitted" if match.last_result is VerdictResult.ADMITTED else "rejected"
            kind = f" · {match.ticket_type}" if match.ticket_type else ""
            item = QListWidgetItem(
                f"{match.holder_name}{kind} — last scan {when}, {match.last_direction}, {outcome}"
            )
            item.setData(Qt.ItemDataRole.UserRole, match.code)
            self.results.addItem(item)
        self.results.show()
        self.message_label.setText(
            f"{len(matches)} found. Press Enter on one to scan its ticket again."
        )

    def _scan_result(self, item: QListWidgetItem) -> None:
        code = item.data(Qt.ItemDataRole.UserRole)
        if isinstance(code, str) and code:
            self.bridge.scan_text(code)

    # --- undo -----------------------------------------------------------------------------------

    def undo_last_admission(self) -> None:
        """Ask, then annul the last entry admitted in this session."""
        last = self.last_admission
        if last is None:
            return
        who = last.verdict.holder_name or last.verdict.ticket_type or "this ticket"
        when = (
            last.verdict.scanned_at.astimezone().strftime("%H:%M:%S")
            if last.verdict.scanned_at
            else "just now"
        )
        answer = QMessageBox.question(
            self,
            "Undo admission",
            f"Undo the admission of {who} at {when}?\n\nThe entry will no longer count, the "
            "ticket can be scanned again, and the server will be told.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.undo_button.setEnabled(False)
            self.bridge.undo_last_admission()

    def _undone(self, outcome: UndoOutcome) -> None:
        self.message_label.setText(outcome.message)
        if outcome.done:
            self.admitted_this_session = max(0, self.admitted_this_session - 1)
            self.last_admission = None
            self.panel.show_idle()
            self._show_counters()
