"""Cycles are collected on the GUI thread by the app's collector, not wherever Python's
automatic collection would strike (a worker thread destroying Qt objects crashes the app)."""

from __future__ import annotations

import gc
import weakref

from pytestqt.qtbot import QtBot

from scanner_app.ui.gc_guard import GuiThreadGarbageCollector


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_cycles_wait_for_the_gui_thread_and_are_collected_there(qtbot: QtBot) -> None:
    collector = GuiThreadGarbageCollector(interval_ms=10)
    try:
        probe = _Cycle()
        gone = weakref.ref(probe)
        del probe
        # Past generation 0's threshold: automatic collection would have freed the probe here.
        spares = [_Cycle() for _ in range(gc.get_threshold()[0] * 2)]
        assert gone() is not None
        qtbot.waitUntil(lambda: gone() is None, timeout=5_000)  # the timer, on this thread
        del spares
    finally:
        collector.stop()
        gc.disable()  # the session's collector (conftest) is still in charge, as in the app
