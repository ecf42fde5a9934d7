"""Secrets at rest: sealed with AES-256-GCM under the master key from the environment — the
events' private key material and the tickets' name secrets. The associated data binds each
sealed blob to its row (tenant, event, kind, key id; tenant, ticket, secret version), so a blob
copied onto another row, or kept from an older secret version, does not open.

Secrets that are never stored (the events' peer-sync keys, ``peer_keys.py``) are derived from
the master key with HKDF-SHA256 (``MasterKey.derive``): the raw key never leaves this class."""

from __future__ import annotations

import os
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"
_NONCE_BYTES = 12
#: HKDF's salt for every derived key: fixed, so a derivation is a function of (master key, info).
_DERIVE_SALT = b"gatehouse/derive/v1"


class SealError(ValueError):
    """A sealed key does not open: wrong master key, or the row was altered."""


class MasterKey:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._aead = AESGCM(key)
        self._key = key

    def __repr__(self) -> str:
        return "MasterKey(…)"

    def derive(self, info: bytes, length: int = 32) -> bytes:
        """A secret of ``length`` bytes for ``info`` (HKDF-SHA256 of the master key): the same
        master key and ``info`` always give the same bytes; another ``info`` gives unrelated
        ones. ``info`` names the purpose and what the secret belongs to (``peer_keys.py``)."""
        return HKDF(algorithm=SHA256(), length=length, salt=_DERIVE_SALT, info=info).derive(
            self._key
        )

    def seal(
        self, secret: bytes, *, tenant_id: uuid.UUID, event_id: uuid.UUID, kind: str, key_id: int
    ) -> bytes:
        return self._seal(secret, _aad(tenant_id, event_id, kind, key_id))

    def open(
        self, sealed: bytes, *, tenant_id: uuid.UUID, event_id: uuid.UUID, kind: str, key_id: int
    ) -> bytes:
        return self._open(
            sealed,
            _aad(tenant_id, event_id, kind, key_id),
            what=f"{kind} key {key_id} of event {event_id}",
        )

    def seal_name_secret(
        self, secret: bytes, *, tenant_id: uuid.UUID, ticket_id: uuid.UUID, secret_version: int
    ) -> bytes:
        """A ticket's name secret for ``secret_version`` (see ``shared.holder_name``)."""
        return self._seal(secret, _name_aad(tenant_id, ticket_id, secret_version))

    def open_name_secret(
        self, sealed: bytes, *, tenant_id: uuid.UUID, ticket_id: uuid.UUID, secret_version: int
    ) -> bytes:
        """Raises ``SealError`` when it does not open — also when it was sealed for another
        secret version of the ticket (the holder changed since)."""
        return self._open(
            sealed,
            _name_aad(tenant_id, ticket_id, secret_version),
            what=f"the name secret of ticket {ticket_id} version {secret_version}",
        )

    def _seal(self, secret: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, secret, aad)

    def _open(self, sealed: bytes, aad: bytes, *, what: str) -> bytes:
        if sealed[:1] != _VERSION or len(sealed) < 1 + _NONCE_BYTES + 16:
            raise SealError(f"{what} is not sealed")
        nonce, box = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, box, aad)
        except InvalidTag as error:
            raise SealError(f"{what} does not open with this master key") from error


def _aad(tenant_id: uuid.UUID, event_id: uuid.UUID, kind: str, key_id: int) -> bytes:
    return b"gatehouse/key/v1|%s|%s|%s|%d" % (
        tenant_id.bytes.hex().encode(),
        event_id.bytes.hex().encode(),
        kind.encode(),
        key_id,
    )


def _name_aad(tenant_id: uuid.UUID, ticket_id: uuid.UUID, secret_version: int) -> bytes:
    return b"gatehouse/name-secret/v1|%s|%s|%d" % (
        tenant_id.bytes.hex().encode(),
        ticket_id.bytes.hex().encode(),
        secret_version,
    )
