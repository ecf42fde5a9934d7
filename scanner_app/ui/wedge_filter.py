"""A handheld USB scanner works whatever widget has the focus.

A keyboard-wedge scanner types a code as a burst of key presses ending with Enter. Installed on
the ``QApplication``, ``WedgeFilter`` sees every key press meant for a widget of its window
before the widget does and hands the characters to ``WedgeParser`` (scanner_app.core.wedge):

- a finished burst (a ``Scan``) is swallowed — its keys never reach the focused widget, so the
  lookup field or the scan-log filter does not fill with 227 characters of ciphertext — and
  emitted as ``scanned``;
- keys a person typed (``TypedKeys``) are re-delivered, in order, to the widget they were meant
  for. They are held only while they could still start a burst: until the next key or for about
  ``max_gap`` (50 ms) after the last one, which a person does not notice;
- a scanner-speed burst without Enter (``IncompleteScan``) is dropped and reported as
  ``incomplete``: the scanner's suffix setting is wrong.

Timing comes from the key events' own timestamps (when the window system gave them), so a
moment where the GUI thread is busy does not make a person's queued keys look like a burst.
Events without a timestamp (synthetic ones) are timed on arrival.

Only printable characters, Enter and Tab (when a terminator) are examined; any other key
(arrows, Backspace, shortcuts with Ctrl or Alt) first releases what is held, then passes. The
filter stays out of the way while a modal dialog is open or another window is active, so the
enrollment and settings dialogs receive what is typed (or scanned) into them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication, QWidget
from shiboken6 import isValid

from scanner_app.core.wedge import (
    DEFAULT_MAX_GAP_S,
    DEFAULT_MIN_LENGTH,
    ENTER,
    TAB,
    IncompleteScan,
    Scan,
    TypedKeys,
    WedgeEvent,
    WedgeParser,
)

_ENTER_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter)
# Modifiers a scanner never sends (it types, at most, with Shift held).
_SHORTCUT_MODIFIERS = (
    Qt.KeyboardModifier.ControlModifier
    | Qt.KeyboardModifier.AltModifier
    | Qt.KeyboardModifier.MetaModifier
)
#: Extra wait past the parser's gap before held keys are released (timers are not exact).
RELEASE_MARGIN_MS = 30


class WedgeFilter(QObject):
    """Sorts keyboard input meant for ``scope`` (a window) into scans and typing."""

    #: A code the handheld scanner typed (without its terminator).
    scanned = Signal(str)
    #: A scanner-speed burst that ended without Enter: what came.
    incomplete = Signal(str)

    def __init__(
        self,
        scope: QWidget,
        *,
        terminators: Iterable[str] = (ENTER,),
        max_gap: float = DEFAULT_MAX_GAP_S,
        min_length: int = DEFAULT_MIN_LENGTH,
        clock: Callable[[], float] = time.monotonic,
        parent: QObject | None = None,
    ) -> None:
        """``terminators`` are the keys the scanner ends a code with (its suffix setting);
        ``max_gap`` and ``min_length`` tune what counts as a burst (see ``WedgeParser``)."""
        super().__init__(parent)
        self._scopes: list[QWidget] = [scope]
        self._terminators = frozenset(terminators)
        self._parser = WedgeParser(
            max_gap=max_gap, min_length=min_length, terminators=self._terminators
        )
        self._clock = clock
        # Keys the parser holds, with their events, oldest first.
        self._held: deque[tuple[QObject, QKeyEvent]] = deque()
        self._replaying = False
        self._release = QTimer(self)
        self._release.setSingleShot(True)
        self._release.timeout.connect(self.flush)

    # --- the filter ----------------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if self._replaying or event.type() != QEvent.Type.KeyPress:
            return False
        assert isinstance(event, QKeyEvent)
        if not self._in_scope(watched):
            return False
        text = self._key_text(event)
        if text is None:
            # Not a key a scanner types: whatever is held goes first, then this key.
            self.flush()
            return False
        stamp = event.timestamp()
        at = stamp / 1000 if stamp else self._clock()
        self._held.append((watched, QKeyEvent(event)))
        self._handle(self._parser.feed(text, at))
        if self._held:
            self._release.start(round(self._parser.max_gap * 1000) + RELEASE_MARGIN_MS)
        else:
            self._release.stop()
        return True

    def flush(self) -> None:
        """Release held keys now (no key came in time, focus moves, the window closes)."""
        self._release.stop()
        self._handle(self._parser.flush())

    def _in_scope(self, watched: QObject) -> bool:
        if QApplication.activeModalWidget() is not None or QApplication.activePopupWidget():
            return False
        if not isinstance(watched, QWidget):
            return False
        window = watched.window()
        return any(window is scope for scope in self._scopes)

    def add_scope(self, window: QWidget) -> None:
        """Also take scanner input meant for ``window`` (e.g. the demo codes window)."""
        self._scopes.append(window)

    def _key_text(self, event: QKeyEvent) -> str | None:
        if event.modifiers() & _SHORTCUT_MODIFIERS:
            return None
        if event.key() in _ENTER_KEYS:
            return ENTER
        if event.key() == Qt.Key.Key_Tab:
            return TAB if TAB in self._terminators else None
        text = event.text()
        if len(text) == 1 and text.isprintable():
            return text
        return None

    # --- what the parser decided ---------------------------------------------------------------

    def _handle(self, events: list[WedgeEvent]) -> None:
        for wedge_event in events:
            if isinstance(wedge_event, TypedKeys):
                self._replay(len(wedge_event.keys))
            elif isinstance(wedge_event, Scan):
                self._drop(len(wedge_event.text) + 1)
                self.scanned.emit(wedge_event.text)
            elif isinstance(wedge_event, IncompleteScan):
                self._drop(len(wedge_event.text))
                self.incomplete.emit(wedge_event.text)
        if self._parser.deadline is None:
            # Nothing held: any key left is a terminator the parser swallowed (the LF of a
            # CR LF suffix), which belongs to the scan before it.
            self._held.clear()

    def _drop(self, count: int) -> None:
        for _ in range(min(count, len(self._held))):
            self._held.popleft()

    def _replay(self, count: int) -> None:
        """Deliver ``count`` held keys, as typed, to the widgets they were meant for."""
        self._replaying = True
        try:
            for _ in range(min(count, len(self._held))):
                target, event = self._held.popleft()
                if isValid(target):
                    QApplication.sendEvent(target, event)
        finally:
            self._replaying = False
