"""The ticket code: round trips, totality of the reader, the trust split, the QR size."""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import UTC, datetime

import msgspec
import pytest
import segno
from cryptography.exceptions import InvalidSignature
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import wire
from shared.domain import VerdictReason
from shared.keys import (
    EncryptionKey,
    IssuerKeyRing,
    KeyMaterialError,
    ScannerKeyRing,
    SigningKey,
    VerifyKey,
)
from shared.ticket_code import (
    BODY_CHARS,
    BODY_CHARS_V1,
    CODE_BYTES,
    CODE_BYTES_V1,
    CODE_CHARS,
    CODE_CHARS_V1,
    HINT_BYTES,
    NAME_SECRET_BYTES,
    NONCE_BYTES,
    PREFIX,
    PREFIX_V1,
    READ_CACHE_SIZE,
    CodeRejection,
    RejectionKind,
    TicketCode,
    _decode_base32,
    issue_code,
    key_marker_of,
    read_code,
)
from tests.shared.ticket_vectors import VECTORS_PATH, build

KEY_IDS = st.integers(min_value=0, max_value=2**32 - 1)
ISSUE_TIMES = st.integers(min_value=0, max_value=2**32 - 1).map(
    lambda s: datetime.fromtimestamp(s, tz=UTC)
)


@pytest.fixture(scope="module")
def ring() -> IssuerKeyRing:
    return IssuerKeyRing.generate()


@pytest.fixture(scope="module")
def code(ring: IssuerKeyRing) -> str:
    return _fresh_code(ring, secret_version=1)


@pytest.fixture(scope="module")
def v1_code(ring: IssuerKeyRing) -> str:
    return _fresh_code(ring, secret_version=1, version=1)


def _fresh_code(
    ring: IssuerKeyRing,
    secret_version: int = 0,
    *,
    event_id: uuid.UUID | None = None,
    nonce: bytes | None = None,
    version: int = 2,
) -> str:
    """A code for a new ticket of a new event, issued with the ring's active keys."""
    return issue_code(
        ring,
        ticket_id=uuid.uuid4(),
        event_id=event_id or uuid.uuid4(),
        secret_version=secret_version,
        issued_at=datetime(2026, 1, 1, tzinfo=UTC),
        nonce=nonce,
        version=version,
    )


def _raw(code: str) -> bytes:
    return base64.b32decode(code[len(PREFIX) :])


def _text(raw: bytes, prefix: str = PREFIX) -> str:
    return prefix + base64.b32encode(raw).decode()


def _rejected(result: TicketCode | CodeRejection) -> CodeRejection:
    assert isinstance(result, CodeRejection), f"expected a rejection, got {result!r}"
    assert result.detail.endswith("."), "the detail is a sentence"
    return result


