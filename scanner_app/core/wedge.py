"""Codes from a handheld USB scanner that types them like a keyboard (a "keyboard wedge").

The scanner types a whole code in a burst — a few milliseconds between keys — and ends it with
Enter (or Tab, per its setup). A person types ten or more times slower. ``WedgeParser`` is fed
every key with its timestamp and sorts the keys into:

- ``Scan``: a burst of at least ``min_length`` characters, no gap longer than ``max_gap``
  between keys (the terminator included), ended by a terminator. The terminator is consumed;
  the text is exactly what was typed (Caps Lock lower case included: ``read_code`` forgives
  case and whitespace, so nothing is normalised here).
- ``TypedKeys``: keys a person typed, handed back in order so the UI can pass them on to the
  focused widget. Keys are held only while they could still be the start of a scan, i.e.
  until the next key or until ``max_gap`` has passed (call ``poll()`` then, see ``deadline``).
- ``IncompleteScan``: a burst of scanner speed and length that ended without a terminator (the
  scanner is set up without an Enter suffix, or was interrupted). No person types like that,
  so it is not handed back as typing (200 characters of ciphertext in a search box help nobody)
  and it is not a scan either (it may be cut short); the UI can tell staff to check the
  scanner's suffix setting.

A burst that ends without a terminator is typing when it is shorter than ``min_length`` (two
keys pressed together by a fast typist look like a short burst) or when it is one key repeated
(a key held down auto-repeats at scanner speed: Backspace held to clear a field).

Pure and deterministic: timestamps are whatever the caller's clock says (seconds, e.g. a
QKeyEvent's timestamp / 1000), so tests feed explicit times.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_GAP_S",
    "DEFAULT_MIN_LENGTH",
    "ENTER",
    "TAB",
    "IncompleteScan",
    "KeyPress",
    "Scan",
    "TypedKeys",
    "WedgeEvent",
    "WedgeParser",
]

ENTER = "\r"
TAB = "\t"
# Scanners end a code with CR, LF or CR LF depending on their setup; all mean Enter.
_ENTER_KEYS = frozenset({"\r", "\n"})

# USB HID scanners send a key every 1-15 ms; people rarely press two keys within 50 ms, and
# never eight in a row.
DEFAULT_MAX_GAP_S = 0.05
DEFAULT_MIN_LENGTH = 8


@dataclass(frozen=True, slots=True)
class KeyPress:
    """One typed character (or ``ENTER`` / ``TAB``) and when it was pressed, in seconds."""

    text: str
    at: float


@dataclass(frozen=True, slots=True)
class Scan:
    """A code the scanner typed, without its terminator."""

    text: str
    started_at: float
    ended_at: float


@dataclass(frozen=True, slots=True)
class TypedKeys:
    """Keys a person typed, in order: pass them on to whatever has the focus."""

    keys: tuple[KeyPress, ...]

    @property
    def text(self) -> str:
        return "".join(key.text for key in self.keys)


@dataclass(frozen=True, slots=True)
class IncompleteScan:
    """A scanner-speed burst that ended without a terminator; ``text`` is what came."""

    text: str
    started_at: float
    ended_at: float


WedgeEvent = Scan | TypedKeys | IncompleteScan


class WedgeParser:
    """Turns timestamped key presses into scans and typing (see the module docstring).

    ``terminators`` are the keys that end a scan: ``ENTER`` (CR or LF), ``TAB``, or both.
    A key's timestamp going backwards (a wrapped or reset clock) ends the current burst.
    """

    def __init__(
        self,
        *,
        max_gap: float = DEFAULT_MAX_GAP_S,
        min_length: int = DEFAULT_MIN_LENGTH,
        terminators: Iterable[str] = (ENTER,),
    ) -> None:
        """Raises ``ValueError`` for a non-positive ``max_gap`` or ``min_length``, or a
        terminator other than ``ENTER`` and ``TAB``."""
        if max_gap <= 0:
            raise ValueError("max_gap must be positive")
        if min_length < 1:
            raise ValueError("min_length must be at least 1")
        ends = set(terminators)
        if not ends or not ends <= {ENTER, TAB}:
            raise ValueError("terminators must be ENTER, TAB or both")
        self.max_gap = max_gap
        self.min_length = min_length
        self._terminators = frozenset((_ENTER_KEYS if ENTER in ends else set()) | ends)
        self._burst: list[KeyPress] = []
        self._scan_ended_at: float | None = None

    @property
    def deadline(self) -> float | None:
        """When to call ``poll()`` if no key comes first; ``None`` when nothing is held."""
        return self._burst[-1].at + self.max_gap if self._burst else None

    def feed(self, text: str, at: float) -> list[WedgeEvent]:
        """Take the key(s) typed at ``at``; return what they complete, in order.

        ``text`` is the key's text: one character, ``ENTER`` or ``TAB``. Keys without text
        (Shift, Caps Lock) give ``""`` and are ignored; several characters at once (an input
        method) count as keys pressed together. Never raises.
        """
        events: list[WedgeEvent] = []
        for char in text:
            events.extend(self._key(KeyPress(char, at)))
        return events

    def poll(self, now: float) -> list[WedgeEvent]:
        """Release the held keys if no key came for more than ``max_gap`` before ``now``."""
        if self._burst and now - self._burst[-1].at > self.max_gap:
            return self._timed_out()
        return []

    def flush(self) -> list[WedgeEvent]:
        """Release whatever is held now, as if the burst had timed out (focus change, close)."""
        return self._timed_out() if self._burst else []

    def _key(self, key: KeyPress) -> list[WedgeEvent]:
        events: list[WedgeEvent] = []
        if self._burst:
            gap = key.at - self._burst[-1].at
            if gap > self.max_gap or gap < 0:
                events.extend(self._timed_out())
        if key.text not in self._terminators:
            self._burst.append(key)
            return events
        if len(self._burst) >= self.min_length:
            events.append(Scan("".join(k.text for k in self._burst), self._burst[0].at, key.at))
            self._burst = []
            self._scan_ended_at = key.at
            return events
        ended = self._scan_ended_at
        if not self._burst and ended is not None and 0 <= key.at - ended <= self.max_gap:
            # The LF of a CR LF suffix (or a doubled suffix): still the scanner, not a person.
            self._scan_ended_at = key.at
            return events
        events.append(TypedKeys((*self._burst, key)))
        self._burst = []
        return events

    def _timed_out(self) -> list[WedgeEvent]:
        burst, self._burst = self._burst, []
        # One key repeated is a key held down (auto-repeat runs at scanner-like speed), e.g.
        # Backspace held to clear a field: that is typing, and must reach the field.
        if len(burst) >= self.min_length and len({k.text for k in burst}) > 1:
            return [IncompleteScan("".join(k.text for k in burst), burst[0].at, burst[-1].at)]
        return [TypedKeys(tuple(burst))]
