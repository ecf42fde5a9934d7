"""The trust between gates (shared/peers.py): what a peer accepts, and every way an envelope
is refused — another event, another issuer, a revoked or expired device, a changed byte, a
record that claims another device or gate, junk."""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.peers import (
    Credentials,
    DeviceKey,
    Envelope,
    Issuer,
    Record,
    RecordKind,
    Refusal,
    Trust,
    read_certificate,
    succession_message,
    verifies_succession,
)

NOW = datetime(2027, 6, 1, 20, 0, tzinfo=UTC)
TENANT = uuid.uuid4()
EVENT = uuid.uuid4()


def issuer(event: uuid.UUID = EVENT) -> Issuer:
    return Issuer.from_seed(os.urandom(32), tenant_id=TENANT, event_id=event)


def credentials(
    by: Issuer,
    *,
    device: uuid.UUID | None = None,
    gate: str = "North",
    event_key: bytes,
    expires: timedelta = timedelta(days=1),
) -> tuple[uuid.UUID, Credentials]:
    device = device or uuid.uuid4()
    key = DeviceKey.generate()
    certificate = by.certify(
        device_id=device,
        gate=gate,
        public_key=key.public_key,
        issued_at=NOW - timedelta(hours=1),
        expires_at=NOW + expires,
    )
    return device, Credentials(
        device_key=key,
        certificate=certificate,
        issuer_public_key=by.public_key,
        event_key=event_key,
    )


def record(origin: uuid.UUID, seq: int = 1, gate: str = "North") -> Record:
    return Record(
        origin=origin,
        seq=seq,
        kind=RecordKind.ADMISSION,
        scan_id=uuid.uuid4(),
        ticket_id=uuid.uuid4(),
        at_ms=int(NOW.timestamp() * 1000),
        gate=gate,
        checkin_list_id=None,
        zone="arena",
    )


@pytest.fixture
def event_key() -> bytes:
    return os.urandom(32)


def trust_of(by: Issuer, event_key: bytes, **changes: object) -> Trust:
    trust = Trust(
        tenant_id=TENANT,
        event_id=by.event_id,
        issuer_public_key=by.public_key,
        event_key=event_key,
    )
    return replace(trust, **changes) if changes else trust  # type: ignore[arg-type]


def test_a_certified_gates_record_opens_at_its_peers_as_it_was_sealed(event_key: bytes) -> None:
    by = issuer()
    device, creds = credentials(by, event_key=event_key)
    sent = record(device)
    envelope = creds.seal(sent)
    opened = trust_of(by, event_key).open(envelope, NOW)
    assert not isinstance(opened, Refusal)
    assert opened.record == sent
    assert opened.certificate.device_id == device
    assert opened.certificate.gate == "North"
    # The same envelope again (a replay, or a relay) opens to the same record: stored by its
    # origin and sequence number, it changes nothing.
    again = trust_of(by, event_key).open(envelope, NOW)
    assert not isinstance(again, Refusal)
    assert (again.record.origin, again.record.seq) == (sent.origin, sent.seq)


def test_no_ticket_id_gate_or_zone_travels_in_clear(event_key: bytes) -> None:
    by = issuer()
    device, creds = credentials(by, gate="Gate Seven", event_key=event_key)
    sent = record(device, gate="Gate Seven")
    envelope = creds.seal(sent)
    outer = msgspec.msgpack.decode(envelope, type=Envelope)
    assert sent.ticket_id.bytes not in envelope
    assert str(sent.ticket_id).encode() not in envelope
    assert sent.scan_id.bytes not in envelope
    assert b"arena" not in outer.sealed
    # The certificate (in clear, so a peer can check it first) names the device and gate,
    # never a ticket.
    assert sent.ticket_id.bytes not in outer.certificate


def test_a_device_of_another_event_is_refused(event_key: bytes) -> None:
    ours, theirs = issuer(), issuer(uuid.uuid4())
    device, creds = credentials(theirs, event_key=event_key)
    assert trust_of(ours, event_key).open(creds.seal(record(device)), NOW) in {
        Refusal.NOT_ISSUED_HERE,
        Refusal.OTHER_EVENT,
    }
    # Even with our issuer's key material reused for another event, the certificate names it.
    same_seed_other_event = Issuer(event_id=uuid.uuid4(), tenant_id=TENANT, key=ours.key)
    device, creds = credentials(same_seed_other_event, event_key=event_key)
    assert trust_of(ours, event_key).open(creds.seal(record(device)), NOW) is Refusal.OTHER_EVENT


