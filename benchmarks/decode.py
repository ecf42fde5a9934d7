"""QR decoding on synthetic gate-camera frames: how many codes each backend reads and how long
one ``decode()`` call takes, at 720p and 1080p; also the cost of frames without a code.

    ./dev bench decode            (or: python -m benchmarks.decode [--quick])

Frames come from ``scanner_app.core.synthetic_frames`` (seeded, so every run sees the same
set), made beforehand on all cores; only the decode call is timed, one frame at a time.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from ctypes import c_uint
from dataclasses import dataclass

import numpy as np

from benchmarks.environment import header
from scanner_app.core.decoding import (
    BACKENDS,
    DEFAULT_BACKEND,
    DecoderUnavailable,
    QrDecoder,
    create_decoder,
)
from scanner_app.core.synthetic_frames import (
    SyntheticFrame,
    synthetic_background,
    synthetic_set,
    ticket_like_texts,
)

SEED = 2026
TEXTS = 64  # distinct ticket-shaped codes, cycled through the set
# (width, height, frames with a code, frames without) for a full and a quick run
FULL = ((1280, 720, 400, 100), (1920, 1080, 200, 50))
QUICK = ((1280, 720, 40, 10), (1920, 1080, 20, 5))
WARM_UP = 3
TARGET_RATE, TARGET_MEDIAN_MS = 99.5, 5.0  # docs: default decoder at 720p
Size = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Measurement:
    backend: str
    size: Size
    frames: int
    decoded: int  # frames whose code was read with the right text
    misread: int  # texts returned that are not the frame's code (should stay 0)
    median_ms: float
    p95_ms: float

    @property
    def rate(self) -> float:
        return 100.0 * self.decoded / self.frames if self.frames else 0.0


def _frame_slice(job: tuple[int, int, Size]) -> list[SyntheticFrame]:
    start, count, size = job
    return list(synthetic_set(ticket_like_texts(TEXTS, SEED), count, SEED, size, start=start))


def _background_slice(job: tuple[int, int, Size]) -> list[np.typing.NDArray[np.uint8]]:
    start, count, size = job
    # Seeded apart from the frames with a code: (SEED, 1, i) never equals (SEED, i).
    return [
        synthetic_background(np.random.default_rng([SEED, 1, i]), size)
        for i in range(start, start + count)
    ]


def _jobs(count: int, size: Size, workers: int) -> list[tuple[int, int, Size]]:
    step = max(1, -(-count // (workers * 4)))
    return [(start, min(step, count - start), size) for start in range(0, count, step)]


def _timed(
    decoder: QrDecoder, images: Sequence[np.typing.NDArray[np.uint8]]
) -> tuple[list[float], list[list[str]]]:
    for image in images[:WARM_UP]:
        decoder.decode(image)
    times, texts = [], []
    for image in images:
        started = time.perf_counter()
        symbols = decoder.decode(image)
        times.append((time.perf_counter() - started) * 1000.0)
        texts.append([symbol.text for symbol in symbols])
    return times, texts


def _p95(times: Sequence[float]) -> float:
    return float(np.percentile(times, 95))


def measure(decoder: QrDecoder, frames: Sequence[SyntheticFrame], size: Size) -> Measurement:
    times, texts = _timed(decoder, [frame.image for frame in frames])
    decoded = sum(frame.text in read for frame, read in zip(frames, texts, strict=True))
    misread = sum(
        sum(text != frame.text for text in read) for frame, read in zip(frames, texts, strict=True)
    )
    return Measurement(
        decoder.name, size, len(frames), decoded, misread, statistics.median(times), _p95(times)
    )


def measure_empty(
    decoder: QrDecoder, images: Sequence[np.typing.NDArray[np.uint8]], size: Size
) -> Measurement:
    times, texts = _timed(decoder, images)
    false_reads = sum(len(read) for read in texts)
    return Measurement(
        decoder.name, size, len(images), 0, false_reads, statistics.median(times), _p95(times)
    )


def _zbar_version() -> str:
    try:
        from pyzbar import wrapper  # noqa: PLC0415 - only to report the version, may be missing

        major, minor = c_uint(), c_uint()
        wrapper.zbar_version(major, minor)
    except (ImportError, OSError):
        return "ZBar not installed"
    return f"ZBar {major.value}.{minor.value}"


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(quick: bool = False) -> str:
    """Measure every available backend; return the markdown section for docs/benchmarks.md."""
    plan = QUICK if quick else FULL
    decoders: list[QrDecoder] = []
    unavailable: list[str] = []
    for name in BACKENDS:
        try:
            decoders.append(create_decoder(name))
        except DecoderUnavailable as error:
            unavailable.append(f"{name}: {error}")

    workers = os.cpu_count() or 1
    results: list[Measurement] = []
    empty: list[Measurement] = []
    spawn = multiprocessing.get_context("spawn")  # no fork of a process holding OpenCV threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool:
        for width, height, count, blank in plan:
            size = (width, height)
            _progress(f"making {count} + {blank} frames at {width}x{height}")
            frames = [
                f for part in pool.map(_frame_slice, _jobs(count, size, workers)) for f in part
            ]
            backgrounds = [
                image
                for part in pool.map(_background_slice, _jobs(blank, size, workers))
                for image in part
            ]
            for decoder in decoders:
                _progress(f"decoding with {decoder.name} at {width}x{height}")
                results.append(measure(decoder, frames, size))
                empty.append(measure_empty(decoder, backgrounds, size))
            del frames, backgrounds
    return _report(plan, results, empty, unavailable, quick)


def _report(
    plan: Sequence[tuple[int, int, int, int]],
    results: Sequence[Measurement],
    empty: Sequence[Measurement],
    unavailable: Sequence[str],
    quick: bool,
) -> str:
    sets = " and ".join(f"{count} frames at {w}x{h}" for w, h, count, _ in plan)
    lines = [
        "## QR decoding",
        "",
        header(
            "./dev bench decode" + (" --quick" if quick else ""),
            "zxing-cpp",
            "pyzbar",
            "opencv-python-headless",
            "segno",
            "numpy",
        )
        + f" {_zbar_version()}.",
        "",
        f"Set: {sets} from `scanner_app.core.synthetic_frames` (seed {SEED}; {TEXTS} random "
        "227-character ticket-shaped codes, QR version 9 at level M, cycled): cluttered scenes, "
        "any rotation, mild perspective, blur, uneven light, sensor noise, JPEG 40-90. Time is "
        "one `decode()` call (grayscale conversion included) on frames made beforehand.",
        "",
        "| backend | resolution | frames | decoded % | median ms | p95 ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for m in results:
        lines.append(
            f"| {m.backend} | {m.size[0]}x{m.size[1]} | {m.frames} | {m.rate:.1f} "
            f"| {m.median_ms:.1f} | {m.p95_ms:.1f} |"
        )
    misread = [m for m in results if m.misread]
    lines.append("")
    if misread:
        lines.append(
            "Misreads (a text other than the frame's code): "
            + ", ".join(f"{m.backend} {m.size[0]}x{m.size[1]}: {m.misread}" for m in misread)
            + "."
        )
    else:
        lines.append("No backend returned a wrong text.")
    lines += [
        "",
        "Frames without a code (same scenes and camera, no ticket), which is most of what a gate "
        "camera sees:",
        "",
        "| backend | resolution | frames | false reads | median ms | p95 ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for m in empty:
        lines.append(
            f"| {m.backend} | {m.size[0]}x{m.size[1]} | {m.frames} | {m.misread} "
            f"| {m.median_ms:.1f} | {m.p95_ms:.1f} |"
        )
    default = next(
        (m for m in results if m.backend == DEFAULT_BACKEND and m.size == (1280, 720)), None
    )
    if default is not None:
        met = default.rate >= TARGET_RATE and default.median_ms <= TARGET_MEDIAN_MS
        lines += [
            "",
            f"Target (default decoder, {DEFAULT_BACKEND}, at 720p: ≥ {TARGET_RATE} % decoded, "
            f"median ≤ {TARGET_MEDIAN_MS:.0f} ms): {'met' if met else 'NOT met'} "
            f"({default.rate:.1f} %, {default.median_ms:.1f} ms).",
        ]
    if quick:
        lines += ["", "Quick run: small sets, for a smoke test only."]
    if unavailable:
        lines += ["", "Not measured: " + "; ".join(unavailable)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv[1:]))
