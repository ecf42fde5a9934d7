"""``gatehouse-scanner --self-test``: prove, without a screen or a camera, that this build of the
scanner works — its modules and native libraries load, a demo store can be made, the gate gives
every demo code its verdict, the QR decoder reads codes, and Qt draws windows.

It is what a packaged build runs right after it is built (a missing Qt plugin or native library
shows up here, not at a venue), and what ``./dev demo`` runs when there is no display. One line
per check; exit status 0 when all passed, 1 otherwise.

    python -m scanner_app.ui.selftest
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TextIO, TypeVar

import numpy as np

import scanner_app
import shared
from scanner_app.core.decoding import create_decoder
from scanner_app.core.demo import (
    DEMO_GATE,
    DemoCode,
    DemoSetup,
    prepare_demo_store,
    scan_demo_code,
    stand_at,
)
from scanner_app.core.gate import Gate
from scanner_app.core.store import LocalStore
from scanner_app.core.synthetic_frames import render_qr, synthetic_frame
from shared.clock import ManualClock
from shared.domain import VerdictReason

_T = TypeVar("_T")

#: Native libraries the app cannot run without; a packaged build must carry each one.
_NATIVE = ("cv2", "zxingcpp", "segno", "PySide6.QtCore", "PySide6.QtGui", "PySide6.QtWidgets")


class _Checks:
    """Runs checks, prints one line each, remembers whether any failed."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.failed = 0

    def say(self, ok: bool, what: str, detail: str = "") -> None:
        self.failed += not ok
        line = f"{'ok  ' if ok else 'FAIL'} {what}"
        print(f"{line}: {detail}" if detail else line, file=self.out, flush=True)

    def run(self, what: str, check: Callable[[], tuple[_T, str]]) -> _T | None:
        """Run ``check`` (which returns its result and a detail line); any exception is a
        failure, reported with its last frame, and gives ``None``."""
        try:
            result, detail = check()
        except Exception as error:  # a self-test reports every failure, whatever its kind
            where = traceback.extract_tb(error.__traceback__)[-1]
            self.say(
                False, what, f"{type(error).__name__}: {error} ({where.filename}:{where.lineno})"
            )
            return None
        self.say(True, what, detail)
        return result


