"""The verdict panel: the part of the gate screen staff read from two metres away.

One full-colour field, one big word, one plain sentence. The mapping from a ``GateVerdict``:

==========  =======  =====================================================================
colour      word     when
==========  =======  =====================================================================
green       ADMIT    an entry admitted with nothing to look at
green       EXIT     an exit recorded
amber       CHECK    admitted, but look twice: re-entry after an exit, or admitted on the
                     code's signature alone (a ticket sold after the last sync)
red         STOP     an entry rejected, for any reason (the sentence says which); also a
                     scan that could not be recorded (no verdict may be shown for it)
red         UNKNOWN  an exit rejected: the code names no known ticket of this event, so the
                     leave is not recorded — but nobody is held in (docs/sync-protocol.md)
dark grey   READY    nothing to show: "Ready — scan a ticket"
==========  =======  =====================================================================

Amber always means *the guest goes in* (the line under the word says so): it asks staff to
glance at the ticket or the guest, never to stop them. A verdict the gate showed a moment ago
(the same code read twice) is shown again as it was, with a note that it was not counted again.
Text sizes follow the panel's size, never fixed pixel sizes, so it stays readable on any screen
and at any scaling.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPalette, QResizeEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from scanner_app.core.gate import GateVerdict
from shared.domain import Direction


class Tone(StrEnum):
    """What a verdict asks of staff (and which sound it makes)."""

    ADMIT = "admit"
    ATTENTION = "attention"
    REJECT = "reject"
    IDLE = "idle"


@dataclass(frozen=True, slots=True)
class VerdictLook:
    """How a verdict is painted: background, text colour, the big word and the line under it."""

    tone: Tone
    background: str
    foreground: str
    word: str
    outcome: str


GREEN = "#1b7f3a"
AMBER = "#f2a900"
RED = "#c62828"
IDLE_GREY = "#263238"

IDLE = VerdictLook(Tone.IDLE, IDLE_GREY, "#ffffff", "READY", "Ready — scan a ticket")
NOT_RECORDED = VerdictLook(Tone.REJECT, RED, "#ffffff", "STOP", "Not checked — scan again")


def look_of(verdict: GateVerdict) -> VerdictLook:
    """The colour, word and outcome line for ``verdict`` (see the module docstring)."""
    if not verdict.admitted and verdict.verdict.direction is Direction.EXIT:
        return VerdictLook(
            Tone.REJECT, RED, "#ffffff", "UNKNOWN", "Exit not recorded — the guest may leave"
        )
    if not verdict.admitted:
        return VerdictLook(Tone.REJECT, RED, "#ffffff", "STOP", "Do not let in")
    if verdict.verdict.direction is Direction.EXIT:
        return VerdictLook(Tone.ADMIT, GREEN, "#ffffff", "EXIT", "Exit recorded")
    if verdict.on_signature:
        return VerdictLook(
            Tone.ATTENTION, AMBER, "#000000", "CHECK", "Admitted — not on this scanner's list yet"
        )
    if verdict.reentry:
        return VerdictLook(Tone.ATTENTION, AMBER, "#000000", "CHECK", "Admitted — re-entry")
    return VerdictLook(Tone.ADMIT, GREEN, "#ffffff", "ADMIT", "Entry recorded")


def details_of(verdict: GateVerdict) -> str:
    """Ticket type, holder and how the verdict was reached, when known."""
    parts = [part for part in (verdict.verdict.ticket_type, verdict.verdict.holder_name) if part]
    parts.append("decided by the server" if verdict.mode == "online" else "decided offline")
    return "  ·  ".join(parts)


class VerdictPanel(QWidget):
    """The big coloured panel. ``show_verdict`` paints a verdict and, after ``hold_seconds``
    (or at the next verdict), it returns to the idle look."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAutoFillBackground(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.hold_seconds = 3.0
        self.look = IDLE
        self.word_label = self._label(bold=True)
        self.outcome_label = self._label(bold=True)
        self.sentence_label = self._label(wrap=True)
        self.details_label = self._label(wrap=True)
        self.note_label = self._label()
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        for label in (
            self.word_label,
            self.outcome_label,
            self.sentence_label,
            self.details_label,
            self.note_label,
        ):
            layout.addWidget(label)
        layout.addStretch(1)
        self._idle_timer = QTimer(self)
        self._idle_timer.setSingleShot(True)
        self._idle_timer.timeout.connect(self.show_idle)
        self.setAccessibleName("Verdict")
        self.show_idle()

    def _label(self, *, bold: bool = False, wrap: bool = False) -> QLabel:
        label = QLabel(self)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setWordWrap(wrap)
        label.setTextFormat(Qt.TextFormat.PlainText)
        font = label.font()
        font.setBold(bold)
        label.setFont(font)
        return label

    # --- what it shows -------------------------------------------------------------------------

    def show_verdict(self, verdict: GateVerdict) -> None:
        look = look_of(verdict)
        note = (
            "Shown again — the same scan as a moment ago, not counted twice."
            if verdict.repeat
            else ""
        )
        self._paint(look, verdict.sentence, details_of(verdict), note)
        self._hold()

    def show_failure(self, sentence: str) -> None:
        """A scan that produced no verdict (it could not be recorded): red, never green."""
        self._paint(NOT_RECORDED, sentence, "", "")
        self._hold()

    def show_idle(self) -> None:
        self._idle_timer.stop()
        self._paint(IDLE, "", "", "")

    def _hold(self) -> None:
        self._idle_timer.start(max(500, round(self.hold_seconds * 1000)))

    def _paint(self, look: VerdictLook, sentence: str, details: str, note: str) -> None:
        self.look = look
        palette = self.palette()
        palette.setColor(QPalette.ColorRole.Window, QColor(look.background))
        palette.setColor(QPalette.ColorRole.WindowText, QColor(look.foreground))
        self.setPalette(palette)
        self.word_label.setText(look.word if look.tone is not Tone.IDLE else "")
        self.outcome_label.setText(look.outcome)
        self.sentence_label.setText(sentence)
        self.details_label.setText(details)
        self.note_label.setText(note)
        self.setAccessibleDescription(f"{look.word}. {look.outcome}. {sentence}")
        self._fit_fonts()

    @property
    def background(self) -> QColor:
        return self.palette().color(QPalette.ColorRole.Window)

    # --- sizes ---------------------------------------------------------------------------------

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_fonts()

    def _fit_fonts(self) -> None:
        """Scale the text with the panel: the word takes about a third of its height, as wide
        as fits; the sentence stays large enough to read at two metres."""
        height = max(self.height(), 120)
        width = max(self.width(), 160)
        word = self.word_label.text() or "READY"
        self._set_pixel_size(self.word_label, int(height * 0.30), word, width * 0.92)
        self._set_pixel_size(self.outcome_label, int(height * 0.075), None, width)
        self._set_pixel_size(self.sentence_label, int(height * 0.065), None, width)
        self._set_pixel_size(self.details_label, int(height * 0.045), None, width)
        self._set_pixel_size(self.note_label, int(height * 0.035), None, width)

    @staticmethod
    def _set_pixel_size(label: QLabel, size: int, fit: str | None, width: float) -> None:
        font = QFont(label.font())
        font.setPixelSize(max(size, 10))
        if fit:
            text_width = QFontMetrics(font).horizontalAdvance(fit)
            if text_width > width:
                font.setPixelSize(max(int(font.pixelSize() * width / text_width), 10))
        label.setFont(font)
