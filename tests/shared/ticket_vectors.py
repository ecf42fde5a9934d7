"""Builds the published ticket-code test vectors (docs/ticket-code-vectors.json).

All key material here is derived from public labels with SHA-256: these are test keys that
anyone can recompute, never keys for real use. Run ``python tests/shared/ticket_vectors.py`` to
print the vectors; the tests compare the stored file with what the code produces now, so a
change of format shows up as a failing test rather than as silently different codes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.keys import EncryptionKey, IssuerKeyRing, SigningKey
from shared.ticket_code import PREFIX, PREFIX_V1, issue_code

VECTORS_PATH = Path(__file__).resolve().parents[2] / "docs" / "ticket-code-vectors.json"


def derived(label: str, size: int = 32) -> bytes:
    return hashlib.sha256(label.encode()).digest()[:size]


def _signing(key_id: int, label: str) -> SigningKey:
    return SigningKey.from_seed(key_id, derived(label))


def _encryption(key_id: int, label: str) -> EncryptionKey:
    return EncryptionKey(key_id, derived(label))


SIGNING_KEYS = {
    0x00000001: "gatehouse test vector signing key 1",
    0x00000002: "gatehouse test vector signing key 2",
}
ENCRYPTION_KEYS = {
    0x0000000A: "gatehouse test vector encryption key 10",
    0xFFFFFFFF: "gatehouse test vector encryption key 4294967295",
}
ROGUE_SIGNING_KEY = "gatehouse test vector rogue signing key"
ROGUE_ENCRYPTION_KEY = "gatehouse test vector rogue encryption key"


def vector_ring(active_signing_id: int, active_encryption_id: int) -> IssuerKeyRing:
    return IssuerKeyRing(
        [_signing(k, label) for k, label in SIGNING_KEYS.items()],
        [_encryption(k, label) for k, label in ENCRYPTION_KEYS.items()],
        active_signing_id=active_signing_id,
        active_encryption_id=active_encryption_id,
    )


def _code(ring: IssuerKeyRing, case: dict[str, Any]) -> str:
    name_secret = case.get("name_secret_hex")
    return issue_code(
        ring,
        ticket_id=uuid.UUID(case["ticket_id"]),
        event_id=uuid.UUID(case["event_id"]),
        secret_version=case["secret_version"],
        issued_at=datetime.fromisoformat(case["issued_at"]),
        nonce=bytes.fromhex(case["nonce_hex"]),
        name_secret=None if name_secret is None else bytes.fromhex(name_secret),
        version=1 if name_secret is None else 2,
    )


def build() -> dict[str, Any]:
    return {
        "about": (
            "Test vectors for the Gatehouse ticket code (docs/ticket-code.md), formats GH1 and "
            "GH2. Every key here is SHA-256 of its label: public test keys, never for real use. "
            "The scanner ring for the 'invalid' cases holds exactly the keys listed under 'keys'."
        ),
        "keys": {
            "signing": [
                {
                    "key_id": key_id,
                    "label": label,
                    "seed_hex": derived(label).hex(),
                    "public_hex": _signing(key_id, label).verify_key().raw().hex(),
                }
                for key_id, label in SIGNING_KEYS.items()
            ],
            "encryption": [
                {"key_id": key_id, "label": label, "key_hex": derived(label).hex()}
                for key_id, label in ENCRYPTION_KEYS.items()
            ],
        },
        "formats": {PREFIX_V1: _cases(PREFIX_V1), PREFIX: _cases(PREFIX)},
    }


def _cases(prefix: str) -> dict[str, Any]:
    """The valid and invalid cases of one format: the same tickets, in GH2 with a name secret."""
    valid_cases: list[dict[str, Any]] = [
        {
            "name": "first sale",
            "signing_key_id": 1,
            "encryption_key_id": 10,
            "ticket_id": "0190f2a4-5b6c-7d8e-9f01-23456789abcd",
            "event_id": "0190f2a0-0000-7000-8000-000000000001",
            "secret_version": 0,
            "issued_at": "2026-06-01T18:30:00+00:00",
            "nonce_hex": derived("gatehouse test vector nonce 1", 12).hex(),
        },
        {
            "name": "after two transfers, rotated keys, largest key id",
            "signing_key_id": 2,
            "encryption_key_id": 0xFFFFFFFF,
            "ticket_id": "0190f2a4-5b6c-7d8e-9f01-23456789abce",
            "event_id": "0190f2a0-0000-7000-8000-000000000001",
            "secret_version": 2,
            "issued_at": "2026-06-02T09:15:42+00:00",
            "nonce_hex": derived("gatehouse test vector nonce 2", 12).hex(),
        },
        {
            "name": "extreme field values",
            "signing_key_id": 1,
            "encryption_key_id": 10,
            "ticket_id": "ffffffff-ffff-7fff-bfff-ffffffffffff",
            "event_id": "00000000-0000-7000-8000-000000000000",
            "secret_version": 2**32 - 1,
            "issued_at": "2106-02-07T06:28:15+00:00",
            "nonce_hex": "00" * 12,
        },
    ]
    if prefix == PREFIX:
        for number, case in enumerate(valid_cases, start=1):
            case["name_secret_hex"] = derived(
                f"gatehouse test vector name secret {number}", 16
            ).hex()
    for case in valid_cases:
        case["code"] = _code(vector_ring(case["signing_key_id"], case["encryption_key_id"]), case)

    good = valid_cases[0]
    good_raw = bytearray(_raw(good["code"]))
    tampered = bytearray(good_raw)
    tampered[40] ^= 0x01  # one bit inside the ciphertext (both formats)

    # A thief with a scanner's keys: the real encryption key, a signing key of their own.
    def rogue(signing_key_id: int) -> str:
        ring = IssuerKeyRing(
            [SigningKey.from_seed(signing_key_id, derived(ROGUE_SIGNING_KEY))],
            [_encryption(10, ENCRYPTION_KEYS[10])],
            active_signing_id=signing_key_id,
            active_encryption_id=10,
        )
        return _code(ring, good)

    stranger = IssuerKeyRing(
        [_signing(1, SIGNING_KEYS[1])],
        [EncryptionKey(77, derived(ROGUE_ENCRYPTION_KEY))],
        active_signing_id=1,
        active_encryption_id=77,
    )
    invalid = [
        ("one bit flipped in the ciphertext", _text(prefix, tampered), "tampered"),
        ("forged with the scanner's keys, real signing key id", rogue(1), "bad_signature"),
        ("forged with the scanner's keys, unknown signing key id", rogue(99), "unknown_key"),
        ("encrypted under a key the scanner does not have", _code(stranger, good), "unknown_key"),
        ("a future format version", "GH3" + good["code"][3:], "unsupported_version"),
        ("one character short", good["code"][:-1], "malformed"),
        ("a character outside base32", good["code"][:-1] + "0", "malformed"),
        ("not a ticket code at all", "https://example.org/?t=123", "malformed"),
    ]
    if prefix == PREFIX:
        # The clear hint is not a key id: another code's hint (same key, other nonce) matches
        # no key for this nonce; GH1's body under GH2 has the wrong length.
        other = _raw(valid_cases[2]["code"])
        swapped = other[:8] + bytes(good_raw[8:])
        invalid += [
            ("another code's key hint", _text(prefix, swapped), "unknown_key"),
            (
                "a GH1 body under GH2",
                PREFIX + _cases(PREFIX_V1)["valid"][0]["code"][3:],
                "malformed",
            ),
        ]
    invalid_cases = [{"name": n, "code": c, "rejection": r} for n, c, r in invalid]
    return {"valid": valid_cases, "invalid": invalid_cases}


def _raw(code: str) -> bytes:
    return base64.b32decode(code[len(PREFIX) :])


def _text(prefix: str, raw: bytes | bytearray) -> str:
    return prefix + base64.b32encode(bytes(raw)).decode()


if __name__ == "__main__":
    print(json.dumps(build(), indent=2))
