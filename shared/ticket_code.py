"""The ticket code: what a ticket's QR code says, and how to read it back.

Format ``GH2`` + unpadded uppercase base32 of 160 bytes (259 characters; QR version 9 at
error level M in alphanumeric mode). Sign, then encrypt: the issuer signs the ticket's claims
(with a per-ticket *name secret*, the key to the holder's name) with Ed25519, then seals claims
and signature with AES-256-GCM. In clear, a GH2 code carries only a blinded per-code key hint,
so two codes of one event share nothing that names it. ``GH1`` codes (140 bytes, the encryption
key id in clear, no name secret) keep reading. The byte layouts, the threat model and test
vectors are in ``docs/ticket-code.md``.

``read_code`` is total: whatever it is given, it returns a ``TicketCode`` or a ``CodeRejection``
and never raises.
"""

from __future__ import annotations

import base64
import os
import re
import struct
import threading
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from cryptography.exceptions import InvalidTag

from shared.domain import VerdictReason
from shared.keys import KEY_HINT_BYTES, EncryptionKey, IssuerKeyRing, ScannerKeyRing

#: Every code starts with these two letters and one version digit.
MARK: Final = "GH"
FORMAT_VERSION: Final = 2  # what ``issue_code`` makes
PREFIX: Final = "GH2"
PREFIX_V1: Final = "GH1"

# Signed claims of GH1: signing key id, ticket id, event id, secret version, issued at.
_CLAIMS_V1: Final = struct.Struct(">I16s16sII")
# GH2 adds the ticket's name secret (the key to its holder's name, see shared.holder_name).
_CLAIMS: Final = struct.Struct(">I16s16sII16s")
_KEY_ID: Final = struct.Struct(">I")
NAME_SECRET_BYTES: Final = 16
SIGNATURE_BYTES: Final = 64
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
HINT_BYTES: Final = KEY_HINT_BYTES  # 8
PLAINTEXT_BYTES: Final = _CLAIMS.size + SIGNATURE_BYTES  # 124
CODE_BYTES: Final = HINT_BYTES + NONCE_BYTES + PLAINTEXT_BYTES + TAG_BYTES  # 160
BODY_CHARS: Final = CODE_BYTES * 8 // 5  # 256: 160 bytes is a whole number of base32 groups
CODE_CHARS: Final = len(PREFIX) + BODY_CHARS  # 259
PLAINTEXT_BYTES_V1: Final = _CLAIMS_V1.size + SIGNATURE_BYTES  # 108
CODE_BYTES_V1: Final = _KEY_ID.size + NONCE_BYTES + PLAINTEXT_BYTES_V1 + TAG_BYTES  # 140
BODY_CHARS_V1: Final = CODE_BYTES_V1 * 8 // 5  # 224
CODE_CHARS_V1: Final = len(PREFIX_V1) + BODY_CHARS_V1  # 227
UINT32_MAX: Final = 2**32 - 1

# Domain separation: a signature made for a ticket code means nothing anywhere else, and one
# made for a GH1 code means nothing for a GH2 code.
SIGNING_CONTEXT: Final = b"gatehouse/ticket-code/v2\x00"
SIGNING_CONTEXT_V1: Final = b"gatehouse/ticket-code/v1\x00"

# Anything this long is not a ticket code; don't spend time normalising megabytes of input.
_MAX_INPUT_CHARS: Final = 4096
# The version is the one digit after GH: the body may itself start with a digit (2-7).
_VERSIONED: Final = re.compile(r"GH([0-9])")
_BASE32: Final = re.compile(r"[A-Z2-7]+")
# RFC 4648 base32 digit values written as Python's base-32 digits (0-9a-v, "base32hex"), so that
# ``int(text, 32)`` reads a checked body in one C call: the standard library's b32decode is
# pure Python (about 18 µs for a GH2 body against about 1.5 µs this way).
_AS_BASE32HEX: Final = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789abcdefghijklmnopqrstuv"
)
_BODY_CHARS: Final = {1: BODY_CHARS_V1, 2: BODY_CHARS}

#: How many recent valid codes each key ring remembers (under 1 KB each with its text, so about
#: 1.7 MB a ring at most): a re-scan at a gate, the server's 409 for a code already used and
#: the upload of scans already checked online read the same text again and skip the decryption
#: and the signature.
READ_CACHE_SIZE: Final = 2048

assert CODE_BYTES % 5 == 0, "the code must be a whole number of base32 groups (no padding)"
assert CODE_BYTES_V1 % 5 == 0, "the code must be a whole number of base32 groups (no padding)"


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
    #: The key to the holder's name in the changes feed (``shared.holder_name``); None for a
    #: GH1 code, which carries none.
    name_secret: bytes | None = field(default=None, repr=False)


