"""The camera loop: capture → QR decoding → de-duplication → the code sink, off the UI thread.

``FramePipeline`` runs two threads. The capture thread reads the ``FrameSource``; the decode
thread decodes each frame it is handed, lets a ``Debouncer`` pick the codes that are new
sightings, and calls the sink once per sighting. How frames pass between the two depends on the
source:

- live (a camera, a paced file): only the newest frame waits; an older one not yet taken is
  dropped and counted. Decoding never falls behind the camera, so a verdict is about what the
  gate sees now, not about a queue of stale frames.
- a file read as fast as possible: a short queue, and capture waits when it is full; no frame
  is dropped, so tests and benchmarks see every frame.

Why de-duplicate: a guest holds a phone up for a second or two, which is 30-60 frames; the gate
wants one verdict per presentation, not one per frame. A code is delivered when it comes into
view, and again only once it has been out of view for longer than ``gap`` (it was put away and
shown again) — a few frames where it is not read (blur, a tilt, a finger) do not count as
leaving. ``repeat_after`` optionally delivers a code again while it stays in view; it is off by
default because a guest who was just admitted and keeps the phone up would otherwise get a
second verdict — "already checked in" — which looks like a rejection to the steward.

Times are the source's: a frame's ``captured_at`` and (for a camera) ``source_time`` come from
the ``Clock`` given to ``open_source``, so a test with a ``ManualClock`` decides what "one second
later" is. Callbacks (``sink``, ``on_frame``, ``on_error``) run on the pipeline's threads: a Qt
user forwards them to the UI thread with a signal.

Why two threads of its own, not jobs on the app's queues (``scanner_app.ui.jobs``): capture and
decoding are real-time loops over a stream, paced by the camera, that run until stopped and drop
frames rather than queue them; a job is one unit of work with one result. They are also part of
the Qt-free core, which the command line's ``scan`` runs without Qt. What they find joins the
app's jobs: each sighting becomes a scan on the gate queue (``ui.scanning``).
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

from scanner_app.core.capture import CapturedFrame, CaptureError, FrameSource
from scanner_app.core.decoding import DecodedSymbol, QrDecoder
from scanner_app.core.sighting import CodeSighting

__all__ = [
    "DEFAULT_GAP_S",
    "CodeSink",
    "Debouncer",
    "ErrorListener",
    "FrameListener",
    "FramePipeline",
    "PipelineState",
    "PipelineStats",
]

log = logging.getLogger(__name__)

# Longer than a code goes unread while held up (blur, tilt), shorter than putting a phone
# away and showing it again.
DEFAULT_GAP_S = 1.0
# Frames a file source may read ahead of decoding: enough to overlap reading with decoding.
_FILE_QUEUE_FRAMES = 4
_RECENT_DECODES = 120  # about 4 s of a 30 fps camera, for the decode-time median


CodeSink = Callable[[CodeSighting], None]
FrameListener = Callable[[CapturedFrame, Sequence[DecodedSymbol]], None]
ErrorListener = Callable[[CaptureError], None]


class PipelineState(StrEnum):
    NEW = "new"
    RUNNING = "running"
    FINISHED = "finished"  # the source ended (a file) and every frame taken was decoded
    STOPPED = "stopped"  # stop() was called
    FAILED = "failed"  # the source or the decoder failed; see FramePipeline.error


@dataclass(frozen=True, slots=True)
class PipelineStats:
    """Counters since start. ``decode_ms_p50`` is the median over recent frames (None: none)."""

    state: PipelineState
    frames_read: int
    frames_decoded: int
    frames_dropped: int
    codes_delivered: int
    callback_errors: int
    decode_ms_p50: float | None


@dataclass(slots=True)
class _Track:
    delivered_at: float
    last_seen: float


class Debouncer:
    """Picks, frame by frame, the codes that are new sightings (see the module docstring).

    A code is new when it was never seen, or not seen for more than ``gap`` seconds, or (when
    ``repeat_after`` is set) delivered at least ``repeat_after`` seconds ago. Times are the
    frames' ``source_time``. Memory holds only the codes seen within the last ``gap``.
    """

    def __init__(self, gap: float = DEFAULT_GAP_S, repeat_after: float | None = None) -> None:
        """Raises ``ValueError`` if ``gap`` or ``repeat_after`` is not positive."""
        if gap <= 0:
            raise ValueError("gap must be positive")
        if repeat_after is not None and repeat_after <= 0:
            raise ValueError("repeat_after must be positive, or None to never repeat in view")
        self.gap = gap
        self.repeat_after = repeat_after
        self._tracks: dict[str, _Track] = {}

    def admit(self, texts: Iterable[str], at: float) -> list[str]:
        """The texts among ``texts`` (one frame's codes, seen at ``at``) to deliver now.

        Each text comes out at most once per call, in the order first given.
        """
        fresh = []
        for text in dict.fromkeys(texts):
            track = self._tracks.get(text)
            if (
                track is None
                or at - track.last_seen > self.gap
                or (self.repeat_after is not None and at - track.delivered_at >= self.repeat_after)
            ):
                self._tracks[text] = _Track(delivered_at=at, last_seen=at)
                fresh.append(text)
            else:
                track.last_seen = max(track.last_seen, at)
        gone = [text for text, track in self._tracks.items() if at - track.last_seen > self.gap]
        for text in gone:
            del self._tracks[text]
        return fresh

    def reset(self) -> None:
        """Forget every code: the next sighting of each is new."""
        self._tracks.clear()


class _Handoff:
    """Frames from the capture thread to the decode thread: latest-only, or a blocking queue."""

    def __init__(self, capacity: int, keep_latest: bool) -> None:
        self._capacity = capacity
        self._keep_latest = keep_latest
        self._frames: deque[CapturedFrame] = deque()
        self._changed = threading.Condition()
        self._ended = False
        self._closed = False
        self.dropped = 0

    def put(self, frame: CapturedFrame) -> bool:
        """Hand ``frame`` over; ``False`` if the handoff was closed (the pipeline is stopping)."""
        with self._changed:
            if self._keep_latest:
                while len(self._frames) >= self._capacity:
                    self._frames.popleft()
                    self.dropped += 1
            else:
                while len(self._frames) >= self._capacity and not self._closed:
                    self._changed.wait()
            if self._closed:
                return False
            self._frames.append(frame)
            self._changed.notify_all()
            return True

    def get(self) -> CapturedFrame | None:
        """The next frame; ``None`` once capture has ended and all is taken, or on close."""
        with self._changed:
            while not self._frames and not self._ended and not self._closed:
                self._changed.wait()
            if self._closed or not self._frames:
                return None
            frame = self._frames.popleft()
            self._changed.notify_all()
            return frame

    def end(self) -> None:
        """No more frames will come; what is waiting is still taken."""
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def close(self) -> None:
        """Stop now: waiting frames are discarded and both sides are woken."""
        with self._changed:
            self._closed = True
            self._frames.clear()
            self._changed.notify_all()


class FramePipeline:
    """Reads ``source``, decodes with ``decoder``, calls ``sink`` once per new code sighting.

    ``on_frame(frame, symbols)`` hears every decoded frame with its codes (to draw outlines:
    it runs on the decode thread, so keep it quick). ``on_error`` hears the ``CaptureError``
    that ended the pipeline (the camera stopped, the decoder failed); ``state`` becomes FAILED
    and ``error`` holds it. An exception from ``sink`` or ``on_frame`` is logged and counted in
    ``callback_errors``, and scanning goes on: one failed verdict must not stop the gate.

    The pipeline owns ``source`` once started and closes it when capture ends. Use it as a
    context manager, or call ``start()`` and ``stop()``.
    """

    def __init__(
        self,
        source: FrameSource,
        decoder: QrDecoder,
        sink: CodeSink,
        *,
        on_frame: FrameListener | None = None,
        on_error: ErrorListener | None = None,
        gap: float = DEFAULT_GAP_S,
        repeat_after: float | None = None,
    ) -> None:
        """Raises ``ValueError`` for a ``gap`` or ``repeat_after`` that is not positive."""
        self.source = source
        self._decoder = decoder
        self._sink = sink
        self._on_frame = on_frame
        self._on_error = on_error
        self._debouncer = Debouncer(gap, repeat_after)
        self._handoff = (
            _Handoff(1, keep_latest=True)
            if source.live
            else _Handoff(_FILE_QUEUE_FRAMES, keep_latest=False)
        )
        self._lock = threading.Lock()
        self._state = PipelineState.NEW
        self._error: CaptureError | None = None
        self._stopping = threading.Event()
        self._frames_read = 0
        self._frames_decoded = 0
        self._codes_delivered = 0
        self._callback_errors = 0
        self._decode_s: deque[float] = deque(maxlen=_RECENT_DECODES)
        self._threads: list[threading.Thread] = []

    @property
    def state(self) -> PipelineState:
        return self._state

    @property
    def error(self) -> CaptureError | None:
        """What ended the pipeline when ``state`` is FAILED."""
        return self._error

    def start(self) -> None:
        """Start capturing and decoding. Raises ``RuntimeError`` if already started."""
        with self._lock:
            if self._state is not PipelineState.NEW:
                raise RuntimeError("a FramePipeline can be started only once")
            self._state = PipelineState.RUNNING
        self._threads = [
            threading.Thread(target=self._capture_loop, name="gatehouse-capture", daemon=True),
            threading.Thread(target=self._decode_loop, name="gatehouse-decode", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop both threads and wait up to ``timeout`` seconds for them to end.

        Frames not yet decoded are discarded. Returns ``False`` if a thread is still running at
        the deadline (a camera driver stuck in a read); it ends, and releases the camera, as
        soon as the driver returns. Safe to call more than once, and from a callback; a
        pipeline stopped before it started closes its source.
        """
        self._stopping.set()
        self.source.interrupt()
        self._handoff.close()
        with self._lock:
            never_started = self._state is PipelineState.NEW
            if self._state in (PipelineState.NEW, PipelineState.RUNNING):
                self._state = PipelineState.STOPPED
        if never_started:
            self.source.close()
        return self._join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the source has ended and every frame taken was decoded (files).

        Returns ``False`` if still running after ``timeout`` seconds. A camera never ends on
        its own: wait for it with a timeout, or call ``stop()``.
        """
        return self._join(timeout)

    def _join(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        current = threading.current_thread()
        for thread in self._threads:
            if thread is current:  # stop() from a callback: that thread ends once it returns
                continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        return not any(t.is_alive() and t is not current for t in self._threads)

    def stats(self) -> PipelineStats:
        """A consistent snapshot of the counters; cheap enough to call every frame."""
        with self._lock:
            recent = list(self._decode_s)
            return PipelineStats(
                state=self._state,
                frames_read=self._frames_read,
                frames_decoded=self._frames_decoded,
                frames_dropped=self._handoff.dropped,
                codes_delivered=self._codes_delivered,
                callback_errors=self._callback_errors,
                decode_ms_p50=statistics.median(recent) * 1000.0 if recent else None,
            )

    def _capture_loop(self) -> None:
        try:
            while not self._stopping.is_set():
                frame = self.source.read()
                if frame is None:
                    break
                with self._lock:
                    self._frames_read += 1
                if not self._handoff.put(frame):
                    break
        except CaptureError as error:
            self._fail(error)
        except Exception as error:  # a bug or an unexpected library error: report, don't vanish
            log.exception("capture from %s failed", self.source.description)
            self._fail(
                CaptureError(f"Reading {self.source.description} failed unexpectedly: {error}")
            )
        finally:
            self._handoff.end()
            try:
                self.source.close()
            except Exception:
                log.exception("closing %s failed", self.source.description)

    def _decode_loop(self) -> None:
        try:
            while (frame := self._handoff.get()) is not None:
                self._process(frame)
        except Exception as error:
            log.exception("decoding frames from %s failed", self.source.description)
            self._fail(CaptureError(f"The QR decoder stopped with an error: {error}"))
            self.source.interrupt()
            self._handoff.close()
        with self._lock:
            if self._state is PipelineState.RUNNING:
                self._state = PipelineState.FINISHED

    def _process(self, frame: CapturedFrame) -> None:
        started = time.perf_counter()
        symbols = self._decoder.decode(frame.image)
        took = time.perf_counter() - started
        with self._lock:
            self._frames_decoded += 1
            self._decode_s.append(took)
        fresh = self._debouncer.admit((s.text for s in symbols), frame.source_time)
        for text in fresh:
            symbol = next(s for s in symbols if s.text == text)
            sighting = CodeSighting(
                text=text,
                corners=symbol.corners,
                frame_index=frame.index,
                source_time=frame.source_time,
                captured_at=frame.captured_at,
            )
            with self._lock:
                self._codes_delivered += 1
            self._call(self._sink, sighting)
        if self._on_frame is not None:
            self._call(self._on_frame, frame, symbols)

    def _call(self, callback: Callable[..., None], *args: object) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("a pipeline callback failed; scanning goes on")
            with self._lock:
                self._callback_errors += 1

    def _fail(self, error: CaptureError) -> None:
        with self._lock:
            if self._error is not None or self._state is PipelineState.STOPPED:
                return
            self._error = error
            self._state = PipelineState.FAILED
        if self._on_error is not None:
            try:
                self._on_error(error)
            except Exception:
                log.exception("the pipeline's on_error callback failed")

    def __enter__(self) -> FramePipeline:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
