"""How the scanner's cache keys its ticket rows without listing ticket ids.

A scanner carries the whole ticket list of its event, and scanners get lost. So a ticket row is
found by ``lookup`` = the first 16 bytes of SHA-512(context ‖ salt ‖ ticket id), never by the id;
the salt is random per device, so rows of two devices cannot be matched with each other.

The row's *personal* data — the holder's name — is not sealed here at all: it arrives from the
server already sealed under a key derived from the ticket's name secret (``shared.holder_name``),
which only the ticket's GH2 code carries, and is stored exactly as received. Nothing on the
device derives that key from what is in the file or from public data: a thief with the file and
a list of ticket ids learns those tickets' statuses, not their holders. What a thief can learn
is written down in docs/scanner.md.
"""

from __future__ import annotations

import hashlib
import os
import uuid

SALT_BYTES = 16
LOOKUP_BYTES = 16
_CONTEXT = b"gatehouse/scanner-cache/v1\x00"


class Sealer:
    """Derives a ticket's row key (``lookup``) for one device's salt."""

    __slots__ = ("_prefix",)

    def __init__(self, salt: bytes) -> None:
        if len(salt) != SALT_BYTES:
            raise ValueError(f"the cache salt is {SALT_BYTES} bytes, not {len(salt)}")
        self._prefix = _CONTEXT + salt

    @staticmethod
    def new_salt() -> bytes:
        return os.urandom(SALT_BYTES)

    def lookup(self, ticket_id: uuid.UUID) -> bytes:
        return hashlib.sha512(self._prefix + ticket_id.bytes).digest()[:LOOKUP_BYTES]