@settings(max_examples=200)
@given(
    ticket_id=st.uuids(),
    event_id=st.uuids(),
    secret_version=st.integers(min_value=0, max_value=2**32 - 1),
    issued_at=ISSUE_TIMES,
    signing_seed=st.binary(min_size=32, max_size=32),
    signing_id=KEY_IDS,
    encryption_key=st.binary(min_size=32, max_size=32),
    encryption_id=KEY_IDS,
    name_secret=st.binary(min_size=NAME_SECRET_BYTES, max_size=NAME_SECRET_BYTES),
)
def test_round_trip_for_any_ids_versions_and_keys(
    ticket_id: uuid.UUID,
    event_id: uuid.UUID,
    secret_version: int,
    issued_at: datetime,
    signing_seed: bytes,
    signing_id: int,
    encryption_key: bytes,
    encryption_id: int,
    name_secret: bytes,
) -> None:
    ring = IssuerKeyRing(
        [SigningKey.from_seed(signing_id, signing_seed)],
        [EncryptionKey(encryption_id, encryption_key)],
        active_signing_id=signing_id,
        active_encryption_id=encryption_id,
    )
    text = issue_code(
        ring,
        ticket_id=ticket_id,
        event_id=event_id,
        secret_version=secret_version,
        issued_at=issued_at,
        name_secret=name_secret,
    )
    assert len(text) == CODE_CHARS
    assert text.startswith(PREFIX)
    assert set(text[len(PREFIX) :]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    assert read_code(ring.scanner_ring, text) == TicketCode(
        ticket_id=ticket_id,
        event_id=event_id,
        secret_version=secret_version,
        issued_at=issued_at,
        signing_key_id=signing_id,
        encryption_key_id=encryption_id,
        name_secret=name_secret,
    )
    # The same ticket in the old format still reads, without a name secret.
    old = issue_code(
        ring,
        ticket_id=ticket_id,
        event_id=event_id,
        secret_version=secret_version,
        issued_at=issued_at,
        version=1,
    )
    assert len(old) == CODE_CHARS_V1
    decoded = read_code(ring.scanner_ring, old)
    assert isinstance(decoded, TicketCode)
    assert (decoded.ticket_id, decoded.secret_version, decoded.name_secret) == (
        ticket_id,
        secret_version,
        None,
    )


def test_issue_time_is_kept_to_the_second(ring: IssuerKeyRing) -> None:
    when = datetime(2026, 5, 1, 20, 0, 7, 999_000, tzinfo=UTC)
    text = issue_code(
        ring, ticket_id=uuid.uuid4(), event_id=uuid.uuid4(), secret_version=0, issued_at=when
    )
    decoded = read_code(ring.scanner_ring, text)
    assert isinstance(decoded, TicketCode)
    assert decoded.issued_at == when.replace(microsecond=0)


def test_two_codes_for_the_same_ticket_differ(ring: IssuerKeyRing) -> None:
    # A fresh nonce per code: photographs of two issues of a code cannot be linked by equality.
    args = {
        "ticket_id": uuid.uuid4(),
        "event_id": uuid.uuid4(),
        "secret_version": 0,
        "issued_at": datetime(2026, 5, 1, tzinfo=UTC),
    }
    assert issue_code(ring, **args) != issue_code(ring, **args)  # type: ignore[arg-type]


def test_scanner_input_noise_is_forgiven(ring: IssuerKeyRing, code: str) -> None:
    # A keyboard wedge sends Enter (CR/LF); Caps Lock turns the text to lower case.
    for variant in (code + "\r\n", "  " + code + "\t", code.lower(), code.lower() + "\n"):
        assert read_code(ring.scanner_ring, variant) == read_code(ring.scanner_ring, code)
        assert isinstance(read_code(ring.scanner_ring, variant), TicketCode)


def test_every_truncation_is_rejected_as_malformed(ring: IssuerKeyRing, code: str) -> None:
    for end in range(len(code)):
        assert _rejected(read_code(ring.scanner_ring, code[:end])).kind is RejectionKind.MALFORMED


@pytest.mark.parametrize("version", [1, 2])
def test_every_single_bit_flip_of_the_bytes_is_rejected(
    ring: IssuerKeyRing, code: str, v1_code: str, version: int
) -> None:
    text, prefix, size = (code, PREFIX, CODE_BYTES) if version == 2 else (v1_code, PREFIX_V1, 140)
    raw = _raw(text)
    assert len(raw) == size
    # GH1: the first four bytes name the encryption key, so flipping them names a key we don't
    # have. GH2: the first eight are the key hint (of the nonce, which follows it): flipping
    # either makes the hint match no key.
    clear = 4 if version == 1 else HINT_BYTES + NONCE_BYTES
    for bit in range(size * 8):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
        rejection = _rejected(read_code(ring.scanner_ring, _text(bytes(flipped), prefix)))
        expected = RejectionKind.UNKNOWN_KEY if bit < clear * 8 else RejectionKind.TAMPERED
        assert rejection.kind is expected, f"bit {bit}"


@pytest.mark.parametrize("version", [1, 2])
def test_every_single_bit_flip_of_the_text_is_rejected(
    ring: IssuerKeyRing, code: str, v1_code: str, version: int
) -> None:
    code = code if version == 2 else v1_code
    lowered = code.lower()
    for index in range(len(code)):
        for bit in range(7):
            flipped = code[:index] + chr(ord(code[index]) ^ (1 << bit)) + code[index + 1 :]
            if flipped.strip().upper() == code or flipped.lower() == lowered:
                continue  # a case flip (bit 5 of a letter) is the same code by design
            _rejected(read_code(ring.scanner_ring, flipped))


@settings(max_examples=500)
@given(st.text())
def test_random_text_is_rejected_without_raising(text: str) -> None:
    ring = IssuerKeyRing.generate().scanner_ring
    assert _rejected(read_code(ring, text)).kind in set(RejectionKind)


@settings(max_examples=300)
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=0, max_size=300))
def test_random_base32_after_the_prefix_is_rejected(body: str) -> None:
    ring = IssuerKeyRing.generate().scanner_ring
    _rejected(read_code(ring, PREFIX + body))
    _rejected(read_code(ring, PREFIX_V1 + body))


