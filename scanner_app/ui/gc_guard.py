"""Python's garbage collector runs on whichever thread happens to allocate when a threshold is
crossed. In this app that is often a worker (the gate thread, the status reader, the camera
pipeline), and a collection there can destroy Qt objects that belong to the GUI thread — which
crashes the process (seen: a segmentation fault "Garbage-collecting" on the status thread while
the window opened). So automatic collection is switched off and the same thresholds are checked
on the GUI thread by a timer, as Qt applications in Python commonly do: reference counting still
frees almost everything at once; only cycles wait for the next tick.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

#: How often the GUI thread checks whether a collection is due.
CHECK_MS = 500


class GuiThreadGarbageCollector(QObject):
    """Collects cycles on the GUI thread only, while it exists (``stop()`` hands collection back
    to Python)."""

    def __init__(self, parent: QObject | None = None, *, interval_ms: int = CHECK_MS) -> None:
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(interval_ms)
        gc.disable()

    def check(self) -> int:
        """Collect the oldest generation whose threshold is crossed; objects collected."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        due = [generation for generation in range(3) if counts[generation] > thresholds[generation]]
        return gc.collect(due[-1]) if due else 0

    def stop(self) -> None:
        self._timer.stop()
        gc.enable()
