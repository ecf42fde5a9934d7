"""The frame pipeline: one delivery per code presentation, live sources drop, stop is prompt."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from scanner_app.core.capture import CapturedFrame, CaptureError, FrameSource, open_source
from scanner_app.core.decoding import DecodedSymbol, create_decoder
from scanner_app.core.pipeline import (
    Debouncer,
    FramePipeline,
    PipelineState,
)
from scanner_app.core.sighting import CodeSighting
from scanner_app.core.synthetic_frames import synthetic_background, synthetic_frame
from shared.clock import ManualClock

Image = npt.NDArray[np.uint8]
WAIT_S = 10.0  # generous bound for "this will happen", never a speed requirement
TICK = 0.125  # seconds between scripted frames: exact in binary, so times add up exactly


# --- scripted stand-ins: frames that carry their own number, and a decoder that reads it ------


def numbered(n: int) -> Image:
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[0, 0, 0], image[0, 0, 1] = n % 256, n // 256
    return image


def number_of(image: Image) -> int:
    return int(image[0, 0, 0]) + 256 * int(image[0, 0, 1])


class ScriptedDecoder:
    """Returns the codes the script gives for each frame number, and records what it saw."""

    name = "scripted"

    def __init__(
        self,
        script: dict[int, list[str]] | None = None,
        before: Callable[[int], None] | None = None,
    ) -> None:
        self.script = script or {}
        self.before = before
        self.seen: list[int] = []

    def decode(self, frame: Image) -> list[DecodedSymbol]:
        n = number_of(frame)
        if self.before is not None:
            self.before(n)
        self.seen.append(n)
        corners = ((float(n), 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
        return [DecodedSymbol(text, corners) for text in self.script.get(n, [])]


class ScriptedSource(FrameSource):
    """``count`` numbered frames, ``TICK`` apart.

    Live: times come from the clock, which this source advances by ``TICK`` per frame, and
    ``before(n)`` runs before frame ``n`` is grabbed (to hold it back or raise). Not live:
    times are ``n * TICK``, like a file.
    """

    def __init__(
        self,
        count: int | None,
        *,
        live: bool,
        clock: ManualClock | None = None,
        before: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__("the test camera", live=live, fps=1 / TICK, clock=clock)
        self.count = count
        self.manual = clock
        self.before = before
        self.grabbed = 0
        self.released = threading.Event()

    def _grab(self) -> tuple[Image, float | None] | None:
        n = self.grabbed
        if self.before is not None:
            self.before(n)
        if self.count is not None and n >= self.count:
            return None
        self.grabbed += 1
        if not self.live:
            return numbered(n), n * TICK
        if self.manual is not None:
            self.manual.advance(TICK)
        return numbered(n), None

    def _release(self) -> None:
        self.released.set()


def lockstep(pipeline_frames: threading.Semaphore) -> Callable[[int], None]:
    """Hold each live frame after the first until the previous one is decoded: no drops."""

    def before(n: int) -> None:
        if n > 0:
            assert pipeline_frames.acquire(timeout=WAIT_S), "the decoder never took a frame"

    return before


def ignore(sighting: CodeSighting) -> None:
    pass


def run_to_end(pipeline: FramePipeline) -> None:
    pipeline.start()
    assert pipeline.wait(WAIT_S), "the pipeline did not finish"


def eventually(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.001)


# --- a real video of synthetic camera frames, through the real decoder ------------------------

FPS = 10.0
VIDEO_SIZE = (640, 480)
# frame ranges (10 fps) → what is in view; everything else is an empty scene
TIMELINE: list[tuple[range, str | None]] = [
    (range(0, 5), "TICKET-A"),
    (range(5, 7), None),  # 0.2 s unread: a tilt, not putting the phone away
    (range(7, 10), "TICKET-A"),
    (range(10, 12), "TICKET-B"),
    (range(12, 27), None),  # 1.5 s with nothing: both codes have left
    (range(27, 30), "TICKET-A"),
    (range(30, 33), "TICKET-B"),
]


@pytest.fixture(scope="module")
def gate_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    poses = {
        text: [
            synthetic_frame(text, np.random.default_rng([k, i]), VIDEO_SIZE).image for i in (1, 2)
        ]
        for k, text in enumerate(["TICKET-A", "TICKET-B"])
    }
    empty = [synthetic_background(np.random.default_rng([9, i]), VIDEO_SIZE) for i in (1, 2)]
    path = tmp_path_factory.mktemp("video") / "gate.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, VIDEO_SIZE)
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    for frames, text in TIMELINE:
        for n in frames:
            writer.write((empty if text is None else poses[text])[n % 2])
    writer.release()
    # Precondition: every frame reads back as the timeline says, so the test below is about
    # the pipeline and not about the decoder.
    decoder = create_decoder()
    expected = [text for frames, text in TIMELINE for _ in frames]
    with open_source(str(path)) as source:
        read = [[s.text for s in decoder.decode(f.image)] for f in source]
    assert read == [[] if text is None else [text] for text in expected]
    return path


def test_each_code_comes_out_once_per_presentation_from_a_video(gate_video: Path) -> None:
    sightings: list[CodeSighting] = []
    frames_seen: list[int] = []
    pipeline = FramePipeline(
        open_source(str(gate_video)),
        create_decoder(),
        sightings.append,
        on_frame=lambda frame, symbols: frames_seen.append(frame.index),
    )
    run_to_end(pipeline)
    # A stays in view 0-9 (unread 5-6): once. B at 10. After 1.5 s of nothing, both again.
    assert [(s.text, s.frame_index) for s in sightings] == [
        ("TICKET-A", 0),
        ("TICKET-B", 10),
        ("TICKET-A", 27),
        ("TICKET-B", 30),
    ]
    assert [s.source_time for s in sightings] == pytest.approx([0.0, 1.0, 2.7, 3.0])
    assert all(len(s.corners) == 4 for s in sightings)
    total = sum(len(frames) for frames, _ in TIMELINE)
    assert frames_seen == list(range(total))  # a file read as fast as possible drops nothing
    stats = pipeline.stats()
    assert stats.state is PipelineState.FINISHED
    assert (stats.frames_read, stats.frames_decoded, stats.frames_dropped) == (total, total, 0)
    assert stats.codes_delivered == 4
    assert stats.decode_ms_p50 is not None
    assert pipeline.source.read() is None  # the pipeline closed its source


def test_a_shorter_gap_delivers_a_code_again_after_a_short_absence(gate_video: Path) -> None:
    sightings: list[CodeSighting] = []
    run_to_end(
        FramePipeline(open_source(str(gate_video)), create_decoder(), sightings.append, gap=0.25)
    )
    # Frames 5-6 without A are 0.3 s from frame 4 to frame 7: longer than 0.25 s.
    assert [s.frame_index for s in sightings if s.text == "TICKET-A"] == [0, 7, 27]


# --- de-duplication on a live source, driven by a ManualClock ---------------------------------


def run_live(
    script: dict[int, list[str]], count: int, **options: float | None
) -> list[CodeSighting]:
    clock = ManualClock()
    decoded = threading.Semaphore(0)
    sightings: list[CodeSighting] = []
    source = ScriptedSource(count, live=True, clock=clock, before=lockstep(decoded))
    pipeline = FramePipeline(
        source,
        ScriptedDecoder(script),
        sightings.append,
        on_frame=lambda frame, symbols: decoded.release(),
        **options,  # type: ignore[arg-type]
    )
    run_to_end(pipeline)
    stats = pipeline.stats()
    assert (stats.frames_decoded, stats.frames_dropped) == (count, 0)  # lockstep: none dropped
    return sightings


def in_view(frames: range, *texts: str) -> dict[int, list[str]]:
    return {n: list(texts) for n in frames}


def test_a_code_held_up_gives_one_sighting_however_long_it_stays() -> None:
    sightings = run_live(in_view(range(0, 80), "A"), 80)  # 10 s in view
    assert [(s.text, s.frame_index) for s in sightings] == [("A", 0)]
    assert sightings[0].captured_at == TICK  # the clock moved one tick before frame 0
    assert sightings[0].source_time == sightings[0].captured_at  # a camera's own time


def test_unread_frames_shorter_than_the_gap_do_not_make_a_new_sighting() -> None:
    # 7 frames unread is 1.0 s between sightings, exactly the gap: the same presentation.
    script = in_view(range(0, 10), "A") | in_view(range(17, 20), "A")
    assert [s.frame_index for s in run_live(script, 20)] == [0]


def test_a_code_shown_again_after_more_than_the_gap_is_a_new_sighting() -> None:
    script = in_view(range(0, 10), "A") | in_view(range(18, 20), "A")  # 1.125 s apart
    assert [s.frame_index for s in run_live(script, 20)] == [0, 18]


def test_repeat_after_delivers_a_code_again_while_it_stays_in_view() -> None:
    sightings = run_live(in_view(range(0, 40), "A"), 40, repeat_after=2.0)  # 5 s in view
    assert [s.frame_index for s in sightings] == [0, 16, 32]  # every 2 s = 16 ticks


def test_several_codes_in_view_are_each_delivered_once() -> None:
    script = (
        in_view(range(0, 4), "A")
        | in_view(range(4, 8), "A", "B", "A")  # B joins; A is read twice in one frame
        | in_view(range(8, 12), "B")
    )
    sightings = run_live(script, 12)
    assert [(s.text, s.frame_index) for s in sightings] == [("A", 0), ("B", 4)]


def test_the_debouncer_on_its_own() -> None:
    debouncer = Debouncer(gap=1.0)
    assert debouncer.admit(["A", "B"], 0.0) == ["A", "B"]
    assert debouncer.admit(["A"], 0.5) == []
    assert debouncer.admit(["A"], 1.4) == []  # A was seen at 0.5: 0.9 s ago
    assert debouncer.admit(["B"], 1.4) == ["B"]  # B was last seen at 0.0: 1.4 s ago
    debouncer.reset()
    assert debouncer.admit(["A"], 1.5) == ["A"]
    with pytest.raises(ValueError, match="gap"):
        Debouncer(gap=0)
    with pytest.raises(ValueError, match="repeat_after"):
        Debouncer(repeat_after=-1.0)


# --- live sources drop, files don't --------------------------------------------------------


def test_a_live_source_drops_frames_while_the_decoder_is_busy_instead_of_queueing() -> None:
    count = 10
    decoding = threading.Event()
    camera_done = threading.Event()

    def camera(n: int) -> None:
        if n == 1:  # frame 0 is being decoded before the camera sends the rest
            assert decoding.wait(WAIT_S), "the decoder never started"
        if n == count:  # asked for one more: every frame was handed over
            camera_done.set()

    def slow_decoder(n: int) -> None:
        decoding.set()
        assert camera_done.wait(WAIT_S), "the camera was held up by the decoder"

    decoder = ScriptedDecoder(before=slow_decoder)
    pipeline = FramePipeline(ScriptedSource(count, live=True, before=camera), decoder, ignore)
    run_to_end(pipeline)
    # While frame 0 was being decoded the camera sent 1-9; only the newest, 9, was decoded next.
    assert decoder.seen == [0, count - 1]
    stats = pipeline.stats()
    assert (stats.frames_read, stats.frames_decoded, stats.frames_dropped) == (count, 2, 8)


def test_a_file_read_as_fast_as_possible_waits_for_the_decoder_and_drops_nothing() -> None:
    count = 20
    read_ahead = threading.Event()

    def file(n: int) -> None:
        if n == 5:  # one frame in the decoder, four queued, and capture asks for the next
            read_ahead.set()

    def slow_decoder(n: int) -> None:
        if n == 0:
            assert read_ahead.wait(WAIT_S), "capture did not read ahead"

    decoder = ScriptedDecoder(before=slow_decoder)
    pipeline = FramePipeline(ScriptedSource(count, live=False, before=file), decoder, ignore)
    run_to_end(pipeline)
    assert decoder.seen == list(range(count))
    assert pipeline.stats().frames_dropped == 0


# --- stopping and failing --------------------------------------------------------------------


def test_stop_ends_an_endless_camera_promptly_and_releases_it() -> None:
    def camera(n: int) -> None:
        time.sleep(0.002)  # a camera delivers a frame every so often, forever

    source = ScriptedSource(None, live=True, before=camera)
    pipeline = FramePipeline(source, ScriptedDecoder(), ignore)
    pipeline.start()
    eventually(lambda: pipeline.stats().frames_decoded >= 3)
    assert pipeline.stop(timeout=WAIT_S)
    assert pipeline.state is PipelineState.STOPPED
    assert source.released.is_set()


def test_stop_gives_up_waiting_on_a_stuck_camera_and_it_is_released_later() -> None:
    driver_returns = threading.Event()

    def stuck(n: int) -> None:
        if n == 1:
            driver_returns.wait(WAIT_S)

    source = ScriptedSource(None, live=True, before=stuck)
    pipeline = FramePipeline(source, ScriptedDecoder(), ignore)
    pipeline.start()
    eventually(lambda: pipeline.stats().frames_decoded == 1)
    assert pipeline.stop(timeout=0.05) is False
    assert pipeline.state is PipelineState.STOPPED
    driver_returns.set()
    assert pipeline.wait(WAIT_S)
    assert source.released.is_set()


def test_the_context_manager_starts_and_stops() -> None:
    source = ScriptedSource(None, live=True, before=lambda n: time.sleep(0.002))
    with FramePipeline(source, ScriptedDecoder(), ignore) as pipeline:
        assert pipeline.stats().state is PipelineState.RUNNING
        with pytest.raises(RuntimeError, match="only once"):
            pipeline.start()
    assert pipeline.stats().state is PipelineState.STOPPED
    assert source.released.is_set()


def test_a_pipeline_stopped_before_it_started_closes_its_source() -> None:
    source = ScriptedSource(None, live=True)
    pipeline = FramePipeline(source, ScriptedDecoder(), ignore)
    assert pipeline.stop()
    assert source.released.is_set()
    with pytest.raises(RuntimeError, match="only once"):
        pipeline.start()


def test_a_camera_failure_reaches_on_error_and_the_state() -> None:
    def unplugged(n: int) -> None:
        if n == 5:
            raise CaptureError("Camera 0 stopped sending pictures. Check its cable.")

    errors: list[CaptureError] = []
    sightings: list[CodeSighting] = []
    source = ScriptedSource(None, live=False, before=unplugged)
    pipeline = FramePipeline(
        source, ScriptedDecoder(in_view(range(0, 5), "A")), sightings.append, on_error=errors.append
    )
    run_to_end(pipeline)
    assert [str(e) for e in errors] == ["Camera 0 stopped sending pictures. Check its cable."]
    assert pipeline.state is PipelineState.FAILED
    assert pipeline.error is errors[0]
    assert [s.text for s in sightings] == ["A"]  # what came before the failure still counts
    assert pipeline.stats().frames_decoded == 5
    assert source.released.is_set()


def test_an_unexpected_source_error_is_reported_not_swallowed() -> None:
    def broken(n: int) -> None:
        raise ZeroDivisionError("driver bug")

    errors: list[CaptureError] = []
    pipeline = FramePipeline(
        ScriptedSource(None, live=True, before=broken),
        ScriptedDecoder(),
        ignore,
        on_error=errors.append,
    )
    run_to_end(pipeline)
    assert pipeline.state is PipelineState.FAILED
    assert len(errors) == 1
    assert "the test camera" in str(errors[0])
    assert "driver bug" in str(errors[0])


def test_a_decoder_failure_stops_capture_and_is_reported() -> None:
    def crash(n: int) -> None:
        if n >= 3:  # a live source may drop frame 3 itself
            raise ValueError("a frame must be uint8")

    errors: list[CaptureError] = []
    source = ScriptedSource(None, live=True, before=lambda n: time.sleep(0.001))
    pipeline = FramePipeline(source, ScriptedDecoder(before=crash), ignore, on_error=errors.append)
    run_to_end(pipeline)  # ends by itself: the camera is stopped too
    assert pipeline.state is PipelineState.FAILED
    assert [str(e) for e in errors] == [
        "The QR decoder stopped with an error: a frame must be uint8"
    ]
    assert source.released.is_set()


def test_a_failing_sink_is_counted_and_scanning_goes_on() -> None:
    delivered: list[str] = []

    def sink(sighting: CodeSighting) -> None:
        delivered.append(sighting.text)
        if sighting.text == "A":
            raise RuntimeError("the verdict could not be shown")

    script = in_view(range(0, 2), "A") | in_view(range(2, 4), "B")
    pipeline = FramePipeline(ScriptedSource(4, live=False), ScriptedDecoder(script), sink)
    run_to_end(pipeline)
    assert delivered == ["A", "B"]
    stats = pipeline.stats()
    assert (stats.state, stats.callback_errors, stats.codes_delivered) == (
        PipelineState.FINISHED,
        1,
        2,
    )


def test_on_frame_hears_every_frame_with_its_codes_and_stop_works_from_a_callback() -> None:
    heard: list[tuple[int, Sequence[str]]] = []
    pipeline: FramePipeline

    def on_frame(frame: CapturedFrame, symbols: Sequence[DecodedSymbol]) -> None:
        heard.append((frame.index, [s.text for s in symbols]))
        if frame.index == 3:
            assert pipeline.stop(timeout=0.01) is True  # never waits on its own thread

    script = {1: ["A"], 3: ["B", "C"]}
    source = ScriptedSource(None, live=False, before=lambda n: time.sleep(0.001))
    pipeline = FramePipeline(source, ScriptedDecoder(script), ignore, on_frame=on_frame)
    pipeline.start()
    assert pipeline.wait(WAIT_S)
    assert heard == [(0, []), (1, ["A"]), (2, []), (3, ["B", "C"])]
    assert pipeline.state is PipelineState.STOPPED