BASE32_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# What the reader accepted before its decoder became int(..., 32): only these, after strip/upper.
_OLD_BODY = re.compile(r"[A-Z2-7]+")


@settings(max_examples=300)
@given(
    st.sampled_from([BODY_CHARS, BODY_CHARS_V1, 16]).flatmap(
        lambda size: st.text(alphabet=BASE32_ALPHABET, min_size=size, max_size=size)
    )
)
def test_the_fast_base32_decoder_agrees_with_the_standard_library(body: str) -> None:
    assert _decode_base32(body, len(body) * 5 // 8) == base64.b32decode(body)


# Mostly base32, with what int(..., 32) or str.upper() might take that base32 must not: lower
# case, Python's extra base-32 digits, signs, underscores, spaces, padding, Unicode digits and
# letters whose upper case is ASCII or longer.
_NEAR_BASE32 = st.text(
    alphabet=st.one_of(
        st.sampled_from(BASE32_ALPHABET),
        st.sampled_from("abz0189=_+- \t\n٣１ßıſﬀ"),
        st.characters(),
    ),
    min_size=0,
    max_size=BODY_CHARS + 2,
)


@settings(max_examples=500)
@given(
    body=st.one_of(
        _NEAR_BASE32,
        st.tuples(
            st.text(alphabet=BASE32_ALPHABET, min_size=BODY_CHARS, max_size=BODY_CHARS),
            st.integers(min_value=0, max_value=BODY_CHARS - 1),
            st.sampled_from("abz0189=_+- ٣１ßıſﬀ"),
        ).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :]),
    ),
    prefix=st.sampled_from([PREFIX, PREFIX_V1]),
)
def test_the_reader_refuses_exactly_the_bodies_it_refused_before(body: str, prefix: str) -> None:
    # With no keys, a body of the right shape reads as unknown_key and any other as malformed:
    # the same split the regular expression and base64.b32decode made.
    candidate = (prefix + body).strip().upper()
    size = BODY_CHARS if prefix == PREFIX else BODY_CHARS_V1
    rest = candidate[len(prefix) :]
    old_shape = (
        candidate.startswith(prefix) and len(rest) == size and _OLD_BODY.fullmatch(rest) is not None
    )
    kind = _rejected(read_code(ScannerKeyRing(), prefix + body)).kind
    if old_shape:
        assert kind is RejectionKind.UNKNOWN_KEY
        assert key_marker_of(prefix + body) is not None
    else:
        assert kind in {RejectionKind.MALFORMED, RejectionKind.UNSUPPORTED_VERSION}
        assert key_marker_of(prefix + body) is None


@settings(max_examples=300)
@given(st.binary(min_size=CODE_BYTES, max_size=CODE_BYTES))
def test_random_bytes_of_the_right_size_are_rejected(raw: bytes) -> None:
    issuer = IssuerKeyRing.generate()
    # Make half of them carry the real key's hint, so the seal (not just the hint) is exercised.
    nonce = raw[HINT_BYTES : HINT_BYTES + NONCE_BYTES]
    hint = issuer.active_encryption_key.hint(nonce)
    assert _rejected(read_code(issuer.scanner_ring, _text(raw))).kind is RejectionKind.UNKNOWN_KEY
    kind = _rejected(read_code(issuer.scanner_ring, _text(hint + raw[HINT_BYTES:]))).kind
    assert kind is RejectionKind.TAMPERED
    # And GH1: half name the real key id.
    old = raw[:CODE_BYTES_V1]
    header = issuer.active_encryption_key.key_id.to_bytes(4, "big")
    for candidate in (old, header + old[4:]):
        kind = _rejected(read_code(issuer.scanner_ring, _text(candidate, PREFIX_V1))).kind
        assert kind in {RejectionKind.UNKNOWN_KEY, RejectionKind.TAMPERED}


