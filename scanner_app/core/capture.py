"""Where camera frames come from: a camera, a video file, or a folder of images.

``open_source(spec)`` reads what a person typed or configured — ``0`` (a camera number),
``/dev/video0`` (a camera device), a video file, an image file, or a folder of images — and
returns a ``FrameSource`` that yields ``CapturedFrame``s (BGR uint8 images with their index and
timestamps) until the source ends. Every way a source can fail to open raises ``CaptureError``
with a sentence a gate steward can act on.

Files are read as fast as the reader asks by default (tests, benchmarks), or paced at their
nominal frame rate to stand in for a camera (``paced=True``). A camera, and a paced file, is
*live*: its frames arrive whether or not anyone is ready for them, so a consumer that falls
behind must drop old frames rather than queue them (see ``scanner_app.core.pipeline``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt

from shared.clock import Clock, SystemClock

if TYPE_CHECKING:
    from scanner_app.core.decoding import QrDecoder

__all__ = [
    "DEFAULT_IMAGE_FPS",
    "IMAGE_SUFFIXES",
    "CameraSource",
    "CaptureError",
    "CapturedFrame",
    "FrameSource",
    "ImageSource",
    "VideoFileSource",
    "codes_in_image",
    "open_source",
]

log = logging.getLogger(__name__)

Frame = npt.NDArray[np.uint8]
WarningReporter = Callable[[str], None]

# Image types OpenCV reads everywhere (its optional codecs, e.g. AVIF or OpenEXR, are left out).
IMAGE_SUFFIXES = frozenset(
    {".bmp", ".dib", ".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff"}
    | {".pbm", ".pgm", ".ppm", ".pnm"}
)
# A folder of images has no frame rate of its own; this spaces its frames like a camera's.
DEFAULT_IMAGE_FPS = 30.0
# Some containers (and broken headers) report no frame rate; 30 is what cameras mostly record.
_FALLBACK_VIDEO_FPS = 30.0
# A camera that delivers nothing for this long has been unplugged or taken over.
_CAMERA_STALL_S = 3.0
_CAMERA_RETRY_S = 0.05


class CaptureError(RuntimeError):
    """A frame source could not be opened or stopped working. The message is for gate staff."""


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    """One frame and when it was taken.

    ``index`` counts the frames this source has yielded, from 0. ``source_time`` is seconds on
    the source's own timeline: the position in a video or image sequence (index / frame rate),
    or for a camera the same reading as ``captured_at``. ``captured_at`` is the ``Clock``'s
    monotonic time when the frame was handed over (after pacing, for a paced file).
    """

    image: Frame
    index: int
    source_time: float
    captured_at: float


class FrameSource:
    """A stream of frames; iterate it, or call ``read()`` until it returns ``None``.

    Subclasses implement ``_grab``. ``live`` says whether frames arrive at the source's own
    pace (a camera or a paced file) rather than when asked for. ``fps`` is the nominal frame
    rate when known. ``skipped`` counts frames that could not be read and were left out.

    ``read()`` and ``close()`` belong to one thread; ``interrupt()`` may be called from any
    thread to end the stream early (a paced wait is cut short; a camera read in progress
    finishes first, which takes at most one frame interval).
    """

    def __init__(
        self,
        description: str,
        *,
        live: bool,
        fps: float | None,
        clock: Clock | None = None,
        paced: bool = False,
    ) -> None:
        self.description = description
        self.live = live or paced
        self.fps = fps
        self.skipped = 0
        self._clock: Clock = clock or SystemClock()
        self._paced = paced
        self._interrupted = threading.Event()
        self._next_index = 0
        self._pace_origin: float | None = None
        self._closed = False

    def _grab(self) -> tuple[Frame, float | None] | None:
        """The next image and its time on the source's timeline (``None``: use the clock).

        Returns ``None`` at the end of the stream; raises ``CaptureError`` when it fails.
        """
        raise NotImplementedError

    def _release(self) -> None:
        """Free what the source holds (a capture device, a file)."""

    def read(self) -> CapturedFrame | None:
        """The next frame, or ``None`` once the source has ended or was interrupted or closed.

        Raises ``CaptureError`` when the source fails (a camera stops sending pictures); other
        errors from OpenCV or the file system come out as ``CaptureError`` too.
        """
        if self._closed or self._interrupted.is_set():
            return None
        try:
            grabbed = self._grab()
        except CaptureError:
            raise
        except (cv2.error, OSError) as error:
            raise CaptureError(f"Reading {self.description} failed: {error}") from error
        if grabbed is None:
            return None
        image, source_time = grabbed
        if self._paced and source_time is not None and self._wait_until_due(source_time):
            return None
        captured_at = self._clock.monotonic()
        frame = CapturedFrame(
            image=image,
            index=self._next_index,
            source_time=captured_at if source_time is None else source_time,
            captured_at=captured_at,
        )
        self._next_index += 1
        return frame

    def _wait_until_due(self, source_time: float) -> bool:
        """Sleep until ``source_time`` after the first frame; ``True`` if interrupted meanwhile."""
        # Pacing imitates a camera in real time, so it reads the real clock, not the injected
        # one: a test's ManualClock must not stall a paced file (or let it race ahead).
        now = time.monotonic()
        if self._pace_origin is None:
            self._pace_origin = now - source_time
        delay = self._pace_origin + source_time - now
        return delay > 0 and self._interrupted.wait(delay)

    def interrupt(self) -> None:
        """End the stream early: ``read()`` returns ``None`` from now on. Thread-safe."""
        self._interrupted.set()

    def close(self) -> None:
        """Release the camera or file. Safe to call more than once."""
        self._interrupted.set()
        if not self._closed:
            self._closed = True
            self._release()

    def __iter__(self) -> Iterator[CapturedFrame]:
        while (frame := self.read()) is not None:
            yield frame

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}{' (live)' if self.live else ''}>"


def _usable_fps(value: float) -> float | None:
    return value if np.isfinite(value) and 0 < value < 1000 else None


class CameraSource(FrameSource):
    """A camera, by number (``0``) or device path (``/dev/video0``), through OpenCV."""

    def __init__(
        self,
        device: int | str,
        *,
        clock: Clock | None = None,
        size: tuple[int, int] | None = None,
        fps: float | None = None,
    ) -> None:
        """Open the camera; ``size`` (width, height) and ``fps`` are requests it may ignore.

        Raises ``CaptureError`` if the camera cannot be opened.
        """
        super().__init__(f"camera {device}", live=True, fps=None, clock=clock)
        self._device = device
        self._capture = cv2.VideoCapture(device)
        if not self._capture.isOpened():
            self._capture.release()
            raise CaptureError(
                f"Camera {device} could not be opened. "
                "Is it connected and not used by another program?"
            )
        # One buffered frame: a deeper driver queue only adds latency between the gate and us.
        self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if size is not None:
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        if fps is not None:
            self._capture.set(cv2.CAP_PROP_FPS, fps)
        self.fps = _usable_fps(self._capture.get(cv2.CAP_PROP_FPS))

    def _grab(self) -> tuple[Frame, float | None] | None:
        failing_since: float | None = None
        while not self._interrupted.is_set():
            ok, image = self._capture.read()
            if ok and image is not None:
                return np.asarray(image, dtype=np.uint8), None
            # A camera hiccups now and then (USB resets, exposure changes); only a long
            # silence means it is gone.
            now = time.monotonic()
            if failing_since is None:
                failing_since = now
            if now - failing_since >= _CAMERA_STALL_S:
                raise CaptureError(
                    f"Camera {self._device} stopped sending pictures. Check its cable, and that "
                    "no other program is using it."
                )
            self._interrupted.wait(_CAMERA_RETRY_S)
        return None

    def _release(self) -> None:
        self._capture.release()


class VideoFileSource(FrameSource):
    """A video file, read frame by frame; its times are frame index / frame rate."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock | None = None,
        paced: bool = False,
        fps: float | None = None,
    ) -> None:
        """Open the video; ``fps`` overrides the rate in the file's header.

        Raises ``CaptureError`` if the file is not a video OpenCV can read.
        """
        super().__init__(f"the video {path.name}", live=False, fps=None, clock=clock, paced=paced)
        self.path = path
        self._capture = cv2.VideoCapture(str(path))
        if not self._capture.isOpened():
            self._capture.release()
            raise CaptureError(
                f"The video {path.name} could not be read. Is it a video file, and complete?"
            )
        self.fps = fps or _usable_fps(self._capture.get(cv2.CAP_PROP_FPS)) or _FALLBACK_VIDEO_FPS
        self._position = 0

    def _grab(self) -> tuple[Frame, float | None] | None:
        ok, image = self._capture.read()
        if not ok or image is None:
            if self._position == 0:
                raise CaptureError(f"The video {self.path.name} holds no pictures OpenCV can read.")
            return None
        source_time = self._position / (self.fps or _FALLBACK_VIDEO_FPS)
        self._position += 1
        return np.asarray(image, dtype=np.uint8), source_time

    def _release(self) -> None:
        self._capture.release()


