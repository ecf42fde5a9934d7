"""The ticket code: what a ticket's QR code says, and how to read it back.

Format ``GH1`` + unpadded uppercase base32 of 140 bytes (227 characters; QR version 9 at
error level M in alphanumeric mode). Sign, then encrypt: the issuer signs the ticket's claims
with Ed25519, then seals claims and signature with AES-256-GCM. The byte layout, the threat model
and test vectors are in ``docs/ticket-code.md``.

``read_code`` is total: whatever it is given, it returns a ``TicketCode`` or a ``CodeRejection``
and never raises.
"""

from __future__ import annotations

import base64
import os
import re
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from cryptography.exceptions import InvalidSignature, InvalidTag

from shared.domain import VerdictReason
from shared.keys import IssuerKeyRing, ScannerKeyRing

PREFIX: Final = "GH1"
FORMAT_VERSION: Final = 1

# Signed claims: signing key id, ticket id, event id, secret version, issued at (unix seconds).
_CLAIMS: Final = struct.Struct(">I16s16sII")
_KEY_ID: Final = struct.Struct(">I")
SIGNATURE_BYTES: Final = 64
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
PLAINTEXT_BYTES: Final = _CLAIMS.size + SIGNATURE_BYTES  # 108
CODE_BYTES: Final = _KEY_ID.size + NONCE_BYTES + PLAINTEXT_BYTES + TAG_BYTES  # 140
BODY_CHARS: Final = CODE_BYTES * 8 // 5  # 224: 140 bytes is a whole number of base32 groups
CODE_CHARS: Final = len(PREFIX) + BODY_CHARS  # 227
UINT32_MAX: Final = 2**32 - 1

# Domain separation: a signature made for a ticket code means nothing anywhere else.
SIGNING_CONTEXT: Final = b"gatehouse/ticket-code/v1\x00"

# Anything this long is not a ticket code; don't spend time normalising megabytes of input.
_MAX_INPUT_CHARS: Final = 4096
# The version is the one digit after GH: the body may itself start with a digit (2-7).
_VERSIONED: Final = re.compile(r"GH([0-9])")
_BASE32: Final = re.compile(r"[A-Z2-7]+")

assert CODE_BYTES % 5 == 0, "the code must be a whole number of base32 groups (no padding)"


@dataclass(frozen=True, slots=True)
class TicketCode:
    """A code that decrypted under a known key and carries a valid issuer signature.

    That it is genuine says nothing yet about whether the ticket admits: status, event, secret
    version and earlier scans are the validator's business.
    """

    ticket_id: uuid.UUID
    event_id: uuid.UUID
    secret_version: int
    issued_at: datetime
    signing_key_id: int
    encryption_key_id: int


class RejectionKind(StrEnum):
    MALFORMED = "malformed"  # not the shape of a ticket code at all
    UNSUPPORTED_VERSION = "unsupported_version"  # GH2... from a newer issuer
    UNKNOWN_KEY = "unknown_key"  # encryption or signing key id not in this ring
    TAMPERED = "tampered"  # the AES-GCM tag does not match: altered or damaged
    BAD_SIGNATURE = "bad_signature"  # decrypts, but the issuer did not sign it (forged)


@dataclass(frozen=True, slots=True)
class CodeRejection:
    """Why a text is not a usable ticket code. ``detail`` is a sentence for logs and managers."""

    kind: RejectionKind
    detail: str

    @property
    def reason(self) -> VerdictReason:
        """The verdict reason gate staff see for this rejection."""
        if self.kind is RejectionKind.UNKNOWN_KEY:
            return VerdictReason.UNKNOWN_KEY
        return VerdictReason.INVALID_CODE


def issue_code(
    keys: IssuerKeyRing,
    *,
    ticket_id: uuid.UUID,
    event_id: uuid.UUID,
    secret_version: int,
    issued_at: datetime,
    nonce: bytes | None = None,
) -> str:
    """Mint the code text for a ticket with the ring's active keys.

    ``nonce`` exists only to reproduce published test vectors; leave it out, so that every code
    gets a fresh random nonce (reusing a nonce under one key breaks AES-GCM).

    Raises ``ValueError`` when a field does not fit the format (secret version or issue time
    outside 0..2**32-1, a naive datetime, a nonce of the wrong size).
    """
    if not 0 <= secret_version <= UINT32_MAX:
        raise ValueError(f"secret_version must fit in 32 bits, got {secret_version}")
    if issued_at.tzinfo is None:
        raise ValueError("issued_at must be timezone-aware")
    issued_seconds = int(issued_at.timestamp())
    if not 0 <= issued_seconds <= UINT32_MAX:
        raise ValueError(f"issued_at {issued_at.isoformat()} is outside 1970..2106")
    if nonce is None:
        nonce = os.urandom(NONCE_BYTES)
    elif len(nonce) != NONCE_BYTES:
        raise ValueError(f"nonce must be {NONCE_BYTES} bytes")

    signing = keys.active_signing_key
    encryption = keys.active_encryption_key
    claims = _CLAIMS.pack(
        signing.key_id, ticket_id.bytes, event_id.bytes, secret_version, issued_seconds
    )
    signature = signing.private_key.sign(SIGNING_CONTEXT + claims)
    header = _KEY_ID.pack(encryption.key_id)
    sealed = encryption.aead.encrypt(nonce, claims + signature, _aad(header))
    raw = header + nonce + sealed
    return PREFIX + base64.b32encode(raw).decode("ascii")


