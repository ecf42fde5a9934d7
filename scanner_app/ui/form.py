"""What the app's dialogs share: a heading that scales with the system font, and the error
sentences shown under a field or a form (white on dark red, readable on light and dark themes;
the window grows to fit a sentence that wrapped).

The dialogs are plain forms a steward can drive with the keyboard alone (every field has a
mnemonic, Enter presses the default button, Escape cancels), laid out by Qt layouts with no pixel
sizes or point sizes fixed, so they scale with the screen's DPI and the system font.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QFileDialog, QLabel, QSizePolicy, QWidget

from scanner_app.core.capture import IMAGE_SUFFIXES

__all__ = ["choose_image", "error_label", "heading", "show_error"]


def choose_image(parent: QWidget, title: str, *, any_file: bool = False) -> Path | None:
    """Ask for an image file the QR readers can open (``any_file``: offer every file too);
    None when the person cancels."""
    patterns = " ".join(f"*{suffix}" for suffix in sorted(IMAGE_SUFFIXES))
    choices = f"Images ({patterns})" + (";;All files (*)" if any_file else "")
    chosen, _ = QFileDialog.getOpenFileName(parent, title, "", choices)
    return Path(chosen) if chosen else None


def error_label() -> QLabel:
    label = QLabel()
    label.setWordWrap(True)
    # White on dark red: readable on light and dark themes alike.
    label.setStyleSheet("color: white; background-color: #b3261e; padding: 0.2em;")
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    # As tall as its sentence, never taller: spare height is not the error's to take.
    label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
    label.hide()
    return label


def show_error(label: QLabel, sentence: str | None) -> None:
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


def heading(text: str, parent: QWidget) -> QLabel:
    label = QLabel(text)
    font = QFont(parent.font())
    # Relative to the system font, so it follows the DPI and the user's text size.
    font.setPointSizeF(font.pointSizeF() * 1.4)
    font.setBold(True)
    label.setFont(font)
    label.setWordWrap(True)
    return label
