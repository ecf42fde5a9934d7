"""Frame sources: cameras, video files and image folders, and how they fail."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from scanner_app.core import capture
from scanner_app.core.capture import (
    CaptureError,
    ImageSource,
    VideoFileSource,
    open_source,
)
from scanner_app.core.decoding import create_decoder
from scanner_app.core.synthetic_frames import synthetic_frame
from shared.clock import ManualClock

Image = npt.NDArray[np.uint8]
SIZE = (160, 120)


def grey(level: int, size: tuple[int, int] = SIZE) -> Image:
    return np.full((size[1], size[0], 3), level, dtype=np.uint8)


def write_video(path: Path, frames: list[Image], fps: float) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write MJPG here"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def write_image(path: Path, image: Image) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


def levels(frames: list[Image]) -> list[int]:
    return [round(float(f.mean())) for f in frames]


def test_a_video_yields_every_frame_in_order_with_its_time(tmp_path: Path) -> None:
    video = write_video(tmp_path / "gate.avi", [grey(20 * i) for i in range(12)], fps=25.0)
    clock = ManualClock()
    with open_source(str(video), clock=clock) as source:
        assert isinstance(source, VideoFileSource)
        assert not source.live
        assert source.fps == pytest.approx(25.0)
        frames = list(source)
    assert [f.index for f in frames] == list(range(12))
    assert [f.source_time for f in frames] == pytest.approx([i / 25 for i in range(12)])
    assert all(f.captured_at == clock.monotonic() for f in frames)
    assert all(f.image.dtype == np.uint8 and f.image.shape == (120, 160, 3) for f in frames)
    # MJPG is lossy; the grey levels still come back in the order written.
    assert levels([f.image for f in frames]) == pytest.approx([20 * i for i in range(12)], abs=3)


def test_a_folder_yields_its_images_sorted_by_name_and_ignores_other_files(
    tmp_path: Path,
) -> None:
    for name, level in [("c.png", 30), ("a.png", 10), ("b.JPG", 20), ("d.bmp", 40)]:
        write_image(tmp_path / name, grey(level))
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "sub.png").mkdir()  # a folder named like an image is not one
    with open_source(str(tmp_path), fps=10.0) as source:
        assert isinstance(source, ImageSource)
        frames = list(source)
    assert levels([f.image for f in frames]) == pytest.approx([10, 20, 30, 40], abs=2)
    assert [f.source_time for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert source.skipped == 0


def test_an_unreadable_image_is_skipped_with_a_warning_naming_it(tmp_path: Path) -> None:
    write_image(tmp_path / "1.png", grey(50))
    (tmp_path / "2.png").write_bytes(b"\x89PNG but then the file was cut off")
    (tmp_path / "3.jpg").write_bytes(b"")
    write_image(tmp_path / "4.png", grey(150))
    warnings: list[str] = []
    with open_source(str(tmp_path), on_warning=warnings.append) as source:
        frames = list(source)
    assert levels([f.image for f in frames]) == [50, 150]
    assert [f.index for f in frames] == [0, 1]
    assert source.skipped == 2
    assert len(warnings) == 2
    assert "2.png" in warnings[0]
    assert "3.jpg" in warnings[1]
    assert all("could not be read" in w for w in warnings)


def test_a_single_image_file_is_one_frame(tmp_path: Path) -> None:
    image = write_image(tmp_path / "ticket.png", grey(77))
    with open_source(str(image)) as source:
        frames = list(source)
    assert len(frames) == 1
    assert levels([frames[0].image]) == [77]


def test_a_single_image_with_a_qr_code_decodes(tmp_path: Path) -> None:
    shot = synthetic_frame("GH1TESTCODE", np.random.default_rng(4), (640, 480))
    path = write_image(tmp_path / "shot.png", shot.image)
    with open_source(str(path)) as source:
        (frame,) = list(source)
    assert [s.text for s in create_decoder().decode(frame.image)] == ["GH1TESTCODE"]


def test_a_missing_path_says_nothing_was_found_there(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-video.mp4"
    with pytest.raises(CaptureError, match=r"^Nothing was found at .*no-such-video\.mp4\."):
        open_source(str(missing))


def test_an_empty_spec_says_what_to_give() -> None:
    with pytest.raises(CaptureError, match="camera number such as 0"):
        open_source("  ")


def test_a_camera_that_does_not_open_gets_a_sentence_for_staff() -> None:
    # No machine has 97 cameras: OpenCV refuses to open it.
    with pytest.raises(CaptureError) as caught:
        open_source("97")
    assert str(caught.value) == (
        "Camera 97 could not be opened. Is it connected and not used by another program?"
    )


def test_a_missing_camera_device_says_to_plug_it_in() -> None:
    with pytest.raises(CaptureError, match=r"^Camera /dev/video-gatehouse-test was not found"):
        open_source("/dev/video-gatehouse-test")


def test_a_file_that_is_not_a_video_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "gate.mp4"
    bogus.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(CaptureError, match=r"^The video gate\.mp4 could not be read"):
        open_source(str(bogus))


def test_a_broken_single_image_is_refused_at_once(tmp_path: Path) -> None:
    broken = tmp_path / "ticket.jpg"
    broken.write_bytes(b"JFIF? no")
    with pytest.raises(CaptureError, match=r"^The image ticket\.jpg could not be read"):
        open_source(str(broken))


def test_a_folder_without_images_is_refused(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing to see")
    with pytest.raises(CaptureError, match=r"holds no images \(.*png"):
        open_source(str(tmp_path))


def test_a_paced_video_is_live_and_takes_at_least_its_own_duration(tmp_path: Path) -> None:
    video = write_video(tmp_path / "gate.avi", [grey(10)] * 6, fps=50.0)
    with open_source(str(video), paced=True) as source:
        assert source.live
        started = time.monotonic()
        frames = list(source)
        took = time.monotonic() - started
    assert len(frames) == 6
    assert took >= 5 / 50  # frame 5 is due 100 ms after frame 0; never earlier
    assert [f.captured_at for f in frames] == sorted(f.captured_at for f in frames)


def test_interrupt_ends_a_paced_wait_at_once(tmp_path: Path) -> None:
    # At 0.05 fps the second frame is due 20 s after the first: only interrupt() ends it soon.
    video = write_video(tmp_path / "slow.avi", [grey(10)] * 3, fps=0.05)
    source = open_source(str(video), paced=True, fps=0.05)
    read: list[int] = []

    def reader() -> None:
        read.extend(f.index for f in source)

    thread = threading.Thread(target=reader)
    thread.start()
    while not read:
        time.sleep(0.001)
    source.interrupt()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert read == [0]
    source.close()
    assert source.read() is None


def test_a_closed_source_reads_nothing_and_closes_twice(tmp_path: Path) -> None:
    video = write_video(tmp_path / "gate.avi", [grey(10)] * 3, fps=10.0)
    source = open_source(str(video))
    assert source.read() is not None
    source.close()
    source.close()
    assert source.read() is None


def test_the_string_decides_the_kind_of_source(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", [grey(10)], fps=10.0)
    video = video.rename(tmp_path / "clip.recording")  # any file that is not an image
    image = write_image(tmp_path / "one.PNG", grey(10))
    assert isinstance(open_source(str(video)), VideoFileSource)
    assert isinstance(open_source(str(image)), ImageSource)
    assert isinstance(open_source(str(tmp_path)), ImageSource)
    with pytest.raises(CaptureError, match=r"^Camera 96 "):  # digits: a camera number
        open_source("96")


class FakeCapture:
    """Stands in for cv2.VideoCapture on a camera: a few frames, then the cable is pulled."""

    def __init__(self, device: int | str) -> None:
        self.device = device
        self.frames = [grey(10), grey(20), grey(30)]
        self.settings: dict[int, float] = {}
        self.released = False

    def isOpened(self) -> bool:
        return True

    def set(self, prop: int, value: float) -> bool:
        self.settings[prop] = value
        return True

    def get(self, prop: int) -> float:
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self) -> tuple[bool, Image | None]:
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def release(self) -> None:
        self.released = True


def test_a_camera_yields_frames_on_the_clock_then_reports_a_pulled_cable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[FakeCapture] = []

    def fake_capture(device: int | str) -> FakeCapture:
        opened.append(FakeCapture(device))
        return opened[-1]

    monkeypatch.setattr(cv2, "VideoCapture", fake_capture)
    monkeypatch.setattr(capture, "_CAMERA_STALL_S", 0.05)
    clock = ManualClock()
    source = open_source("0", clock=clock, size=(1280, 720))
    assert isinstance(source, capture.CameraSource)
    assert source.live
    assert source.fps == 30.0
    assert opened[0].device == 0
    assert opened[0].settings[cv2.CAP_PROP_BUFFERSIZE] == 1  # no stale frames queued
    assert opened[0].settings[cv2.CAP_PROP_FRAME_WIDTH] == 1280
    frames = []
    for _ in range(3):
        clock.advance(0.5)
        frame = source.read()
        assert frame is not None
        frames.append(frame)
    assert [(f.index, f.source_time, f.captured_at) for f in frames] == [
        (0, 0.5, 0.5),
        (1, 1.0, 1.0),
        (2, 1.5, 1.5),
    ]
    with pytest.raises(CaptureError, match=r"^Camera 0 stopped sending pictures\. Check its cable"):
        source.read()
    source.close()
    assert opened[0].released