def run_self_test(out: TextIO | None = None) -> int:
    """Run every check, printing to ``out`` (default: standard output). Returns 0 when all
    passed, 1 otherwise. Uses Qt's offscreen platform unless ``QT_QPA_PLATFORM`` says
    otherwise, and a temporary folder it removes again."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    stream = out or sys.stdout or _fallback_log()
    checks = _Checks(stream)
    started = time.perf_counter()
    frozen = " (packaged build)" if getattr(sys, "frozen", False) else ""
    print(f"Gatehouse scanner self-test{frozen}, Python {sys.version.split()[0]}", file=stream)
    checks.run("native libraries", _native_libraries)
    checks.run("modules", _modules)
    with tempfile.TemporaryDirectory(prefix="gatehouse-self-test-") as folder:
        setup = checks.run("demo store", lambda: _demo_store(Path(folder)))
        if setup is not None:
            _gate_verdicts(checks, setup)
            checks.run("QR decoder", lambda: _decoder(setup))
            checks.run("Qt windows", lambda: _qt_windows(setup))
    took = time.perf_counter() - started
    verdict = "all checks passed" if not checks.failed else f"{checks.failed} checks FAILED"
    print(f"{verdict} in {took:.1f} s", file=stream, flush=True)
    return 0 if not checks.failed else 1


def _fallback_log() -> TextIO:
    # A windowed build on Windows has no standard output: write where a person can find it.
    path = Path(tempfile.gettempdir()) / "gatehouse-self-test.txt"
    return path.open("w", encoding="utf-8")


def _native_libraries() -> tuple[None, str]:
    for name in _NATIVE:
        importlib.import_module(name)
    import cv2  # noqa: PLC0415 - loaded just above; named here for its version
    import PySide6  # noqa: PLC0415

    return None, f"OpenCV {cv2.__version__}, PySide6 {PySide6.__version__}"


def _modules() -> tuple[None, str]:
    """Import every module of the scanner: a packaged build that left one out fails here."""
    count = 0
    for package in (shared, scanner_app):
        prefix = package.__name__ + "."
        for module in pkgutil.walk_packages(package.__path__, prefix):
            importlib.import_module(module.name)
            count += 1
    return None, f"{count} modules of shared and scanner_app import"


def _demo_store(folder: Path) -> tuple[DemoSetup, str]:
    setup = prepare_demo_store(folder / "demo")
    return setup, (
        f"{setup.gate_event.name}: {setup.tickets} tickets, {len(setup.codes)} demo codes, "
        f"{setup.peer_admissions} admissions at other gates"
    )


def _gate_verdicts(checks: _Checks, setup: DemoSetup) -> None:
    """Each demo code through a real gate on the demo store: the verdict it is labelled with.
    Then the first valid code again, after the debounce window: already checked in here."""
    store = LocalStore.open(setup.data_dir)
    try:
        clock = ManualClock(datetime.now(UTC))
        gate = Gate(store, clock=clock)
        for code in setup.codes:
            checks.run(f"verdict: {code.label}", partial(_scan_one, store, gate, code))

        def again() -> tuple[None, str]:
            clock.advance(gate.settings.debounce_seconds + 1)
            if stand_at(store, DEMO_GATE):
                gate.reload()
            verdict = gate.scan(setup.codes[0].code)
            prior = verdict.verdict.prior
            if verdict.verdict.reason is not VerdictReason.ALREADY_CHECKED_IN or (
                prior is None or prior.gate != DEMO_GATE
            ):
                raise AssertionError(f"expected already checked in at {DEMO_GATE}, got {verdict}")
            return None, verdict.sentence

        checks.run("the first code scanned again", again)
    finally:
        store.close()


def _scan_one(store: LocalStore, gate: Gate, code: DemoCode) -> tuple[None, str]:
    verdict = scan_demo_code(store, gate, code)
    said = f"{verdict.verdict.result} — {verdict.sentence}"
    if not code.matches(verdict):
        raise AssertionError(f"expected {code.expected}, got {said}")
    return None, said


def _decoder(setup: DemoSetup) -> tuple[None, str]:
    """zxing-cpp reads a demo code off a clean render and off a simulated camera frame."""
    decoder = create_decoder("zxing")
    text = setup.codes[0].code
    clean = [s.text for s in decoder.decode(render_qr(text, module_px=4))]
    frame = synthetic_frame(text, np.random.default_rng(1)).image
    filmed = [s.text for s in decoder.decode(frame)]
    if clean != [text] or filmed != [text]:
        raise AssertionError(f"read {clean} from the code and {filmed} from the camera frame")
    return None, f"{decoder.name} read the code and a 1280x720 camera frame of it"


def _qt_windows(setup: DemoSetup) -> tuple[None, str]:
    """Qt starts on this platform, draws the demo codes window, and the drawn code reads back."""
    from PySide6.QtWidgets import QApplication  # noqa: PLC0415 - Qt only once the env is set

    from scanner_app.ui.demo import DemoCodesWindow, gray_pixels  # noqa: PLC0415

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "gatehouse"])
    window = DemoCodesWindow(setup)
    try:
        window.show()
        app.processEvents()
        window.grab()  # paints every child: fonts, styles and image formats are all exercised
        drawn = [s.text for s in create_decoder("zxing").decode(gray_pixels(window.shown_qr()))]
        if drawn != [setup.codes[0].code]:
            raise AssertionError(f"the drawn code read as {drawn}")
        platform = QApplication.platformName()
    finally:
        window.close()
        window.deleteLater()
    return None, f"platform {platform}: the demo codes window draws a code that reads back"


if __name__ == "__main__":
    sys.exit(run_self_test())
