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

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SALT_BYTES = 16
LOOKUP_BYTES = 16
_CONTEXT = b"gatehouse/scanner-cache/v1\x00"
_SEAL_CONTEXT = b"gatehouse/scanner-seal/v1\x00"
_NONCE_BYTES = 12


class SealError(ValueError):
    """Sealed bytes that do not open under this file's salt for this purpose."""


class Sealer:
    """Derives a ticket's row key (``lookup``) for one device's salt."""

    __slots__ = ("_prefix", "_seal_key")

    def __init__(self, salt: bytes) -> None:
        if len(salt) != SALT_BYTES:
            raise ValueError(f"the cache salt is {SALT_BYTES} bytes, not {len(salt)}")
        self._prefix = _CONTEXT + salt
        self._seal_key = hashlib.sha256(_SEAL_CONTEXT + salt).digest()

    @staticmethod
    def new_salt() -> bytes:
        return os.urandom(SALT_BYTES)

    def lookup(self, ticket_id: uuid.UUID) -> bytes:
        return hashlib.sha512(self._prefix + ticket_id.bytes).digest()[:LOOKUP_BYTES]

    def seal(self, purpose: bytes, secret: bytes) -> bytes:
        """``secret`` encrypted (AES-256-GCM) under a key derived from this file's salt, bound to
        ``purpose``: a sealed value copied into another file or another column does not open.
        The salt is in the same file, so this keeps a secret out of plain sight (a dump of one
        table, a log of rows), not from a thief of the whole data folder (docs/scanner.md)."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + AESGCM(self._seal_key).encrypt(nonce, secret, purpose)

    def unseal(self, purpose: bytes, sealed: bytes) -> bytes:
        """What ``seal`` sealed; raises ``SealError`` for anything else."""
        try:
            return AESGCM(self._seal_key).decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], purpose
            )
        except (InvalidTag, ValueError) as error:
            raise SealError("sealed bytes that do not open here") from error
