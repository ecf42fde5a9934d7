"""Trust between the gates of one event, and what they tell each other (docs/peer-sync.md).

The server is the issuer. For each event it derives an Ed25519 **issuer key** and a 32-byte
**event peer key** from its master key (never stored). A scanner makes its own Ed25519 key pair
at enrollment and sends the public half; the server answers a **certificate**: the device id,
tenant, event, gate, the device's public key and an expiry, signed by the event's issuer key.
Scanners receive the issuer's public key and the event peer key with the certificate.

What a gate tells the others is a **record**: one admission, exit or undo it made, numbered
by its own sequence (1, 2, 3, ... per device), so a peer's digest is one number per device.
A record travels as an **envelope**: the sender's certificate, then the record encrypted with
AES-256-GCM under the event peer key (an attacker on the venue network reads no ticket id,
gate or time), signed with the device's key. A peer opens an envelope only when the
certificate is the event's issuer's, for this tenant and event, not expired and not of a
revoked device, the signature is the certificate's key's, and the record names the
certificate's device and gate. Records are facts with ids: the same record received twice
(a replay, or by two paths) changes nothing. A relayed envelope keeps its origin's signature,
so a gate that relays cannot change what another gate said.

Every function here is total: malformed bytes are a ``Refusal`` naming why, never an
exception.
"""

from __future__ import annotations

import enum
import hashlib
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.keys import SigningKey, VerifyKey

#: The format of certificates, records and envelopes; a peer refuses another.
PROTOCOL: Final = 1
PEER_KEY_BYTES: Final = 32
PUBLIC_KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
NONCE_BYTES: Final = 12
#: The largest envelope a peer reads (a record is ~300 bytes sealed with its certificate).
MAX_ENVELOPE_BYTES: Final = 2048
MAX_GATE_CHARS: Final = 100
_CERT_DOMAIN: Final = b"gatehouse/peer-certificate/v1\x00"
_RECORD_DOMAIN: Final = b"gatehouse/peer-record/v1\x00"
_SUCCESSION_DOMAIN: Final = b"gatehouse/succession/v1\x00"


class RecordKind(enum.StrEnum):
    ADMISSION = "admission"
    EXIT = "exit"
    #: The gate undid one of its own admissions (``scan_id`` names it).
    UNDO = "undo"


class Refusal(enum.StrEnum):
    """Why an envelope was not taken: each a reason a peer counts, none an error."""

    MALFORMED = "malformed"
    WRONG_PROTOCOL = "wrong_protocol"
    NOT_ISSUED_HERE = "not_issued_here"  # the certificate's signature is not this issuer's
    OTHER_EVENT = "other_event"
    EXPIRED = "expired"
    REVOKED = "revoked"
    BAD_SIGNATURE = "bad_signature"
    UNREADABLE = "unreadable"  # does not decrypt under the event peer key
    NOT_ITS_OWN = "not_its_own"  # the record names another device or gate than its certificate


