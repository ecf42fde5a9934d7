"""Wire schemas: what crosses between scanner and server decodes to what was sent, in JSON and
msgpack, bad payloads fail validation with a message, and unknown fields are tolerated."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
import pytest

from shared import wire
from shared.domain import Direction, TicketStatus, VerdictReason, VerdictResult
from shared.keys import IssuerKeyRing

NOW = datetime(2026, 6, 1, 19, 30, tzinfo=UTC)


def _scan(**overrides: object) -> wire.ScanUpload:
    fields: dict[str, object] = {
        "scan_id": uuid.uuid4(),
        "code": "GH1" + "A" * 224,
        "gate": "North 1",
        "direction": Direction.ENTRY,
        "scanned_at": NOW,
        "clock_offset_ms": -1200,
        "device_result": VerdictResult.ADMITTED,
    }
    fields.update(overrides)
    return wire.ScanUpload(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("codec", [msgspec.json, msgspec.msgpack])
def test_changes_page_round_trips(codec: object) -> None:
    keys = IssuerKeyRing.generate().scanner_ring.to_wire()
    page = wire.ChangesPage(
        changes=[
            wire.TicketChange(
                ticket_id=uuid.uuid4(),
                event_id=uuid.uuid4(),
                status=TicketStatus.REVOKED,
                secret_version=3,
                ticket_type="VIP",
                valid_from=NOW,
                sealed_holder=b"\x00sealed name\xff",
            ),
            wire.AdmissionChange(
                scan_id=uuid.uuid4(),
                ticket_id=uuid.uuid4(),
                gate="South",
                direction=Direction.ENTRY,
                scanned_at=NOW,
                device_id=uuid.uuid4(),
            ),
            wire.KeysChange(keys=keys),
        ],
        next_cursor="c:42",
        has_more=False,
        server_time=NOW,
    )
    encode = codec.encode  # type: ignore[attr-defined]
    decode = codec.decode  # type: ignore[attr-defined]
    assert decode(encode(page), type=wire.ChangesPage) == page


def test_changes_are_tagged_by_kind_in_json() -> None:
    change = wire.AdmissionChange(
        scan_id=uuid.uuid4(),
        ticket_id=uuid.uuid4(),
        gate="South",
        direction=Direction.EXIT,
        scanned_at=NOW,
    )
    assert msgspec.json.decode(msgspec.json.encode(change))["type"] == "admission"


def test_scan_batch_is_limited_to_1000_scans() -> None:
    scans = [msgspec.to_builtins(_scan()) for _ in range(wire.MAX_SCAN_BATCH + 1)]
    with pytest.raises(msgspec.ValidationError, match="length <= 1000"):
        msgspec.json.decode(msgspec.json.encode({"scans": scans}), type=wire.ScanBatch)
    ok = msgspec.json.encode({"scans": scans[:-1]})
    assert len(msgspec.json.decode(ok, type=wire.ScanBatch).scans) == wire.MAX_SCAN_BATCH


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("gate", "", "length >= 1"),
        ("direction", "sideways", "Invalid enum value 'sideways'"),
        ("scanned_at", "yesterday", "Invalid RFC3339"),
        ("scan_id", "not-a-uuid", "Invalid UUID"),
    ],
)
def test_bad_scan_fields_fail_with_a_message(field: str, value: object, message: str) -> None:
    payload = msgspec.to_builtins(_scan())
    payload[field] = value
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.json.decode(msgspec.json.encode(payload), type=wire.ScanUpload)


def test_unknown_fields_from_a_newer_peer_are_ignored() -> None:
    payload = msgspec.to_builtins(_scan())
    payload["added_in_a_later_version"] = {"anything": 1}
    decoded = msgspec.json.decode(msgspec.json.encode(payload), type=wire.ScanUpload)
    assert decoded.gate == "North 1"


def test_a_verdict_has_a_reason_exactly_when_rejected() -> None:
    assert wire.Verdict(result=VerdictResult.ADMITTED).reason is None
    rejected = {"result": "rejected", "reason": "revoked"}
    assert msgspec.json.decode(msgspec.json.encode(rejected), type=wire.Verdict).reason is (
        VerdictReason.REVOKED
    )
    for bad in ({"result": "rejected"}, {"result": "admitted", "reason": "revoked"}):
        with pytest.raises(msgspec.ValidationError, match="exactly one reason"):
            msgspec.json.decode(msgspec.json.encode(bad), type=wire.Verdict)


def test_scanner_keys_in_json_are_base64() -> None:
    ring = IssuerKeyRing.generate()
    sent = msgspec.json.encode(ring.scanner_ring.to_wire())
    raw = msgspec.json.decode(sent)
    assert {"verify_keys", "encryption_keys"} == set(raw)
    key = raw["encryption_keys"][0]
    assert key["key_id"] == ring.active_encryption_key.key_id
    assert isinstance(key["key"], str)
    assert msgspec.json.decode(sent, type=wire.ScannerKeys).encryption_keys[0].key == (
        ring.active_encryption_key.secret
    )