@pytest.mark.parametrize("value", [None, b"GH1AAAA", 42, ["GH1"], object(), "", "GH", "GH1"])
def test_anything_that_is_not_a_code_is_malformed(value: object, ring: IssuerKeyRing) -> None:
    assert _rejected(read_code(ring.scanner_ring, value)).kind is RejectionKind.MALFORMED


def test_huge_input_is_rejected_quickly(ring: IssuerKeyRing) -> None:
    assert _rejected(read_code(ring.scanner_ring, "GH1" + "A" * 10_000_000)).kind is (
        RejectionKind.MALFORMED
    )


@pytest.mark.parametrize("version", ["0", "3", "9"])
def test_other_format_versions_are_unsupported(
    version: str, ring: IssuerKeyRing, code: str
) -> None:
    rejection = _rejected(read_code(ring.scanner_ring, "GH" + version + code[3:]))
    assert rejection.kind is RejectionKind.UNSUPPORTED_VERSION
    assert rejection.reason is VerdictReason.INVALID_CODE


def test_a_body_of_the_other_format_is_malformed(code: str, v1_code: str) -> None:
    ring = IssuerKeyRing.generate().scanner_ring
    for text in (PREFIX_V1 + code[3:], PREFIX + v1_code[3:]):
        assert _rejected(read_code(ring, text)).kind is RejectionKind.MALFORMED


@given(rogue_seed=st.binary(min_size=32, max_size=32), rogue_id=KEY_IDS)
def test_a_stolen_scanner_cannot_mint_codes(rogue_seed: bytes, rogue_id: int) -> None:
    """Whoever holds a scanner's keys can encrypt, but a code they sign is still refused."""
    issuer = IssuerKeyRing.generate()
    stolen = issuer.active_encryption_key
    forger = IssuerKeyRing(
        [SigningKey.from_seed(rogue_id, rogue_seed)],
        [stolen],
        active_signing_id=rogue_id,
        active_encryption_id=stolen.key_id,
    )
    forged = _fresh_code(forger)
    rejection = _rejected(read_code(issuer.scanner_ring, forged))
    if rogue_id == issuer.active_signing_key.key_id:
        assert rejection.kind is RejectionKind.BAD_SIGNATURE
        assert rejection.reason is VerdictReason.INVALID_CODE
    else:  # it decrypts, but names a signing key nobody issued
        assert rejection.kind is RejectionKind.UNKNOWN_KEY
        assert rejection.reason is VerdictReason.UNKNOWN_KEY


def test_a_code_for_another_key_is_unknown_key(code: str) -> None:
    rejection = _rejected(read_code(IssuerKeyRing.generate().scanner_ring, code))
    assert rejection.kind is RejectionKind.UNKNOWN_KEY
    assert rejection.reason is VerdictReason.UNKNOWN_KEY


def test_rotation_keeps_old_codes_readable_until_retired(ring: IssuerKeyRing, code: str) -> None:
    rotated = ring.rotated()
    assert rotated.active_signing_key.key_id != ring.active_signing_key.key_id
    assert rotated.active_encryption_key.key_id != ring.active_encryption_key.key_id
    new_code = _fresh_code(rotated)
    new_decoded = read_code(rotated.scanner_ring, new_code)
    assert isinstance(new_decoded, TicketCode)
    assert new_decoded.signing_key_id == rotated.active_signing_key.key_id
    assert isinstance(read_code(rotated.scanner_ring, code), TicketCode)
    # A scanner that has not synced since the rotation can't read the new code...
    assert _rejected(read_code(ring.scanner_ring, new_code)).kind is RejectionKind.UNKNOWN_KEY

    retired = rotated.retired(
        signing_ids=[ring.active_signing_key.key_id],
        encryption_ids=[ring.active_encryption_key.key_id],
    )
    assert _rejected(read_code(retired.scanner_ring, code)).kind is RejectionKind.UNKNOWN_KEY
    assert isinstance(read_code(retired.scanner_ring, new_code), TicketCode)
    with pytest.raises(KeyMaterialError, match="active"):
        rotated.retired(signing_ids=[rotated.active_signing_key.key_id])