def test_a_self_made_certificate_is_refused(event_key: bytes) -> None:
    by = issuer()
    forger = issuer()  # an attacker's own "issuer" for our event id
    device, creds = credentials(forger, event_key=event_key)
    assert trust_of(by, event_key).open(creds.seal(record(device)), NOW) is Refusal.NOT_ISSUED_HERE


def test_a_revoked_device_is_refused(event_key: bytes) -> None:
    by = issuer()
    device, creds = credentials(by, event_key=event_key)
    envelope = creds.seal(record(device))
    trust = trust_of(by, event_key)
    assert not isinstance(trust.open(envelope, NOW), Refusal)
    trust.revoked = frozenset({device})
    assert trust.open(envelope, NOW) is Refusal.REVOKED


def test_an_expired_certificate_is_refused(event_key: bytes) -> None:
    by = issuer()
    device, creds = credentials(by, event_key=event_key, expires=timedelta(minutes=5))
    envelope = creds.seal(record(device))
    assert trust_of(by, event_key).open(envelope, NOW + timedelta(minutes=6)) is Refusal.EXPIRED


def test_every_changed_byte_is_refused(event_key: bytes) -> None:
    by = issuer()
    device, creds = credentials(by, event_key=event_key)
    envelope = creds.seal(record(device))
    trust = trust_of(by, event_key)
    for index in range(len(envelope)):
        tampered = bytearray(envelope)
        tampered[index] ^= 0x01
        assert isinstance(trust.open(bytes(tampered), NOW), Refusal), index


def test_a_record_claiming_another_device_or_gate_is_refused(event_key: bytes) -> None:
    by = issuer()
    device, creds = credentials(by, event_key=event_key)
    trust = trust_of(by, event_key)
    assert trust.open(creds.seal(record(uuid.uuid4())), NOW) is Refusal.NOT_ITS_OWN
    assert trust.open(creds.seal(record(device, gate="South")), NOW) is Refusal.NOT_ITS_OWN


def test_a_record_sealed_under_another_event_key_is_unreadable(event_key: bytes) -> None:
    by = issuer()
    device, creds = credentials(by, event_key=os.urandom(32))
    assert trust_of(by, event_key).open(creds.seal(record(device)), NOW) is Refusal.UNREADABLE


def test_a_device_can_read_its_own_certificate(event_key: bytes) -> None:
    by = issuer()
    device, creds = credentials(by, gate="East", event_key=event_key)
    certificate = read_certificate(creds.certificate)
    assert certificate is not None
    assert (certificate.device_id, certificate.gate) == (device, "East")
    assert certificate.event_id == EVENT
    assert certificate.public_key == creds.device_key.public_key
    assert read_certificate(b"junk") is None


@settings(max_examples=300, deadline=None)
@given(junk=st.binary(max_size=3000))
def test_junk_is_refused_and_never_raises(junk: bytes) -> None:
    trust = trust_of(issuer(), os.urandom(32))
    assert isinstance(trust.open(junk, NOW), Refusal)
    assert isinstance(trust.certificate(junk, NOW), Refusal)


# --- succession: a gate enrolled again proves it was the old device ---------------------------


def test_a_succession_claim_verifies_only_with_the_old_key_for_this_enrollment() -> None:
    old, new = DeviceKey.generate(), DeviceKey.generate()
    device = uuid.uuid4()
    message = succession_message(device, new.public_key, "ABCD-EFGH")
    signature = old.sign(message)
    assert verifies_succession(old.public_key, signature, message)
    # Another key, another code, another new key, another old device: no.
    assert not verifies_succession(new.public_key, signature, message)
    for other in (
        succession_message(device, new.public_key, "ABCD-EFGI"),
        succession_message(device, DeviceKey.generate().public_key, "ABCD-EFGH"),
        succession_message(uuid.uuid4(), new.public_key, "ABCD-EFGH"),
    ):
        assert not verifies_succession(old.public_key, signature, other)


@given(key=st.binary(max_size=40), signature=st.binary(max_size=80), message=st.binary())
@settings(max_examples=200)
def test_verifying_a_succession_claim_is_total(
    key: bytes, signature: bytes, message: bytes
) -> None:
    assert not verifies_succession(key, signature, message)