def read_code(keys: ScannerKeyRing, text: object) -> TicketCode | CodeRejection:
    """Decode, decrypt and verify a scanned text.

    Surrounding whitespace (a handheld scanner's Enter) and lower case (Caps Lock on a keyboard
    wedge) are forgiven; everything else must be exact. Never raises.
    """
    if not isinstance(text, str):
        return CodeRejection(RejectionKind.MALFORMED, "A ticket code is text.")
    if len(text) > _MAX_INPUT_CHARS:
        return CodeRejection(RejectionKind.MALFORMED, f"{len(text)} characters is far too long.")
    candidate = text.strip().upper()

    versioned = _VERSIONED.match(candidate)
    if versioned is None:
        return CodeRejection(RejectionKind.MALFORMED, "It does not start with GH and a version.")
    if versioned.group(1) != str(FORMAT_VERSION):
        return CodeRejection(
            RejectionKind.UNSUPPORTED_VERSION,
            f"Code format version {versioned.group(1)} is not supported by this software.",
        )
    body = candidate[len(PREFIX) :]
    if len(body) != BODY_CHARS:
        return CodeRejection(
            RejectionKind.MALFORMED,
            f"It has {len(body)} characters after {PREFIX}; a ticket code has {BODY_CHARS}.",
        )
    if _BASE32.fullmatch(body) is None:
        return CodeRejection(
            RejectionKind.MALFORMED, "It contains characters other than A-Z and 2-7."
        )
    raw = base64.b32decode(body)  # cannot fail: alphabet and length were checked above

    header, nonce, sealed = raw[:4], raw[4 : 4 + NONCE_BYTES], raw[4 + NONCE_BYTES :]
    (encryption_key_id,) = _KEY_ID.unpack(header)
    encryption = keys.encryption_key(encryption_key_id)
    if encryption is None:
        return CodeRejection(
            RejectionKind.UNKNOWN_KEY, f"Encryption key {encryption_key_id} is not known here."
        )
    try:
        plaintext = encryption.aead.decrypt(nonce, sealed, _aad(header))
    except InvalidTag:
        return CodeRejection(
            RejectionKind.TAMPERED, "The code was altered or damaged (its seal does not match)."
        )

    claims, signature = plaintext[: _CLAIMS.size], plaintext[_CLAIMS.size :]
    signing_key_id, ticket_id, event_id, secret_version, issued_seconds = _CLAIMS.unpack(claims)
    verify = keys.verify_key(signing_key_id)
    if verify is None:
        return CodeRejection(
            RejectionKind.UNKNOWN_KEY, f"Signing key {signing_key_id} is not known here."
        )
    try:
        verify.public_key.verify(signature, SIGNING_CONTEXT + claims)
    except InvalidSignature:
        return CodeRejection(
            RejectionKind.BAD_SIGNATURE, "The code is not signed by the issuer: it is forged."
        )
    return TicketCode(
        ticket_id=uuid.UUID(bytes=ticket_id),
        event_id=uuid.UUID(bytes=event_id),
        secret_version=secret_version,
        issued_at=datetime.fromtimestamp(issued_seconds, tz=UTC),
        signing_key_id=signing_key_id,
        encryption_key_id=encryption_key_id,
    )


def encryption_key_id_of(text: object) -> int | None:
    """The encryption key id a code names, without decrypting it; None when ``text`` is not
    shaped like a code of this format. Lets a server find which event's keys to read it with.
    """
    if not isinstance(text, str) or len(text) > _MAX_INPUT_CHARS:
        return None
    candidate = text.strip().upper()
    body = candidate[len(PREFIX) :]
    if not candidate.startswith(PREFIX) or len(body) != BODY_CHARS:
        return None
    if _BASE32.fullmatch(body) is None:
        return None
    # The key id is the first 4 bytes: the first 7 base32 characters hold 35 bits.
    (key_id,) = _KEY_ID.unpack(base64.b32decode(body[:8])[:4])
    return int(key_id)


def _aad(header: bytes) -> bytes:
    # The prefix and the key id are authenticated, so neither can be swapped undetected.
    return PREFIX.encode("ascii") + header