class ImageSource(FrameSource):
    """Image files in the given order, one frame each, spaced ``1 / fps`` apart in time.

    An image that cannot be read is skipped: ``on_warning`` gets a sentence naming it and
    ``skipped`` goes up; the others still come.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        description: str,
        *,
        clock: Clock | None = None,
        paced: bool = False,
        fps: float = DEFAULT_IMAGE_FPS,
        on_warning: WarningReporter | None = None,
    ) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        super().__init__(description, live=False, fps=fps, clock=clock, paced=paced)
        self.paths = tuple(paths)
        self._warn: WarningReporter = on_warning or log.warning
        self._position = 0

    def _grab(self) -> tuple[Frame, float | None] | None:
        while self._position < len(self.paths):
            path = self.paths[self._position]
            source_time = self._position / (self.fps or DEFAULT_IMAGE_FPS)
            self._position += 1
            image = _read_image(path)
            if image is not None:
                return image, source_time
            self.skipped += 1
            self._warn(f"The image {path.name} could not be read and was skipped.")
        return None


def _read_image(path: Path) -> Frame | None:
    """The image as BGR uint8, or ``None`` if it is missing or not an image OpenCV can read."""
    try:
        # imdecode from bytes rather than imread: imread cannot open non-ASCII paths on Windows.
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if image is None else np.asarray(image, dtype=np.uint8)


def codes_in_image(path: Path, decoder: QrDecoder) -> list[str]:
    """The text of every QR code in the image file at ``path`` (``[]`` when it holds none).

    Raises ``CaptureError`` with a sentence when there is no such file or it is not an image.
    Reads the file's bytes rather than letting OpenCV open the path, which fails for non-ASCII
    paths on Windows.
    """
    if not path.is_file():
        raise CaptureError(f"Nothing was found at {path}. Check the spelling of the path.")
    frame = _read_image(path)
    if frame is None:
        raise CaptureError(f"{path.name} is not an image this scanner can read.")
    return [symbol.text for symbol in decoder.decode(frame)]


def open_source(
    spec: str,
    *,
    clock: Clock | None = None,
    paced: bool = False,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    on_warning: WarningReporter | None = None,
) -> FrameSource:
    """Open the frame source ``spec`` names, deciding by the string:

    - digits (``0``): that camera number;
    - ``/dev/...``: that camera device;
    - an existing folder: the image files in it, sorted by name (other files are ignored);
    - an existing file with an image suffix (``.png``, ``.jpg``...): that one image;
    - any other existing file: a video.

    (A file whose name is all digits is read as a camera number: write it as ``./123``.)

    ``paced`` delivers a file's frames at ``fps`` (default: the video's own rate, or
    ``DEFAULT_IMAGE_FPS`` for images) as a camera would, instead of as fast as they are read.
    ``fps`` and ``size`` are requests for a camera. ``on_warning`` hears about images that are
    skipped because they cannot be read (default: the log).

    Raises ``CaptureError`` with a sentence for gate staff when nothing is found at ``spec``,
    a camera cannot be opened, a video cannot be read, or a folder holds no images.
    """
    text = spec.strip()
    if not text:
        raise CaptureError(
            "No camera or file was given. Give a camera number such as 0, a camera device such "
            "as /dev/video0, a video file, or a folder of images."
        )
    if text.isdigit():
        return CameraSource(int(text), clock=clock, size=size, fps=fps)
    path = Path(text).expanduser()
    if text.startswith("/dev/"):
        if not path.exists():
            raise CaptureError(f"Camera {text} was not found. Is it plugged in?")
        return CameraSource(text, clock=clock, size=size, fps=fps)
    if path.is_dir():
        return ImageSource(
            _images_in(path),
            f"the images in {path.name or path}",
            clock=clock,
            paced=paced,
            fps=fps or DEFAULT_IMAGE_FPS,
            on_warning=on_warning,
        )
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            if _read_image(path) is None:
                raise CaptureError(
                    f"The image {path.name} could not be read. Is it a picture file, and complete?"
                )
            return ImageSource(
                [path],
                f"the image {path.name}",
                clock=clock,
                paced=paced,
                fps=fps or DEFAULT_IMAGE_FPS,
                on_warning=on_warning,
            )
        return VideoFileSource(path, clock=clock, paced=paced, fps=fps)
    raise CaptureError(
        f"Nothing was found at {text}. Check the spelling of the path, or give a camera number "
        "such as 0."
    )


def _images_in(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as error:
        raise CaptureError(
            f"The folder {folder.name} could not be read ({error.strerror or error})."
        ) from error
    images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if not images:
        raise CaptureError(
            f"The folder {folder.name or folder} holds no images "
            f"({', '.join(sorted(s.lstrip('.') for s in IMAGE_SUFFIXES))})."
        )
    return images
