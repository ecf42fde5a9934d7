"""``pyside_fixes``: PySide6 6.12's ``SignalInstance.emit`` loses a reference to ``True`` on
each call; after ``keep_bools_alive`` (the app and these tests call it first) more emits than
``True`` had references leave the interpreter standing."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal

from scanner_app.ui.pyside_fixes import keep_bools_alive


class _Emitter(QObject):
    happened = Signal(int)


def test_more_emits_than_true_had_references_do_not_free_it() -> None:
    keep_bools_alive()
    emitter = _Emitter()
    received: list[int] = []
    emitter.happened.connect(received.append)
    emits = 50_000  # True has ~20,000 references of its own in a test run
    for number in range(emits):
        emitter.happened.emit(number)
    assert len(received) == emits
    assert sys.getrefcount(True) > emits
