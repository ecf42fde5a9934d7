"""Take the README's screenshots of the scanner app: ``./dev screenshots``.

Runs the real app window offscreen (``QT_QPA_PLATFORM=offscreen``, no display needed) on a demo
store, scans real demo codes through the real bridge, and saves ``QWidget.grab()`` images next
to this file:

* ``gate-admitted.png``: a valid ticket, the green panel;
* ``gate-rejected.png``: a ticket admitted at Gate B 20 minutes ago, red, "Already checked in
  at … at Gate B";
* ``gate-offline-queued.png``: a scanner enrolled with a server that does not answer, after
  two offline admissions: the status bar says offline and how many scans wait;
* ``scan-log.png``: the managers' scan log of the demo (this gate's scans and the other gates'
  admissions, with the counts per gate);
* ``gate-not-on-list.png``: a general admission ticket at the VIP gate, whose check-in list
  takes VIP tickets only: refused, with where it does enter;
* ``gate-zone-move.png``: a crew member inside the arena scanned at the stage door: admitted
  into backstage, out of the arena.

The camera is off (the demo shows "No camera" instead of a picture); the windows are drawn at
1280x800 logical pixels.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from msgspec.structs import replace
from PySide6.QtCore import QCoreApplication
from PySide6.QtWidgets import QApplication

from scanner_app.core.demo import DemoSetup
from scanner_app.core.store import LocalStore
from scanner_app.core.store.state import load_enrollment, save_enrollment
from scanner_app.ui.demo import prepare_demo
from scanner_app.ui.main_window import MainWindow

HERE = Path(__file__).parent
SIZE = (1280, 800)


def _wait(done: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: timed out waiting for {what}")
        QCoreApplication.processEvents()
        time.sleep(0.02)


def _settle(seconds: float = 0.5) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.02)


def _code(setup: DemoSetup, starts: str) -> str:
    for code in setup.codes:
        if code.label.startswith(starts):
            return code.code
    raise SystemExit(f"screenshots: no demo code labelled {starts!r}")


def _window(store: LocalStore, *, online: bool) -> MainWindow:
    window = MainWindow(store, camera=False, online=online, background_sync=online)
    window.resize(*SIZE)
    window.show()
    return window


def _scan(window: MainWindow, code: str, word: str, *, gate: str | None = None) -> None:
    if gate is not None:  # as the demo's code list does: the device moves there first
        window.bridge.move_to_gate(gate)
    window.bridge.scan_text(code)
    _wait(lambda: window.gate_screen.panel.look.word == word, f"the panel to say {word}")
    _settle()


def main() -> int:
    app = QApplication.instance() or QApplication(sys.argv)
    with tempfile.TemporaryDirectory() as tmp:
        setup = prepare_demo(Path(tmp) / "demo")
        store = LocalStore.open(setup.data_dir)
        window = _window(store, online=False)
        _settle(1.0)
        valid = _code(setup, "Valid")
        _scan(window, valid, "ADMIT")
        window.grab().save(str(HERE / "gate-admitted.png"))
        _scan(window, _code(setup, "Already used"), "STOP")
        window.grab().save(str(HERE / "gate-rejected.png"))
        vip = next(c for c in setup.codes if c.label.startswith("At the VIP gate"))
        _scan(window, vip.code, "STOP", gate=vip.gate)
        window.grab().save(str(HERE / "gate-not-on-list.png"))
        move = next(c for c in setup.codes if c.label.startswith("Arena to backstage"))
        _scan(window, move.code, "ADMIT", gate=move.gate)
        window.grab().save(str(HERE / "gate-zone-move.png"))
        window.tabs.setCurrentIndex(1)
        _wait(lambda: window.scan_log is not None, "the scan log")
        _settle(1.5)
        window.grab().save(str(HERE / "scan-log.png"))
        window.close()
        window.bridge.close()
        store.close()

        # The same demo, enrolled with a server that is not there (nothing listens on port 9).
        offline = prepare_demo(Path(tmp) / "offline")
        store = LocalStore.open(offline.data_dir)
        with store.write() as conn:
            enrollment = load_enrollment(conn)
            assert enrollment is not None
            save_enrollment(conn, replace(enrollment, server_url="http://127.0.0.1:9"))
        window = _window(store, online=True)
        _settle(1.0)
        _scan(window, _code(offline, "Valid"), "ADMIT")
        _scan(window, _code(offline, "Not on the list"), "CHECK")
        _wait(lambda: window.status_bar.queue_label.text() == "2 queued", "2 queued in the bar")
        _settle(1.5)
        window.grab().save(str(HERE / "gate-offline-queued.png"))
        window.close()
        window.bridge.close()
        store.close()
    del app
    for name in (
        "gate-admitted",
        "gate-rejected",
        "gate-not-on-list",
        "gate-zone-move",
        "gate-offline-queued",
        "scan-log",
    ):
        print(HERE / f"{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
