"""Keeping personal data off the scanner's disk in readable form.

A scanner carries the whole guest list of its event, and scanners get lost. So the cache never
stores a ticket id or a holder's name in clear:

* a ticket row is found by ``lookup`` = the first 16 bytes of SHA-512(salt ‖ ticket id);
* the holder's name is sealed with AES-256-GCM under the next 32 bytes of that hash.

The ticket id is the secret: it is inside the ticket's encrypted code and nowhere else on the
device (ids are UUIDv7, 74 random bits: not guessable). Whoever holds a code — the gate that
scans it — can find the row and open the name; a thief with the disk sees hashes and sealed
blobs. The salt is random per device, so rows of two devices cannot be matched with each
other. What a thief *can* learn is written down in docs/scanner.md.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SALT_BYTES = 16
LOOKUP_BYTES = 16
_NONCE_BYTES = 12
_CONTEXT = b"gatehouse/scanner-cache/v1\x00"


@dataclass(frozen=True, slots=True)
class TicketSeal:
    """What a ticket id yields on this device: its row key and the key of its personal data."""

    lookup: bytes
    key: bytes

    def seal(self, text: str | None) -> bytes | None:
        if text is None:
            return None
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + AESGCM(self.key).encrypt(nonce, text.encode(), self.lookup)

    def open(self, sealed: bytes | None) -> str | None:
        """The sealed text, or None when there is none or it does not open (damaged row)."""
        if not sealed or len(sealed) <= _NONCE_BYTES:
            return None
        try:
            plain = AESGCM(self.key).decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], self.lookup
            )
        except InvalidTag:
            return None
        return plain.decode(errors="replace")


class Sealer:
    """Derives ``TicketSeal``s for one device's salt."""

    __slots__ = ("_prefix",)

    def __init__(self, salt: bytes) -> None:
        if len(salt) != SALT_BYTES:
            raise ValueError(f"the cache salt is {SALT_BYTES} bytes, not {len(salt)}")
        self._prefix = _CONTEXT + salt

    @staticmethod
    def new_salt() -> bytes:
        return os.urandom(SALT_BYTES)

    def for_ticket(self, ticket_id: uuid.UUID) -> TicketSeal:
        digest = hashlib.sha512(self._prefix + ticket_id.bytes).digest()
        return TicketSeal(
            lookup=digest[:LOOKUP_BYTES], key=digest[LOOKUP_BYTES : LOOKUP_BYTES + 32]
        )

    def lookup(self, ticket_id: uuid.UUID) -> bytes:
        return hashlib.sha512(self._prefix + ticket_id.bytes).digest()[:LOOKUP_BYTES]