class Certificate(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """What the issuer vouches for: this public key is this device of this event, at this
    gate, until ``expires_at`` (Unix seconds)."""

    protocol: int
    device_id: uuid.UUID
    tenant_id: uuid.UUID
    event_id: uuid.UUID
    gate: str
    public_key: bytes
    issued_at: int
    expires_at: int


class SignedCertificate(msgspec.Struct, array_like=True, frozen=True):
    body: bytes
    signature: bytes


class Record(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """One thing a gate did, as it tells its peers. ``at_ms`` is the scan's time as the gate
    reckoned it (device clock plus its measured offset), Unix milliseconds."""

    origin: uuid.UUID
    seq: int
    kind: RecordKind
    scan_id: uuid.UUID
    ticket_id: uuid.UUID
    at_ms: int
    gate: str
    checkin_list_id: str | None = None
    zone: str | None = None


class Envelope(msgspec.Struct, array_like=True, frozen=True):
    protocol: int
    certificate: bytes
    nonce: bytes
    sealed: bytes
    signature: bytes


_encode = msgspec.msgpack.Encoder().encode
_cert_decoder = msgspec.msgpack.Decoder(Certificate)
_signed_decoder = msgspec.msgpack.Decoder(SignedCertificate)
_record_decoder = msgspec.msgpack.Decoder(Record)
_envelope_decoder = msgspec.msgpack.Decoder(Envelope)


def _unix(moment: datetime) -> int:
    return int(moment.timestamp())


# --- the issuer (server) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issuer:
    """The event's certificate issuer: the server derives its seed (``seed``) per event."""

    event_id: uuid.UUID
    tenant_id: uuid.UUID
    key: SigningKey = field(repr=False)

    @classmethod
    def from_seed(cls, seed: bytes, *, tenant_id: uuid.UUID, event_id: uuid.UUID) -> Issuer:
        return cls(event_id=event_id, tenant_id=tenant_id, key=SigningKey.from_seed(0, seed))

    @property
    def public_key(self) -> bytes:
        return self.key.verify_key().raw()

    def certify(
        self,
        *,
        device_id: uuid.UUID,
        gate: str,
        public_key: bytes,
        issued_at: datetime,
        expires_at: datetime,
    ) -> bytes:
        """The signed certificate (bytes) for a device's public key. Raises ``ValueError``
        for a public key that is not 32 bytes (the server checks what a device sent first)."""
        if len(public_key) != PUBLIC_KEY_BYTES:
            raise ValueError("a device's peer key is a 32-byte Ed25519 public key")
        body = _encode(
            Certificate(
                protocol=PROTOCOL,
                device_id=device_id,
                tenant_id=self.tenant_id,
                event_id=self.event_id,
                gate=gate,
                public_key=public_key,
                issued_at=_unix(issued_at),
                expires_at=_unix(expires_at),
            )
        )
        return _encode(
            SignedCertificate(body=body, signature=self.key.private_key.sign(_CERT_DOMAIN + body))
        )


# --- a device's own key ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """The device's peer signing key (made on the device; only its public half leaves it)."""

    key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> DeviceKey:
        """Raises ``ValueError`` unless ``seed`` is 32 bytes."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def seed(self) -> bytes:
        return self.key.private_bytes_raw()

    @property
    def public_key(self) -> bytes:
        return self.key.public_key().public_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a device needs to talk to its peers: its key, its certificate, and the event's
    issuer public key and peer key (from enrollment, renewed by every sync's GET /v1/devices/me)."""

    device_key: DeviceKey = field(repr=False)
    certificate: bytes
    issuer_public_key: bytes
    event_key: bytes = field(repr=False)

    def seal(self, record: Record) -> bytes:
        """The envelope of one of this device's records."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.event_key).encrypt(nonce, _encode(record), self.certificate)
        signature = self.device_key.sign(_signed_part(self.certificate, nonce, sealed))
        return _encode(
            Envelope(
                protocol=PROTOCOL,
                certificate=self.certificate,
                nonce=nonce,
                sealed=sealed,
                signature=signature,
            )
        )


def _signed_part(certificate: bytes, nonce: bytes, sealed: bytes) -> bytes:
    # Lengths first, so no two (certificate, nonce, sealed) triples sign the same bytes.
    return (
        _RECORD_DOMAIN
        + len(certificate).to_bytes(4, "big")
        + certificate
        + nonce
        + len(sealed).to_bytes(4, "big")
        + sealed
    )


# --- a peer's checks -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opened:
    """An envelope that passed every check: the record and who vouched for it."""

    record: Record
    certificate: Certificate
    #: The envelope as received, to store and relay unchanged.
    envelope: bytes


@dataclass(slots=True)
class Trust:
    """A gate's view of whom to believe: its event, the issuer's key, the event peer key and
    the devices the server reported revoked. Certificates already checked are remembered (by
    hash), so a busy peer's envelopes cost one signature check each, not two."""

    tenant_id: uuid.UUID
    event_id: uuid.UUID
    issuer_public_key: bytes
    event_key: bytes = field(repr=False)
    revoked: frozenset[uuid.UUID] = frozenset()
    _issuer: VerifyKey | None = field(default=None, init=False, repr=False)
    _checked: dict[bytes, tuple[Certificate, VerifyKey]] = field(
        default_factory=dict, init=False, repr=False
    )

    def certificate(self, blob: bytes, now: datetime) -> Certificate | Refusal:
        """A certificate this event's issuer signed, for a device not revoked, in date."""
        found = self._certificate(blob)
        if isinstance(found, Refusal):
            return found
        return self._current(found[0], now)

    def open(self, envelope: bytes, now: datetime) -> Opened | Refusal:
        """The record inside ``envelope`` when every check passes; else why not."""
        if not isinstance(envelope, bytes) or len(envelope) > MAX_ENVELOPE_BYTES:
            return Refusal.MALFORMED
        try:
            outer = _envelope_decoder.decode(envelope)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return Refusal.MALFORMED
        if outer.protocol != PROTOCOL:
            return Refusal.WRONG_PROTOCOL
        if len(outer.nonce) != NONCE_BYTES or len(outer.signature) != SIGNATURE_BYTES:
            return Refusal.MALFORMED
        found = self._certificate(outer.certificate)
        if isinstance(found, Refusal):
            return found
        certificate, device_key = found
        current = self._current(certificate, now)
        if isinstance(current, Refusal):
            return current
        if not device_key.verifies(
            outer.signature, _signed_part(outer.certificate, outer.nonce, outer.sealed)
        ):
            return Refusal.BAD_SIGNATURE
        try:
            plain = AESGCM(self.event_key).decrypt(outer.nonce, outer.sealed, outer.certificate)
            record = _record_decoder.decode(plain)
        except (InvalidTag, msgspec.DecodeError, msgspec.ValidationError):
            return Refusal.UNREADABLE
        if record.origin != certificate.device_id or record.gate != certificate.gate:
            return Refusal.NOT_ITS_OWN
        if record.seq < 1:
            return Refusal.MALFORMED
        return Opened(record=record, certificate=certificate, envelope=envelope)

    def _issuer_key(self) -> VerifyKey | None:
        if self._issuer is None:
            try:
                self._issuer = VerifyKey.from_bytes(0, self.issuer_public_key)
            except ValueError:
                return None
        return self._issuer

    def _certificate(self, blob: bytes) -> tuple[Certificate, VerifyKey] | Refusal:
        digest = hashlib.sha256(blob).digest()
        known = self._checked.get(digest)
        if known is not None:
            return known
        issuer = self._issuer_key()
        try:
            signed = _signed_decoder.decode(blob)
            certificate = _cert_decoder.decode(signed.body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return Refusal.MALFORMED
        if certificate.protocol != PROTOCOL:
            return Refusal.WRONG_PROTOCOL
        if len(signed.signature) != SIGNATURE_BYTES:
            return Refusal.MALFORMED
        if issuer is None or not issuer.verifies(signed.signature, _CERT_DOMAIN + signed.body):
            return Refusal.NOT_ISSUED_HERE
        if certificate.tenant_id != self.tenant_id or certificate.event_id != self.event_id:
            return Refusal.OTHER_EVENT
        if len(certificate.public_key) != PUBLIC_KEY_BYTES or not (
            0 < len(certificate.gate) <= MAX_GATE_CHARS
        ):
            return Refusal.MALFORMED
        try:
            device_key = VerifyKey.from_bytes(0, certificate.public_key)
        except ValueError:
            return Refusal.MALFORMED
        if len(self._checked) > 10_000:  # more devices than any event has: start over
            self._checked.clear()
        self._checked[digest] = (certificate, device_key)
        return certificate, device_key

    def _current(self, certificate: Certificate, now: datetime) -> Certificate | Refusal:
        if certificate.device_id in self.revoked:
            return Refusal.REVOKED
        if not certificate.issued_at - 300 <= _unix(now) < certificate.expires_at:
            return Refusal.EXPIRED
        return certificate


def succession_message(predecessor: uuid.UUID, peer_public_key: bytes | None, code: str) -> bytes:
    """What a gate enrolled again on the same computer signs with its previous enrollment's
    device key, so that the server lets the new device take over the old one's scans
    (``wire.Succession``, docs/operations.md "A scanner the server no longer knows"): the old
    device's id, the new device's peer public key and the enrollment code as sent. Bound to
    the code, so a signature seen once opens no other enrollment."""
    return b"".join(
        (
            _SUCCESSION_DOMAIN,
            predecessor.bytes,
            peer_public_key or b"",
            hashlib.sha256(code.encode()).digest(),
        )
    )


def verifies_succession(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s signature of ``message``. Total: a key or a
    signature of the wrong length or shape is ``False``."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        return VerifyKey.from_bytes(0, public_key).verifies(signature, message)
    except ValueError:
        return False


def read_certificate(blob: bytes) -> Certificate | None:
    """A certificate's contents without checking its signature (for showing and for a
    device to read its own); None when the bytes are not one."""
    try:
        return _cert_decoder.decode(_signed_decoder.decode(blob).body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
