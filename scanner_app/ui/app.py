"""The desktop app's entry point: ``gatehouse-scanner`` with no command, or ``--demo``.

``main(argv)`` opens the scanner's store; a device that is not enrolled yet gets the enrollment
dialog first, an enrolled one the gate screen. ``--demo`` prepares a fresh demo event in its
own folder and opens the gate screen on it beside the demo codes window.

Start-up is kept lean so the gate screen is up fast (target: under 2 s from a cold start):
only Qt and the store load before the window shows; OpenCV, the decoder, the sync engine and
the session load on a worker thread right after. ``--ready-probe`` (hidden, for
benchmarks/cold_start.py) prints ``ready <seconds>`` — from the time taken at the very top of
the entry module — once the first screen is shown and the event loop is idle, then quits.
"""

from __future__ import annotations

import time

# Taken first: the ready probe measures from here when this module is the entry point.
STARTED_AT = time.perf_counter()

import argparse  # noqa: E402 - after the start time on purpose
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

from PySide6.QtCore import Qt, QTimer  # noqa: E402
from PySide6.QtGui import QGuiApplication  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget  # noqa: E402

from scanner_app.core import paths  # noqa: E402
from scanner_app.core.store import LocalStore, StoreError  # noqa: E402
from scanner_app.core.store.state import load_enrollment  # noqa: E402
from scanner_app.ui.gc_guard import GuiThreadGarbageCollector  # noqa: E402

APP_NAME = "Gatehouse Scanner"
ORGANISATION = "Gatehouse"
#: The demo's folder inside the user data folder (fresh each run).
DEMO_FOLDER = "demo"


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gatehouse-scanner", description=__doc__)
    parser.add_argument("--demo", action="store_true", help="open on a fresh demo event")
    parser.add_argument("--data-dir", type=Path, default=None, help="the scanner's data folder")
    parser.add_argument("--no-camera", action="store_true", help="handheld scanner only")
    parser.add_argument("--ready-probe", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(list(argv))


def application() -> QApplication:
    """The running ``QApplication``, created (high-DPI safe, named for QSettings) if needed."""
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    # Fractional scaling (125 %, 150 %) exactly as the system asks: no rounding to whole
    # factors, which would make text too small or too large on common laptop screens.
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
    )
    app = QApplication([sys.argv[0] if sys.argv else "gatehouse-scanner"])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(ORGANISATION)
    app.setApplicationDisplayName(APP_NAME)
    # Parented to the application: collects cycles on the GUI thread for the app's whole life.
    GuiThreadGarbageCollector(app)
    return app


def main(argv: Sequence[str] | None = None, *, started_at: float | None = None) -> int:
    """Run the app until its window closes; returns the process exit status."""
    args = _arguments(sys.argv[1:] if argv is None else argv)
    started = STARTED_AT if started_at is None else started_at
    app = application()
    demo_codes: QWidget | None = None
    try:
        if args.demo:
            store, demo_codes = _open_demo(args.data_dir)
        else:
            store = LocalStore.open(paths.data_dir(args.data_dir))
    except StoreError as error:
        QMessageBox.critical(None, APP_NAME, str(error))
        return 1

    if not args.demo and not _enrolled(store):
        enrolled = _enroll(
            paths.data_dir(args.data_dir), ready_probe=args.ready_probe, started=started
        )
        if enrolled is None:
            return 0 if args.ready_probe else 1
        store = enrolled

    _KEEP.append(_open_window(store, demo_codes, camera=not args.no_camera))
    if args.ready_probe:

        def probe() -> None:
            _report_ready(started)
            app.quit()

        QTimer.singleShot(0, probe)
    return app.exec()


def _enrolled(store: LocalStore) -> bool:
    with store.read() as conn:
        return load_enrollment(conn) is not None


def _report_ready(started: float) -> None:
    """The ready probe's line: seconds from ``started`` to the first screen, idle."""
    print(f"ready {time.perf_counter() - started:.3f}", flush=True)


def _open_demo(data_dir: Path | None) -> tuple[LocalStore, QWidget | None]:
    """A fresh demo store and its codes window. Raises ``StoreError`` when the demo folder
    cannot be prepared (it holds a real scanner's data, or is not writable)."""
    folder = data_dir or paths.data_dir() / DEMO_FOLDER
    from scanner_app.ui.demo import DemoCodesWindow, prepare_demo  # noqa: PLC0415 - demo only

    setup = prepare_demo(folder)
    return LocalStore.open(setup.data_dir), DemoCodesWindow(setup)


def _enroll(data_dir: Path, *, ready_probe: bool, started: float) -> LocalStore | None:
    from scanner_app.ui.enrollment import EnrollmentDialog  # noqa: PLC0415 - first run only

    dialog = EnrollmentDialog(data_dir)
    if ready_probe:

        def probe() -> None:
            _report_ready(started)
            dialog.reject()

        QTimer.singleShot(0, probe)
    return dialog.exec()


def _open_window(store: LocalStore, demo_codes: QWidget | None, *, camera: bool) -> QWidget:
    from scanner_app.ui.main_window import MainWindow  # noqa: PLC0415 - Qt widgets, after args
    from scanner_app.ui.sounds import VerdictSounds  # noqa: PLC0415

    window = MainWindow(store, camera=camera, sounds=VerdictSounds(), demo_codes=demo_codes)
    if demo_codes is not None:
        gate_requested = getattr(demo_codes, "gate_requested", None)
        if gate_requested is not None:  # connected first: the move is queued before the scan
            gate_requested.connect(window.bridge.move_to_gate)
        scan_requested = getattr(demo_codes, "scan_requested", None)
        if scan_requested is not None:
            scan_requested.connect(window.bridge.scan_text)
    window.reenrolled.connect(lambda new_store: _reopen(window, new_store, camera=camera))
    app = QApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(window.shut_down)
    window.resize(1280, 800)
    window.show()
    if demo_codes is not None:
        demo_codes.show()
    return window


def _reopen(old: QWidget, store: LocalStore, *, camera: bool) -> None:
    """After "Enroll again": a new window on the new identity, the old one closed."""
    old.close()
    _KEEP.append(_open_window(store, None, camera=camera))


#: Windows opened after start-up (kept alive here: Qt does not own top-level windows).
_KEEP: list[QWidget] = []


if __name__ == "__main__":
    sys.exit(main())
