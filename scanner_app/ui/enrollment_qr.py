"""Reading an enrollment QR code (``shared.enrollment_link``): from an image file, or held up
to the camera.

The camera path reuses the gate's own machinery (``capture.open_source`` + ``FramePipeline``
with the default decoder), so a camera that scans tickets scans enrollment codes, and a test
can feed it an image file instead of a camera. Frames and codes arrive on the pipeline's
threads and reach the dialog through signals.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from scanner_app.core.capture import CapturedFrame, CaptureError, codes_in_image, open_source
from scanner_app.core.decoding import DecodedSymbol, DecoderUnavailable, create_decoder
from scanner_app.core.pipeline import FramePipeline
from scanner_app.core.sighting import CodeSighting
from scanner_app.core.sync.lab_mode import insecure_http_allowed
from shared.enrollment_link import EnrollmentLink, EnrollmentLinkError, parse_enrollment_link

__all__ = ["QrScanDialog", "read_enrollment_qr_image"]

#: Preview frames are scaled down to this width before they cross to the UI thread.
_PREVIEW_WIDTH = 640


def read_enrollment_qr_image(path: Path) -> EnrollmentLink:
    """The enrollment link in the QR code of the image at ``path``.

    Raises ``EnrollmentLinkError`` with a sentence when the file is not a readable image, holds
    no QR code, or its QR code is not an enrollment link. Blocks for the file read and one
    decode (milliseconds): call it off the UI thread.
    """
    try:
        texts = codes_in_image(path, create_decoder())
    except (CaptureError, DecoderUnavailable) as error:
        raise EnrollmentLinkError(str(error)) from error
    if not texts:
        raise EnrollmentLinkError(f"No QR code was found in {path.name}.")
    problems: list[str] = []
    for text in texts:
        try:
            return parse_enrollment_link(text, allow_insecure_http=insecure_http_allowed())
        except EnrollmentLinkError as error:
            problems.append(str(error))
    raise EnrollmentLinkError(problems[0])


class _PipelineBridge(QObject):
    """Carries the pipeline's callbacks (on its threads) to the UI thread as signals."""

    sighted = Signal(str)
    frame = Signal(QImage)
    failed = Signal(str)

    def on_sighting(self, sighting: CodeSighting) -> None:
        self.sighted.emit(sighting.text)

    def on_frame(self, frame: CapturedFrame, _symbols: Sequence[DecodedSymbol]) -> None:
        image = frame.image
        height, width = image.shape[:2]
        if width > _PREVIEW_WIDTH:
            scale = _PREVIEW_WIDTH / width
            size = (_PREVIEW_WIDTH, max(1, round(height * scale)))
            image = np.asarray(cv2.resize(image, size), dtype=np.uint8)
        rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        h, w = rgb.shape[:2]
        # copy(): the QImage must own its pixels once the numpy array is gone.
        self.frame.emit(QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy())

    def on_error(self, error: CaptureError) -> None:
        self.failed.emit(str(error))


class QrScanDialog(QDialog):
    """Shows the camera and waits for an enrollment QR code; accepts with ``link`` set.

    ``source`` is what ``capture.open_source`` takes (the gate's camera setting, or an image
    file or folder). QR codes that are not enrollment links are named in a sentence and
    scanning goes on. The camera is released when the dialog closes, however it closes.
    """

    def __init__(self, source: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Scan an enrollment QR code")
        self.link: EnrollmentLink | None = None
        self._pipeline: FramePipeline | None = None
        self._bridge = _PipelineBridge(self)
        self._bridge.sighted.connect(self._on_text)
        self._bridge.frame.connect(self._on_frame)
        self._bridge.failed.connect(self._on_failed)

        self.preview = QLabel("Starting the camera…")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(self.fontMetrics().averageCharWidth() * 40, 1)
        self.message_label = QLabel(
            "Hold the enrollment QR code from the manager's screen in front of the camera."
        )
        self.message_label.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(self.preview, 1)
        layout.addWidget(self.message_label)
        layout.addWidget(buttons)
        self._start(source)

    def _start(self, source: str) -> None:
        try:
            # Opening a camera can take a moment; it is the one blocking step and happens once
            # when the person asked for the camera.
            frames = open_source(source)
            pipeline = FramePipeline(
                frames,
                create_decoder(),
                self._bridge.on_sighting,
                on_frame=self._bridge.on_frame,
                on_error=self._bridge.on_error,
            )
        except (CaptureError, DecoderUnavailable) as error:
            self._on_failed(str(error))
            return
        self._pipeline = pipeline
        pipeline.start()

    @Slot(str)
    def _on_text(self, text: str) -> None:
        if self.link is not None:
            return
        try:
            self.link = parse_enrollment_link(text, allow_insecure_http=insecure_http_allowed())
        except EnrollmentLinkError as error:
            self.message_label.setText(f"{error} Keep looking for the enrollment QR code.")
            return
        self.accept()

    @Slot(QImage)
    def _on_frame(self, image: QImage) -> None:
        pixmap = QPixmap.fromImage(image)
        self.preview.setPixmap(
            pixmap.scaled(
                self.preview.size(),
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )

    @Slot(str)
    def _on_failed(self, sentence: str) -> None:
        self.preview.setText("No camera picture.")
        self.message_label.setText(sentence)

    def done(self, result: int) -> None:
        self._stop()
        super().done(result)

    def _stop(self) -> None:
        if self._pipeline is not None:
            self._pipeline.stop(timeout=0.5)
            self._pipeline = None
