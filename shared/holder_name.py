"""A holder's name sealed for the gates: the server seals it under a key derived from the
ticket's *name secret*, which only the ticket's (GH2) code carries; a scanner stores the sealed
name as it came in the changes feed and opens it when that code is scanned. So neither the feed
nor a scanner's disk holds a name that anything but the ticket's own code opens.

Sealed form: a 12-byte random nonce, then AES-256-GCM of the UTF-8 name under
HKDF-SHA256(name secret, info = ``gatehouse/holder-name/v1``); the associated data binds it to
the ticket id and secret version, so a sealed name copied onto another ticket (or kept from
before a transfer) does not open.
"""

from __future__ import annotations

import os
import struct
import uuid
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO: Final = b"gatehouse/holder-name/v1"
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16
_VERSION: Final = struct.Struct(">I")


def _aead(name_secret: bytes) -> AESGCM:
    return AESGCM(HKDF(hashes.SHA256(), 32, salt=None, info=_INFO).derive(name_secret))


def _aad(ticket_id: uuid.UUID, secret_version: int) -> bytes:
    return _INFO + b"|" + ticket_id.bytes + _VERSION.pack(secret_version)


def seal_name(name_secret: bytes, name: str, *, ticket_id: uuid.UUID, secret_version: int) -> bytes:
    """``name`` sealed under ``name_secret`` for ``ticket_id`` at ``secret_version``."""
    nonce = os.urandom(_NONCE_BYTES)
    box = _aead(name_secret).encrypt(nonce, name.encode(), _aad(ticket_id, secret_version))
    return nonce + box


def open_name(
    name_secret: bytes | None,
    sealed: bytes | None,
    *,
    ticket_id: uuid.UUID,
    secret_version: int,
) -> str | None:
    """The sealed name, or None when there is no secret (a GH1 code), nothing sealed, or it
    does not open (another ticket's or version's seal, a damaged row). Never raises."""
    if not name_secret or not sealed or len(sealed) < _NONCE_BYTES + _TAG_BYTES:
        return None
    if not 0 <= secret_version <= 2**32 - 1:
        return None
    try:
        plain = _aead(name_secret).decrypt(
            sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _aad(ticket_id, secret_version)
        )
    except InvalidTag:
        return None
    return plain.decode(errors="replace")
