"""Enrollment codes: one-time, typed by a person or scanned from a QR code.

Shape ``ENR-XXXX-XXXX-XXXX``: 12 characters of Crockford's base32 (digits and upper-case
letters without I, L, O and U), 60 random bits. All of it fits QR alphanumeric mode. Reading is
forgiving, since people type these: case, dashes, spaces and other separators are ignored, the
``ENR`` prefix is optional, and the letters I, L and O count as the digits 1, 1 and 0 they are
mistaken for. Only the SHA-256 of the 12 characters is stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Final

PREFIX: Final = "ENR"
ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
BODY_CHARS: Final = 12  # 12 x 5 bits = 60 bits from `secrets`
GROUP_CHARS: Final = 4
_CONFUSABLE: Final = str.maketrans({"I": "1", "L": "1", "O": "0"})
_NOT_ALPHANUMERIC: Final = re.compile(r"[^0-9A-Z]+")
_BODY: Final = re.compile(f"[{ALPHABET}]{{{BODY_CHARS}}}")


def new_code() -> str:
    """A fresh code, grouped for reading aloud: ``ENR-7KQ2-M9XD-4WPA``."""
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_CHARS))
    groups = [body[i : i + GROUP_CHARS] for i in range(0, BODY_CHARS, GROUP_CHARS)]
    return "-".join([PREFIX, *groups])


def normalise(text: str) -> str | None:
    """The code's 12 characters in canonical form, or None when ``text`` cannot be a code."""
    compact = _NOT_ALPHANUMERIC.sub("", text.upper())
    if len(compact) == len(PREFIX) + BODY_CHARS and compact.startswith(PREFIX):
        compact = compact[len(PREFIX) :]
    compact = compact.translate(_CONFUSABLE)
    return compact if _BODY.fullmatch(compact) else None


def code_hash(text: str) -> bytes | None:
    """What the database keeps of a code: SHA-256 of its canonical form (None if no code)."""
    body = normalise(text)
    if body is None:
        return None
    return hashlib.sha256(body.encode("ascii")).digest()
