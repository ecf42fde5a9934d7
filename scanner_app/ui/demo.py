"""The demo mode's window: the demo ticket codes, large, to show a webcam or to scan at a click.

``gatehouse-scanner --demo`` calls ``prepare_demo`` for a fresh demo store (no server) and opens
the gate screen on it next to a ``DemoCodesWindow``. A person with a webcam points it at the
code on the screen (or a phone photo of it); a person without one presses "Scan this", which
hands the code to the app exactly as the camera or a handheld scanner would, or picks an image
file with a code in it ("Scan an image file…").
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFont, QImage, QKeySequence, QPixmap, QResizeEvent, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from scanner_app.core.capture import CaptureError, codes_in_image
from scanner_app.core.decoding import DecoderUnavailable, create_decoder
from scanner_app.core.demo import DemoCode, DemoFolderInUse, DemoSetup, prepare_demo_store
from scanner_app.core.synthetic_frames import render_qr
from scanner_app.ui.form import choose_image
from scanner_app.ui.jobs import JobQueue

__all__ = [
    "DemoCode",
    "DemoCodesWindow",
    "DemoFolderInUse",
    "DemoSetup",
    "gray_pixels",
    "prepare_demo",
    "qr_image",
]

log = logging.getLogger(__name__)

#: Quiet zone around a shown code, in modules: the standard's 4, which webcams need.
_QUIET_MODULES = 4


def prepare_demo(data_dir: Path) -> DemoSetup:
    """A fresh demo store in ``data_dir`` (see ``scanner_app.core.demo.prepare_demo_store``):
    open it with ``LocalStore.open(setup.data_dir)``.

    Raises ``DemoFolderInUse`` (a ``StoreError``) when ``data_dir`` holds a real scanner's data,
    ``StoreError`` when it cannot be written.
    """
    return prepare_demo_store(data_dir)


def qr_image(text: str, side_px: int) -> QImage:
    """``text`` as a black-on-white QR code (error level M, quiet zone included), drawn with
    whole device pixels per module and at most ``side_px`` wide (at least 2 pixels a module).

    Whole pixels per module keep the edges sharp; a code scaled by a fraction blurs, and a
    webcam reading it off a screen is already struggling with moiré.
    """
    modules = render_qr(text, module_px=1, border=_QUIET_MODULES).shape[0]
    module_px = max(2, side_px // modules)
    pixels = render_qr(text, module_px=module_px, border=_QUIET_MODULES)
    return _gray_image(pixels)


def _gray_image(pixels: npt.NDArray[np.uint8]) -> QImage:
    height, width = pixels.shape
    data = np.ascontiguousarray(pixels)
    # QImage borrows the buffer; copy() gives it its own before ``data`` goes away.
    return QImage(data.data, width, height, width, QImage.Format.Format_Grayscale8).copy()


def gray_pixels(image: QImage) -> npt.NDArray[np.uint8]:
    """``image`` as a grayscale pixel array (what the QR decoders take), e.g. to check that a
    code drawn on screen reads back."""
    gray = image.convertToFormat(QImage.Format.Format_Grayscale8)
    rows = np.frombuffer(gray.constBits(), dtype=np.uint8).reshape(
        gray.height(), gray.bytesPerLine()
    )
    return rows[:, : gray.width()].copy()


class DemoCodesWindow(QWidget):
    """Shows the demo codes one at a time, large, with their labels; "Scan this" hands the
    shown code to the app through ``scan_requested``.

    Keyboard: Up/Down in the list choose a code, Enter scans it (so does Alt+S anywhere in
    the window), Ctrl+O scans an image file.
    """

    #: A code text to scan, as if the camera had read it. The main window connects this.
    scan_requested = Signal(str)
    #: The gate the device must stand at for the code about to be scanned (check-in lists:
    #: the VIP gate, the stage door); emitted just before ``scan_requested``.
    gate_requested = Signal(str)

    def __init__(self, setup: DemoSetup, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setup = setup
        self.setWindowTitle(f"Demo codes — {setup.gate_event.name}")
        self._images = JobQueue("demo-images", self)

        self.codes_list = QListWidget()
        self.codes_list.addItems([code.label for code in setup.codes])
        self.codes_list.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        self.codes_list.setAccessibleName("Demo codes")

        self.title = QLabel()
        self.title.setWordWrap(True)
        self.title.setFont(_scaled_font(self.font(), 1.5, bold=True))
        self.expected = QLabel()
        self.expected.setWordWrap(True)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.qr = QLabel()
        self.qr.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.qr.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.qr.setMinimumSize(QSize(160, 160))
        # White around the code: its quiet zone must not touch a dark window theme.
        self.qr.setStyleSheet("background: white;")
        self.qr.setAccessibleName("Ticket QR code")

        self.scan_button = QPushButton("&Scan this")
        self.scan_button.setToolTip("Hand this code to the gate, as if the camera had read it")
        self.scan_button.setFont(_scaled_font(self.font(), 1.3, bold=True))
        self.image_button = QPushButton("Scan an &image file…")
        self.image_button.setToolTip("Read the QR code in a photo or screenshot and scan it")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self._lay_out()
        self._connect()
        self.resize(900, 600)
        if setup.codes:
            self.codes_list.setCurrentRow(0)
        self.codes_list.setFocus()

    def _lay_out(self) -> None:
        shown = QVBoxLayout()
        shown.addWidget(self.title)
        shown.addWidget(self.expected)
        shown.addWidget(self.qr, stretch=1)
        shown.addWidget(self.hint)
        buttons = QHBoxLayout()
        buttons.addWidget(self.scan_button, stretch=1)
        buttons.addWidget(self.image_button)
        shown.addLayout(buttons)
        shown.addWidget(self.status)
        picker = QVBoxLayout()
        picker.addWidget(QLabel("Codes to try:"))
        picker.addWidget(self.codes_list)
        layout = QHBoxLayout(self)
        layout.addLayout(picker, stretch=2)
        layout.addLayout(shown, stretch=3)

    def _connect(self) -> None:
        self.codes_list.currentRowChanged.connect(self._show)
        self.codes_list.itemActivated.connect(lambda _item: self.scan_current())
        self.scan_button.clicked.connect(self.scan_current)
        self.image_button.clicked.connect(self._choose_image)
        QShortcut(QKeySequence.StandardKey.Open, self, self._choose_image)

    # --- what is shown ------------------------------------------------------------------------

    @property
    def current(self) -> DemoCode | None:
        row = self.codes_list.currentRow()
        return self.setup.codes[row] if 0 <= row < len(self.setup.codes) else None

    def show_code(self, index: int) -> None:
        """Show the ``index``-th demo code."""
        self.codes_list.setCurrentRow(index)

    def shown_qr(self) -> QImage:
        """The code as drawn on screen now (device pixels)."""
        return self.qr.pixmap().toImage()

    def _show(self, _row: int) -> None:
        code = self.current
        if code is None:
            return
        self.title.setText(code.label)
        self.expected.setText(f"At {code.gate}, the gate should say: {code.expected}")
        self.hint.setText(code.hint)
        self.hint.setVisible(bool(code.hint))
        self._draw_qr()

    def _draw_qr(self) -> None:
        code = self.current
        if code is None:
            return
        ratio = self.qr.devicePixelRatioF()
        side = round(min(self.qr.width(), self.qr.height()) * ratio)
        pixmap = QPixmap.fromImage(qr_image(code.code, side))
        pixmap.setDevicePixelRatio(ratio)
        self.qr.setPixmap(pixmap)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._draw_qr()

    # --- scanning -----------------------------------------------------------------------------

    def scan_current(self) -> None:
        """Hand the shown code to the app (``scan_requested``)."""
        code = self.current
        if code is not None:
            self.status.setText(f"Scanned at {code.gate}: {code.label}")
            self.gate_requested.emit(code.gate)
            self.scan_requested.emit(code.code)

    def _choose_image(self) -> None:
        chosen = choose_image(self, "Scan an image file", any_file=True)
        if chosen is not None:
            self.scan_image_file(chosen)

    def scan_image_file(self, path: Path) -> None:
        """Read the QR codes in the image at ``path`` off the GUI thread (a camera photo takes
        tens of milliseconds to load and search), then scan each one (``scan_requested``).
        What happened is shown in the window's status line."""
        self.status.setText(f"Reading {path.name}…")
        self._images.submit(
            lambda: codes_in_image(path, create_decoder()),
            lambda texts: self._scanned_image(path.name, texts),
            self._image_unreadable,
        )

    def _image_unreadable(self, error: Exception) -> None:
        if not isinstance(error, (CaptureError, DecoderUnavailable)):
            log.error("reading a demo image failed", exc_info=error)
        self.status.setText(str(error))

    def _scanned_image(self, name: str, texts: list[str]) -> None:
        if not texts:
            self.status.setText(f"No QR code was found in {name}.")
            return
        count = "1 code" if len(texts) == 1 else f"{len(texts)} codes"
        self.status.setText(f"Scanned {count} from {name}.")
        for text in texts:
            self.scan_requested.emit(text)

    @property
    def busy(self) -> bool:
        """An image file is still being read."""
        return self._images.busy


def _scaled_font(base: QFont, factor: float, *, bold: bool = False) -> QFont:
    """``base`` made ``factor`` times larger: sizes follow the user's font and DPI settings
    instead of fixed pixels."""
    font = QFont(base)
    size = base.pointSizeF()
    if size > 0:
        font.setPointSizeF(size * factor)
    else:  # a pixel-sized base font (rare): scale the pixels instead
        font.setPixelSize(round(base.pixelSize() * factor))
    font.setBold(bold)
    return font
