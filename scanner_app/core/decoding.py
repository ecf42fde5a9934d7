"""QR code decoding for camera frames, with interchangeable backends.

``create_decoder()`` gives the default, zxing-cpp; ``pyzbar`` (ZBar) and ``opencv`` (OpenCV's
ArUco-based QR detector) can be chosen instead. Each backend's library is imported only when
that backend is created, so a missing library (for example the system's ZBar for pyzbar) only
makes that one backend unavailable. Decoders look for QR codes only, return only non-empty
texts, and never raise on an image: a frame without a readable code yields ``[]``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "DecodedSymbol",
    "DecoderUnavailable",
    "OpencvDecoder",
    "PyzbarDecoder",
    "QrDecoder",
    "ZxingDecoder",
    "create_decoder",
    "to_gray",
]

Frame = npt.NDArray[np.uint8]
Point = tuple[float, float]

BACKENDS: tuple[str, ...] = ("zxing", "pyzbar", "opencv")
DEFAULT_BACKEND = "zxing"

# A version 1 QR code is 21 modules wide; an image smaller than that cannot hold one.
_MIN_SIDE_PX = 21


@dataclass(frozen=True, slots=True)
class DecodedSymbol:
    """One decoded QR code: its text and its 4 corners in image pixels.

    The corners go round the code: the symbol's top-left, top-right, bottom-right and
    bottom-left for zxing and opencv; pyzbar goes the same way round from any corner.
    """

    text: str
    corners: tuple[Point, ...]


class QrDecoder(Protocol):
    """Finds and decodes the QR codes in one camera frame."""

    name: str

    def decode(self, frame: Frame) -> list[DecodedSymbol]:
        """Decode a BGR (HxWx3), BGRA (HxWx4) or grayscale (HxW) uint8 frame.

        Returns every QR code read, ``[]`` when there is none. Raises ``ValueError`` only when
        ``frame`` is not an 8-bit image at all (wrong dtype or number of dimensions).
        """
        ...


class DecoderUnavailable(RuntimeError):
    """The library a backend needs is not installed; the message says what to install."""


def create_decoder(backend: str = DEFAULT_BACKEND) -> QrDecoder:
    """Create the decoder named ``backend`` (one of ``BACKENDS``).

    Raises ``ValueError`` for an unknown name and ``DecoderUnavailable`` when the backend's
    library cannot be loaded.
    """
    if backend == "zxing":
        return ZxingDecoder()
    if backend == "pyzbar":
        return PyzbarDecoder()
    if backend == "opencv":
        return OpencvDecoder()
    raise ValueError(f"unknown QR decoder {backend!r}; choose one of: {', '.join(BACKENDS)}")


def to_gray(frame: Frame) -> Frame | None:
    """The frame as one contiguous grayscale plane, or ``None`` if too small to hold a QR code.

    Raises ``ValueError`` if ``frame`` is not an 8-bit image.
    """
    if frame.dtype != np.uint8:
        raise ValueError(f"a frame must be uint8, not {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise ValueError(f"a frame must be HxW, HxWx3 or HxWx4, not {frame.shape}")
    if min(frame.shape[:2]) < _MIN_SIDE_PX:
        return None
    frame = np.ascontiguousarray(frame)  # a no-op for camera frames; views may be strided
    if frame.ndim == 3:
        code = cv2.COLOR_BGR2GRAY if frame.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        return np.asarray(cv2.cvtColor(frame, code), dtype=np.uint8)
    return frame


def _import(module: str, install_hint: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as error:
        raise DecoderUnavailable(install_hint) from error


def _corners(points: Any) -> tuple[Point, ...]:
    return tuple((float(x), float(y)) for x, y in points)


class ZxingDecoder:
    """zxing-cpp: the fastest and most robust of the three on camera frames."""

    name = "zxing"

    def __init__(self) -> None:
        self._zxing = _import(
            "zxingcpp",
            "The zxing decoder needs zxing-cpp: install it with 'pip install zxing-cpp'.",
        )
        formats = self._zxing.BarcodeFormat
        # zxing-cpp 3 files Micro QR and rMQR under QRCode too; tickets are plain (model 2) QR
        # codes, and skipping the other detectors saves about 15 % per frame.
        self._format = getattr(formats, "QRCodeModel2", formats.QRCode)

    def decode(self, frame: Frame) -> list[DecodedSymbol]:
        gray = to_gray(frame)
        if gray is None:
            return []
        barcodes = self._zxing.read_barcodes(
            gray,
            formats=self._format,
            # Options measured on the synthetic gate-camera set (benchmarks/decode.py).
            try_rotate=False,  # only matters for linear barcodes; QR is found at any angle
            try_downscale=True,  # reads a few more blurred or noisy frames for ~0.3 ms
            # Tickets are dark on light; the inverted pass would run on every frame without a
            # readable code (most camera frames) and cost about 40 % more there.
            try_invert=False,
            text_mode=self._zxing.TextMode.Plain,
        )
        symbols = []
        for barcode in barcodes:
            if not barcode.valid or not barcode.text:
                continue
            position = barcode.position
            corners = (
                position.top_left,
                position.top_right,
                position.bottom_right,
                position.bottom_left,
            )
            symbols.append(DecodedSymbol(barcode.text, _corners((p.x, p.y) for p in corners)))
        return symbols


class PyzbarDecoder:
    """ZBar through pyzbar: needs the system library (``libzbar0`` on Debian/Ubuntu)."""

    name = "pyzbar"

    def __init__(self) -> None:
        hint = (
            "The pyzbar decoder needs the ZBar library and pyzbar: install them with "
            "'apt-get install libzbar0' (or 'brew install zbar') and 'pip install pyzbar'."
        )
        self._pyzbar = _import("pyzbar.pyzbar", hint)
        self._symbols = [self._pyzbar.ZBarSymbol.QRCODE]

    def decode(self, frame: Frame) -> list[DecodedSymbol]:
        gray = to_gray(frame)
        if gray is None:
            return []
        height, width = gray.shape
        try:
            results = self._pyzbar.decode((gray.tobytes(), width, height), symbols=self._symbols)
        except self._pyzbar.PyZbarError:  # ZBar refused the image; a frame must never crash
            return []
        symbols = []
        for result in results:
            text = result.data.decode("utf-8", errors="replace")
            if result.type != "QRCODE" or not text:
                continue
            symbols.append(DecodedSymbol(text, _quadrilateral(result.polygon)))
        return symbols


def _quadrilateral(points: Any) -> tuple[Point, ...]:
    """Four corners going round the same way as zxing's and OpenCV's.

    pyzbar returns the convex hull of ZBar's corners, counter-clockwise on screen and starting
    at no particular corner; the symbol's own top-left is lost, so only the winding is fixed.
    """
    polygon = np.array([(p.x, p.y) for p in points], dtype=np.float32).reshape(-1, 2)
    if len(polygon) != 4:
        polygon = np.asarray(cv2.boxPoints(cv2.minAreaRect(polygon)), dtype=np.float32)
    x, y = polygon[:, 0], polygon[:, 1]
    if float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) < 0:
        polygon = polygon[::-1]
    return _corners(polygon)


class OpencvDecoder:
    """OpenCV's QR detector (the ArUco-based one: it finds more codes in clutter)."""

    name = "opencv"

    def __init__(self) -> None:
        self._detector = cv2.QRCodeDetectorAruco()

    def decode(self, frame: Frame) -> list[DecodedSymbol]:
        gray = to_gray(frame)
        if gray is None:
            return []
        try:
            found, texts, points, _ = self._detector.detectAndDecodeMulti(gray)
        except cv2.error:  # OpenCV asserts on some degenerate inputs; a frame must never crash
            return []
        if not found or points is None:
            return []
        return [
            DecodedSymbol(text, _corners(quad))
            for text, quad in zip(texts, points, strict=False)
            if text
        ]
