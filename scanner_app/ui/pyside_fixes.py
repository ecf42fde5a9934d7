"""A work-around for a reference-counting bug in PySide6 6.12: ``SignalInstance.emit`` returns
``True`` (or ``False``) without owning a reference to it, so every emit anywhere in the process
takes one reference away from ``True``. ``True`` starts with some ten thousand; a camera emits a
frame 30 times a second, so within minutes (or at the end of a long test run, while the
interpreter shuts down) its count reaches zero and Python aborts with "Fatal Python error:
bool_dealloc: deallocating True or False".

``True`` and ``False`` are never freed, so Python 3.12 makes them immortal. On older Pythons this
module does the same by hand: it gives each of them 2**40 references up front, more than a
device can lose in its lifetime. On 3.12 and later it does nothing. Remove it once the app
requires a PySide6 without the bug.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["keep_bools_alive"]

#: References given to ``True`` and ``False``: ~10**12 emits before they could run out.
_SPARE_REFERENCES = 1 << 40


def keep_bools_alive() -> None:
    """Make ``True`` and ``False`` as good as immortal (see the module docstring). Call once,
    before the first signal is emitted; calling again does no harm."""
    if sys.version_info >= (3, 12):
        return  # immortal already
    for value in (True, False):
        count = ctypes.c_ssize_t.from_address(id(value))  # ob_refcnt, the object's first field
        if count.value < _SPARE_REFERENCES:
            count.value += _SPARE_REFERENCES