class RejectionKind(StrEnum):
    MALFORMED = "malformed"  # not the shape of a ticket code at all
    UNSUPPORTED_VERSION = "unsupported_version"  # GH3... from a newer issuer
    UNKNOWN_KEY = "unknown_key"  # encryption key (id or hint) or signing key id not in the ring
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
    name_secret: bytes | None = None,
    nonce: bytes | None = None,
    version: int = FORMAT_VERSION,
) -> str:
    """Mint the code text for a ticket with the ring's active keys, in format GH2.

    ``name_secret`` is the ticket's key to its holder's name (``NAME_SECRET_BYTES``); the server
    passes the one it keeps for the ticket's secret version. Left out, a random one is drawn (a
    code whose name no feed seals under it: fine for tests and benchmarks). ``nonce`` exists
    only to reproduce published test vectors; leave it out, so that every code gets a fresh
    random nonce (reusing a nonce under one key breaks AES-GCM). ``version=1`` makes a GH1 code
    (no name secret), only to reproduce the GH1 vectors and test that old codes keep reading.

    Raises ``ValueError`` when a field does not fit the format (secret version or issue time
    outside 0..2**32-1, a naive datetime, a nonce or name secret of the wrong size).
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
    if version == 1:
        if name_secret is not None:
            raise ValueError("a GH1 code carries no name secret")
        claims = _CLAIMS_V1.pack(
            signing.key_id, ticket_id.bytes, event_id.bytes, secret_version, issued_seconds
        )
        signature = signing.private_key.sign(SIGNING_CONTEXT_V1 + claims)
        header = _KEY_ID.pack(encryption.key_id)
        sealed = encryption.aead.encrypt(nonce, claims + signature, _aad(PREFIX_V1, header))
        return PREFIX_V1 + base64.b32encode(header + nonce + sealed).decode("ascii")
    if version != FORMAT_VERSION:
        raise ValueError(f"this software issues code formats 1 and 2, not {version}")
    if name_secret is None:
        name_secret = new_name_secret()
    elif len(name_secret) != NAME_SECRET_BYTES:
        raise ValueError(f"name_secret must be {NAME_SECRET_BYTES} bytes")
    claims = _CLAIMS.pack(
        signing.key_id, ticket_id.bytes, event_id.bytes, secret_version, issued_seconds, name_secret
    )
    signature = signing.private_key.sign(SIGNING_CONTEXT + claims)
    hint = encryption.hint(nonce)
    sealed = encryption.aead.encrypt(nonce, claims + signature, _aad(PREFIX, hint))
    return PREFIX + base64.b32encode(hint + nonce + sealed).decode("ascii")


def new_name_secret() -> bytes:
    """A fresh random name secret for a ticket's new secret version."""
    return os.urandom(NAME_SECRET_BYTES)


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
    version = int(versioned.group(1))
    body_chars = _BODY_CHARS.get(version)
    if body_chars is None:
        return CodeRejection(
            RejectionKind.UNSUPPORTED_VERSION,
            f"Code format version {version} is not supported by this software.",
        )
    prefix = candidate[:3]
    body = candidate[3:]
    if len(body) != body_chars:
        return CodeRejection(
            RejectionKind.MALFORMED,
            f"It has {len(body)} characters after {prefix}; a ticket code has {body_chars}.",
        )
    if _BASE32.fullmatch(body) is None:
        return CodeRejection(
            RejectionKind.MALFORMED, "It contains characters other than A-Z and 2-7."
        )
    recent = _RECENT.get(keys)
    if recent is not None and (known := recent.get(candidate)) is not None:
        return known
    raw = _decode_base32(body, body_chars * 5 // 8)
    result = _read_v1(keys, raw) if version == 1 else _read_v2(keys, raw)
    if isinstance(result, TicketCode):
        _RECENT.setdefault(keys, _RecentReads()).put(candidate, result)
    return result


class _RecentReads:
    """The last ``READ_CACHE_SIZE`` valid codes one key ring read, by their normalised text.

    Safe because reading is a pure function of the ring and that text, and a ring never changes:
    a rotation or retirement makes a new ring, which starts with nothing remembered (``_RECENT``
    holds rings weakly, so a dropped ring's reads go with it). Only valid codes are kept, so
    junk cannot push them out; scanner threads and the server share it, hence the lock."""

    __slots__ = ("_codes", "_lock")

    def __init__(self) -> None:
        self._codes: OrderedDict[str, TicketCode] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> TicketCode | None:
        with self._lock:
            code = self._codes.get(text)
            if code is not None:
                self._codes.move_to_end(text)
            return code

    def put(self, text: str, code: TicketCode) -> None:
        with self._lock:
            self._codes[text] = code
            if len(self._codes) > READ_CACHE_SIZE:
                self._codes.popitem(last=False)


_RECENT: Final[weakref.WeakKeyDictionary[ScannerKeyRing, _RecentReads]] = (
    weakref.WeakKeyDictionary()
)


def _read_v2(keys: ScannerKeyRing, raw: bytes) -> TicketCode | CodeRejection:
    """A GH2 code: a blinded key hint in clear, a name secret inside."""
    hint, nonce = raw[:HINT_BYTES], raw[HINT_BYTES : HINT_BYTES + NONCE_BYTES]
    sealed = raw[HINT_BYTES + NONCE_BYTES :]
    plaintext: bytes | None = None
    encryption: EncryptionKey | None = None
    # The hint names no key: each key of the ring computes its own hint for this nonce. A ring
    # holds a handful of keys; a false match (1 in 2**64) only costs one failed decryption.
    for candidate_key in keys.encryption_keys:
        if candidate_key.hint(nonce) != hint:
            continue
        encryption = candidate_key
        try:
            plaintext = candidate_key.aead.decrypt(nonce, sealed, _aad(PREFIX, hint))
            break
        except InvalidTag:
            continue
    if encryption is None:
        return CodeRejection(
            RejectionKind.UNKNOWN_KEY, "It is sealed under a key that is not known here."
        )
    if plaintext is None:
        return CodeRejection(
            RejectionKind.TAMPERED, "The code was altered or damaged (its seal does not match)."
        )
    return _claimed(keys, plaintext, encryption.key_id, _CLAIMS, SIGNING_CONTEXT)


def _read_v1(keys: ScannerKeyRing, raw: bytes) -> TicketCode | CodeRejection:
    """A GH1 code: the encryption key id in clear, no name secret."""
    header, nonce, sealed = raw[:4], raw[4 : 4 + NONCE_BYTES], raw[4 + NONCE_BYTES :]
    (encryption_key_id,) = _KEY_ID.unpack(header)
    encryption = keys.encryption_key(encryption_key_id)
    if encryption is None:
        return CodeRejection(
            RejectionKind.UNKNOWN_KEY, f"Encryption key {encryption_key_id} is not known here."
        )
    try:
        plaintext = encryption.aead.decrypt(nonce, sealed, _aad(PREFIX_V1, header))
    except InvalidTag:
        return CodeRejection(
            RejectionKind.TAMPERED, "The code was altered or damaged (its seal does not match)."
        )
    return _claimed(keys, plaintext, encryption_key_id, _CLAIMS_V1, SIGNING_CONTEXT_V1)


def _claimed(
    keys: ScannerKeyRing,
    plaintext: bytes,
    encryption_key_id: int,
    layout: struct.Struct,
    context: bytes,
) -> TicketCode | CodeRejection:
    """The opened claims of either format (``layout``: GH2's ends with the name secret), once
    their signature under ``context`` checks out."""
    claims, signature = plaintext[: layout.size], plaintext[layout.size :]
    fields = layout.unpack(claims)
    signing_key_id, ticket_id, event_id, secret_version, issued_seconds = fields[:5]
    rejection = _verify(keys, signing_key_id, signature, context + claims)
    if rejection is not None:
        return rejection
    return TicketCode(
        ticket_id=uuid.UUID(bytes=ticket_id),
        event_id=uuid.UUID(bytes=event_id),
        secret_version=secret_version,
        issued_at=datetime.fromtimestamp(issued_seconds, tz=UTC),
        signing_key_id=signing_key_id,
        encryption_key_id=encryption_key_id,
        name_secret=fields[5] if len(fields) > 5 else None,
    )


def _verify(
    keys: ScannerKeyRing, signing_key_id: int, signature: bytes, message: bytes
) -> CodeRejection | None:
    verify = keys.verify_key(signing_key_id)
    if verify is None:
        return CodeRejection(
            RejectionKind.UNKNOWN_KEY, f"Signing key {signing_key_id} is not known here."
        )
    if not verify.verifies(signature, message):
        return CodeRejection(
            RejectionKind.BAD_SIGNATURE, "The code is not signed by the issuer: it is forged."
        )
    return None


def _aad(prefix: str, header: bytes) -> bytes:
    # The prefix (with its version digit) and the clear header (GH1: key id; GH2: hint) are
    # authenticated, so neither can be swapped undetected.
    return prefix.encode("ascii") + header


def key_marker_of(text: object) -> bytes | None:
    """The clear bytes by which a code points at its encryption key — GH1: the key id; GH2: the
    blinded hint, which differs per code — without decrypting; None when ``text`` is not shaped
    like a code. A reader that found no key for a marker can remember it, so the same unknown
    marker costs no second look-up."""
    if not isinstance(text, str) or len(text) > _MAX_INPUT_CHARS:
        return None
    candidate = text.strip().upper()
    versioned = _VERSIONED.match(candidate)
    if versioned is None:
        return None
    version = int(versioned.group(1))
    body = candidate[3:]
    if len(body) != _BODY_CHARS.get(version) or _BASE32.fullmatch(body) is None:
        return None
    size = _KEY_ID.size if version == 1 else HINT_BYTES
    # Both headers fit in the first 16 base32 characters (80 bits).
    return candidate[:3].encode() + _decode_base32(body[:16], 10)[:size]


def _decode_base32(body: str, size: int) -> bytes:
    """The ``size`` bytes of an unpadded base32 text of ``size * 8 / 5`` characters, all of them
    already checked to be in ``A-Z2-7`` (``_BASE32``); the same bytes as ``base64.b32decode``.
    The check must come first: ``int`` alone would also take signs, underscores and spaces."""
    return int(body.translate(_AS_BASE32HEX), 32).to_bytes(size, "big")
