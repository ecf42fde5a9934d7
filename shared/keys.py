"""Ticket-code keys and the two key rings that make the trust split explicit.

* ``IssuerKeyRing`` (server only) holds Ed25519 **signing** keys and AES-256-GCM **encryption**
  keys. It can mint codes.
* ``ScannerKeyRing`` (what an enrolled scanner receives) holds the matching Ed25519 **verify**
  keys and the encryption keys. It can read and check codes, but it has no signing key, so a
  stolen scanner cannot mint a code that other scanners would accept.

Every key has a 32-bit id, so several keys can be valid at once: rotation adds a new active key
and keeps the old ones until they are retired. A GH1 code names its encryption key id in clear; a
GH2 code carries only a blinded per-code hint (``EncryptionKey.hint``), and both formats name
the signing key inside the sealed part.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey as _SodiumVerifyKey

from shared import wire

KEY_ID_MAX = 2**32 - 1
ENCRYPTION_KEY_BYTES = 32  # AES-256
SIGNING_SEED_BYTES = 32  # Ed25519 private key (RFC 8032 seed)
VERIFY_KEY_BYTES = 32
#: Bytes of a code's blinded key hint (format GH2): ``hint(nonce)`` of the key that sealed it.
KEY_HINT_BYTES = 8
_HINT_KEY_INFO = b"gatehouse/ticket-code/v2/key-hint"


class KeyMaterialError(ValueError):
    """Key material that cannot be used: wrong length, duplicate or out-of-range id."""


def _check_key_id(key_id: int) -> int:
    if not isinstance(key_id, int) or not 0 <= key_id <= KEY_ID_MAX:
        raise KeyMaterialError(f"a key id is a whole number from 0 to {KEY_ID_MAX}, not {key_id!r}")
    return key_id


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """An Ed25519 public key that checks the issuer's signature.

    ``verifies`` checks with libsodium (PyNaCl), about twice as fast as OpenSSL through
    ``cryptography`` on our CPUs (docs/benchmarks.md, Notes); everything else about the key
    stays with ``cryptography``.
    """

    key_id: int
    public_key: Ed25519PublicKey = field(repr=False, compare=False)
    _sodium: _SodiumVerifyKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_key_id(self.key_id)
        object.__setattr__(self, "_sodium", _SodiumVerifyKey(self.raw()))

    def verifies(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``message`` (RFC 8032;
        libsodium also refuses non-canonical and small-order encodings). Never raises for a
        64-byte signature."""
        try:
            self._sodium.verify(message, signature)
        except BadSignatureError:
            return False
        return True

    @classmethod
    def from_bytes(cls, key_id: int, raw: bytes) -> VerifyKey:
        if len(raw) != VERIFY_KEY_BYTES:
            raise KeyMaterialError(
                f"verify key {key_id} is {len(raw)} bytes; an Ed25519 public key is 32"
            )
        return cls(key_id, Ed25519PublicKey.from_public_bytes(raw))

    def raw(self) -> bytes:
        return self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 private key. Only the issuer (the server) ever holds one."""

    key_id: int
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_key_id(self.key_id)

    @classmethod
    def generate(cls, key_id: int) -> SigningKey:
        return cls(key_id, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, key_id: int, seed: bytes) -> SigningKey:
        if len(seed) != SIGNING_SEED_BYTES:
            raise KeyMaterialError(f"signing key {key_id} seed is {len(seed)} bytes; it must be 32")
        return cls(key_id, Ed25519PrivateKey.from_private_bytes(seed))

    def seed(self) -> bytes:
        """The 32-byte private seed, for storing the key (encrypted) at rest."""
        return self.private_key.private_bytes_raw()

    def verify_key(self) -> VerifyKey:
        return VerifyKey(self.key_id, self.private_key.public_key())


@dataclass(frozen=True, slots=True)
class EncryptionKey:
    """A 256-bit AES-GCM key. Issuer and enrolled scanners share it."""

    key_id: int
    secret: bytes = field(repr=False)
    aead: AESGCM = field(init=False, repr=False, compare=False)
    _hint_key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_key_id(self.key_id)
        if len(self.secret) != ENCRYPTION_KEY_BYTES:
            raise KeyMaterialError(
                f"encryption key {self.key_id} is {len(self.secret)} bytes; AES-256 needs 32"
            )
        # One cipher object per key: building it per code would cost more than the decryption.
        object.__setattr__(self, "aead", AESGCM(self.secret))
        # A separate key for the blinded hints, so the AES key is used for nothing else.
        hint_key = HKDF(hashes.SHA256(), 32, salt=None, info=_HINT_KEY_INFO).derive(self.secret)
        object.__setattr__(self, "_hint_key", hint_key)

    def hint(self, nonce: bytes) -> bytes:
        """The blinded hint a GH2 code sealed with this key and ``nonce`` carries in clear: a
        keyed hash of the random nonce, so it differs per code and says nothing about the key
        (or the event) to anyone without the key, while a holder of the key recognises it."""
        return hmac.digest(self._hint_key, nonce, "sha256")[:KEY_HINT_BYTES]

    @classmethod
    def generate(cls, key_id: int) -> EncryptionKey:
        return cls(key_id, AESGCM.generate_key(bit_length=256))


_K = TypeVar("_K", VerifyKey, SigningKey, EncryptionKey)


def _index(keys: Iterable[_K], what: str) -> dict[int, _K]:
    by_id: dict[int, _K] = {}
    for key in keys:
        if key.key_id in by_id:
            raise KeyMaterialError(f"two {what} keys share the id {key.key_id}")
        by_id[key.key_id] = key
    return by_id


def _fresh_id(taken: Iterable[int]) -> int:
    used = set(taken)
    while True:
        candidate = secrets.randbelow(KEY_ID_MAX) + 1
        if candidate not in used:
            return candidate


class ScannerKeyRing:
    """The keys a scanner may hold: verify keys and encryption keys, never a signing key."""

    # Immutable once made (merging makes a new ring), so what a ring read once it reads alike
    # again: shared.ticket_code remembers recent reads per ring, by a weak reference to it.
    __slots__ = ("__weakref__", "_encryption", "_verify")

    def __init__(
        self,
        verify_keys: Iterable[VerifyKey] = (),
        encryption_keys: Iterable[EncryptionKey] = (),
    ) -> None:
        self._verify = _index(verify_keys, "verify")
        self._encryption = _index(encryption_keys, "encryption")

    def verify_key(self, key_id: int) -> VerifyKey | None:
        return self._verify.get(key_id)

    def encryption_key(self, key_id: int) -> EncryptionKey | None:
        return self._encryption.get(key_id)

    @property
    def verify_key_ids(self) -> frozenset[int]:
        return frozenset(self._verify)

    @property
    def encryption_key_ids(self) -> frozenset[int]:
        return frozenset(self._encryption)

    @property
    def encryption_keys(self) -> tuple[EncryptionKey, ...]:
        return tuple(self._encryption.values())

    def merged(self, other: ScannerKeyRing) -> ScannerKeyRing:
        """This ring plus the keys of ``other`` (``other`` wins where an id is in both)."""
        return ScannerKeyRing(
            {**self._verify, **other._verify}.values(),
            {**self._encryption, **other._encryption}.values(),
        )

    def to_wire(self) -> wire.ScannerKeys:
        return wire.ScannerKeys(
            verify_keys=[wire.KeyBytes(k.key_id, k.raw()) for k in self._verify.values()],
            encryption_keys=[wire.KeyBytes(k.key_id, k.secret) for k in self._encryption.values()],
        )

    @classmethod
    def from_wire(cls, keys: wire.ScannerKeys) -> ScannerKeyRing:
        """Raises ``KeyMaterialError`` when a key has the wrong size or an id appears twice."""
        return cls(
            (VerifyKey.from_bytes(k.key_id, k.key) for k in keys.verify_keys),
            (EncryptionKey(k.key_id, k.key) for k in keys.encryption_keys),
        )


class IssuerKeyRing:
    """The issuer's keys: signing keys (private) and encryption keys, with one of each active.

    New codes use the active keys; codes made with older keys in the ring still read.
    """

    __slots__ = ("_active_encryption", "_active_signing", "_encryption", "_signing", "scanner_ring")

    def __init__(
        self,
        signing_keys: Iterable[SigningKey],
        encryption_keys: Iterable[EncryptionKey],
        *,
        active_signing_id: int,
        active_encryption_id: int,
    ) -> None:
        self._signing = _index(signing_keys, "signing")
        self._encryption = _index(encryption_keys, "encryption")
        if active_signing_id not in self._signing:
            raise KeyMaterialError(f"the active signing key {active_signing_id} is not in the ring")
        if active_encryption_id not in self._encryption:
            raise KeyMaterialError(
                f"the active encryption key {active_encryption_id} is not in the ring"
            )
        self._active_signing = active_signing_id
        self._active_encryption = active_encryption_id
        #: What enrolled scanners get; also what the server reads codes with.
        self.scanner_ring = ScannerKeyRing(
            (k.verify_key() for k in self._signing.values()), self._encryption.values()
        )

    @classmethod
    def generate(cls) -> IssuerKeyRing:
        """A ring with one fresh signing key and one fresh encryption key."""
        signing = SigningKey.generate(_fresh_id(()))
        encryption = EncryptionKey.generate(_fresh_id(()))
        return cls(
            [signing],
            [encryption],
            active_signing_id=signing.key_id,
            active_encryption_id=encryption.key_id,
        )

    @property
    def active_signing_key(self) -> SigningKey:
        return self._signing[self._active_signing]

    @property
    def active_encryption_key(self) -> EncryptionKey:
        return self._encryption[self._active_encryption]

    @property
    def signing_keys(self) -> tuple[SigningKey, ...]:
        return tuple(self._signing.values())

    @property
    def encryption_keys(self) -> tuple[EncryptionKey, ...]:
        return tuple(self._encryption.values())

    def rotated(self) -> IssuerKeyRing:
        """A ring whose new codes use fresh keys, while codes from the current keys still read."""
        signing = SigningKey.generate(_fresh_id(self._signing))
        encryption = EncryptionKey.generate(_fresh_id(self._encryption))
        return IssuerKeyRing(
            [*self._signing.values(), signing],
            [*self._encryption.values(), encryption],
            active_signing_id=signing.key_id,
            active_encryption_id=encryption.key_id,
        )

    def retired(
        self, *, signing_ids: Iterable[int] = (), encryption_ids: Iterable[int] = ()
    ) -> IssuerKeyRing:
        """A ring without the given keys: codes made with them stop reading (``unknown_key``).

        Raises ``KeyMaterialError`` when asked to retire an active key.
        """
        drop_signing, drop_encryption = set(signing_ids), set(encryption_ids)
        return IssuerKeyRing(
            [k for k in self._signing.values() if k.key_id not in drop_signing],
            [k for k in self._encryption.values() if k.key_id not in drop_encryption],
            active_signing_id=self._active_signing,
            active_encryption_id=self._active_encryption,
        )
