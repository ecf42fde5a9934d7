"""The installed PySide6 keeps Python's reference counts straight through signal emits.
PySide6 6.12.0's ``SignalInstance.emit`` dropped a reference to ``True`` on every call, and on
Python 3.11 the interpreter aborted once ``True`` ran out (a camera emits 30 frames a second);
pyproject.toml excludes that release, and this test fails on any release with the same bug."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    happened = Signal(int)


def test_emits_leave_the_reference_count_of_true_alone() -> None:
    emitter = _Emitter()
    received: list[int] = []
    emitter.happened.connect(received.append)
    before = sys.getrefcount(True)
    emits = 500  # fewer than True's own references, so a leaking release fails here, not aborts
    for number in range(emits):
        emitter.happened.emit(number)
    assert len(received) == emits
    assert sys.getrefcount(True) >= before - 10
