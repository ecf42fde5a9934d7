"""Private key material at rest: sealed with AES-256-GCM under the master key from the
environment. The associated data binds each sealed blob to its row (tenant, event, kind, key
id), so a blob copied onto another row does not open."""

from __future__ import annotations

import os
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"
_NONCE_BYTES = 12


class SealError(ValueError):
    """A sealed key does not open: wrong master key, or the row was altered."""


class MasterKey:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._aead = AESGCM(key)

    def seal(
        self, secret: bytes, *, tenant_id: uuid.UUID, event_id: uuid.UUID, kind: str, key_id: int
    ) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        aad = _aad(tenant_id, event_id, kind, key_id)
        return _VERSION + nonce + self._aead.encrypt(nonce, secret, aad)

    def open(
        self, sealed: bytes, *, tenant_id: uuid.UUID, event_id: uuid.UUID, kind: str, key_id: int
    ) -> bytes:
        if sealed[:1] != _VERSION or len(sealed) < 1 + _NONCE_BYTES + 16:
            raise SealError(f"{kind} key {key_id} of event {event_id} is not a sealed key")
        nonce, box = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, box, _aad(tenant_id, event_id, kind, key_id))
        except InvalidTag as error:
            raise SealError(
                f"{kind} key {key_id} of event {event_id} does not open with this master key"
            ) from error


def _aad(tenant_id: uuid.UUID, event_id: uuid.UUID, kind: str, key_id: int) -> bytes:
    return b"gatehouse/key/v1|%s|%s|%s|%d" % (
        tenant_id.bytes.hex().encode(),
        event_id.bytes.hex().encode(),
        kind.encode(),
        key_id,
    )