def test_scanner_keys_travel_without_any_signing_secret(ring: IssuerKeyRing, code: str) -> None:
    rotated = ring.rotated()
    sent = msgspec.json.encode(rotated.scanner_ring.to_wire())
    received = ScannerKeyRing.from_wire(msgspec.json.decode(sent, type=wire.ScannerKeys))
    assert isinstance(read_code(received, code), TicketCode)
    assert received.verify_key_ids == {k.key_id for k in rotated.signing_keys}
    for key in rotated.signing_keys:
        seed = key.seed()
        assert seed not in sent
        assert base64.b64encode(seed) not in sent


def test_bad_key_material_is_refused_with_a_clear_error() -> None:
    with pytest.raises(KeyMaterialError, match="AES-256 needs 32"):
        EncryptionKey(1, b"short")
    with pytest.raises(KeyMaterialError, match="key id"):
        EncryptionKey(2**32, bytes(32))
    with pytest.raises(KeyMaterialError, match="Ed25519 public key is 32"):
        VerifyKey.from_bytes(1, bytes(31))
    with pytest.raises(KeyMaterialError, match="share the id"):
        ScannerKeyRing([], [EncryptionKey(1, bytes(32)), EncryptionKey(1, bytes(32))])
    with pytest.raises(KeyMaterialError, match="not in the ring"):
        IssuerKeyRing([], [], active_signing_id=1, active_encryption_id=1)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("secret_version", -1, "32 bits"),
        ("secret_version", 2**32, "32 bits"),
        ("issued_at", datetime(2026, 1, 1), "timezone-aware"),
        ("issued_at", datetime(1969, 12, 31, tzinfo=UTC), "1970..2106"),
        ("issued_at", datetime(2106, 2, 7, 6, 28, 16, tzinfo=UTC), "1970..2106"),
    ],
)
def test_issuing_refuses_values_the_format_cannot_carry(
    ring: IssuerKeyRing, field: str, value: object, message: str
) -> None:
    args: dict[str, object] = {
        "ticket_id": uuid.uuid4(),
        "event_id": uuid.uuid4(),
        "secret_version": 0,
        "issued_at": datetime(2026, 1, 1, tzinfo=UTC),
        field: value,
    }
    with pytest.raises(ValueError, match=message):
        issue_code(ring, **args)  # type: ignore[arg-type]


def test_qr_fits_version_10_at_level_m(ring: IssuerKeyRing) -> None:
    text = _fresh_code(ring, secret_version=2**32 - 1)
    qr = segno.make_qr(text, error="m", boost_error=False)
    assert qr.mode == "alphanumeric"
    assert qr.error == "M"
    assert isinstance(qr.version, int)
    assert qr.version <= 10
    assert len(text) == len(PREFIX) + BODY_CHARS


def test_published_vectors_match_the_code() -> None:
    stored = json.loads(VECTORS_PATH.read_text())
    assert stored == build(), "docs/ticket-code-vectors.json no longer matches the format"

    keys = stored["keys"]
    scanner = ScannerKeyRing(
        [
            VerifyKey.from_bytes(k["key_id"], bytes.fromhex(k["public_hex"]))
            for k in keys["signing"]
        ],
        [EncryptionKey(k["key_id"], bytes.fromhex(k["key_hex"])) for k in keys["encryption"]],
    )
    assert set(stored["formats"]) == {PREFIX_V1, PREFIX}
    for cases in stored["formats"].values():
        for case in cases["valid"]:
            secret = case.get("name_secret_hex")
            assert read_code(scanner, case["code"]) == TicketCode(
                ticket_id=uuid.UUID(case["ticket_id"]),
                event_id=uuid.UUID(case["event_id"]),
                secret_version=case["secret_version"],
                issued_at=datetime.fromisoformat(case["issued_at"]),
                signing_key_id=case["signing_key_id"],
                encryption_key_id=case["encryption_key_id"],
                name_secret=None if secret is None else bytes.fromhex(secret),
            ), case["name"]
        for case in cases["invalid"]:
            kind = _rejected(read_code(scanner, case["code"])).kind
            assert kind == case["rejection"], case["name"]


@pytest.mark.parametrize("top_bits", range(26, 32))
def test_codes_whose_body_starts_with_a_digit_read(ring: IssuerKeyRing, top_bits: int) -> None:
    # The version digit is followed by base32, which has digits too: the first body character
    # comes from the top 5 bits of the key hint, and 26..31 encode as "2".."7".
    key = ring.active_encryption_key
    nonce = next(
        n
        for n in (i.to_bytes(NONCE_BYTES, "big") for i in range(100_000))
        if key.hint(n)[0] >> 3 == top_bits
    )
    text = _fresh_code(ring, nonce=nonce)
    assert text[len(PREFIX)] == str(top_bits - 24)
    assert isinstance(read_code(ring.scanner_ring, text), TicketCode)


def test_two_codes_of_one_event_share_no_clear_bytes(ring: IssuerKeyRing) -> None:
    """Issue 14 item 13: the clear part of a code (everything before the sealed claims) must
    not name the event, so that codes seen at a venue cannot be grouped by event without the
    key. Two codes of the same event, keys and ticket agree on no 4-byte window there."""
    event_id = uuid.uuid4()
    first, second = (_fresh_code(ring, event_id=event_id) for _ in range(2))
    # Both formats' bodies begin with the clear header and nonce: compare their first 16 bytes.
    one, two = (base64.b32decode(code[3:])[:16] for code in (first, second))
    assert all(one[i : i + 4] != two[i : i + 4] for i in range(0, 16, 4))
    assert first[3:10] != second[3:10]


@settings(max_examples=200)
@given(
    seed=st.binary(min_size=32, max_size=32),
    message=st.binary(max_size=200),
    flip=st.integers(min_value=0, max_value=64 * 8 - 1),
)
def test_libsodium_and_openssl_agree_on_signatures(seed: bytes, message: bytes, flip: int) -> None:
    # The reader checks signatures with PyNaCl (libsodium), faster than cryptography (OpenSSL);
    # for the issuer's keys both must take the genuine signature and refuse any altered one.
    signing = SigningKey.from_seed(7, seed)
    verify = signing.verify_key()
    signature = signing.private_key.sign(message)
    assert verify.verifies(signature, message)
    altered = bytearray(signature)
    altered[flip // 8] ^= 1 << (flip % 8)
    assert not verify.verifies(bytes(altered), message)
    with pytest.raises(InvalidSignature):
        verify.public_key.verify(bytes(altered), message)
    assert not verify.verifies(signature, message + b"\x00")
    restored = VerifyKey.from_bytes(7, verify.raw())
    assert restored.verifies(signature, message)


@pytest.mark.parametrize("version", [1, 2])
def test_reading_a_code_again_answers_as_the_first_read(version: int) -> None:
    # Reads are remembered per ring: the second answer must be what a fresh reader says, for
    # the same text, its noisy spellings, and after enough other codes to push it out.
    issuer = IssuerKeyRing.generate()
    text = _fresh_code(issuer, secret_version=2, version=version)
    first = read_code(issuer.scanner_ring, text)
    assert isinstance(first, TicketCode)
    for again in (text, f" {text.lower()}\r\n", text):
        assert read_code(issuer.scanner_ring, again) == first
    others = [_fresh_code(issuer, version=version) for _ in range(READ_CACHE_SIZE)]
    for other in others:
        assert isinstance(read_code(issuer.scanner_ring, other), TicketCode)
    assert read_code(issuer.scanner_ring, text) == first
    fresh = ScannerKeyRing.from_wire(issuer.scanner_ring.to_wire())
    assert read_code(fresh, text) == first


@pytest.mark.parametrize("version", [1, 2])
def test_a_retired_key_is_refused_even_for_codes_read_before(version: int) -> None:
    first = IssuerKeyRing.generate()
    rotated = first.rotated()
    text = _fresh_code(first, version=version)
    assert isinstance(read_code(rotated.scanner_ring, text), TicketCode)
    retired = rotated.retired(
        signing_ids=[first.active_signing_key.key_id],
        encryption_ids=[first.active_encryption_key.key_id],
    )
    assert _rejected(read_code(retired.scanner_ring, text)).kind is RejectionKind.UNKNOWN_KEY
    # Only the signing key retired: the seal opens, the signature's key is unknown.
    signing_only = rotated.retired(signing_ids=[first.active_signing_key.key_id])
    assert _rejected(read_code(signing_only.scanner_ring, text)).kind is RejectionKind.UNKNOWN_KEY
    assert isinstance(read_code(rotated.scanner_ring, text), TicketCode)
