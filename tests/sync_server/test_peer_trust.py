"""Peer sync's trust chain, server side (issue 18, docs/peer-sync.md "Trust chain"): what a
device gets at enrollment and on every ``GET /v1/devices/me`` — its certificate, the event's
issuer public key and peer key, the event's revoked devices — checked with the gates' own
``shared.peers.Trust``; and ``peers_heard`` from the heartbeat to the managers' views."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from shared.clock import ManualClock
from shared.peers import (
    MAX_GATE_CHARS,
    Certificate,
    Credentials,
    DeviceKey,
    Opened,
    Record,
    RecordKind,
    Refusal,
    Trust,
)
from shared.wire import GATE_NAME_MAX
from sync_server.app import create_app
from sync_server.console.accounts import create_user, set_password, sign_in
from sync_server.console.security import SESSION_COOKIE
from sync_server.db.engine import Database
from sync_server.domain.keys import peer_keys
from sync_server.domain.keys.sealing import MasterKey
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import assert_problem, create_event

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

Client = AsyncTestClient[Litestar]
ME = "/v1/devices/me"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
async def client(settings: Settings, clock: ManualClock) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(settings, clock=clock)) as test_client:
        yield test_client


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


async def _event(client: Client, tenant: TenantHandle, ends_in: timedelta) -> str:
    ends = NOW + ends_in
    event = await create_event(
        client,
        tenant,
        starts_at=(ends - timedelta(hours=4)).isoformat(),
        ends_at=ends.isoformat(),
    )
    event_id: str = event["id"]
    return event_id


async def _code(client: Client, tenant: TenantHandle, event_id: str, gate: str) -> str:
    created = await client.post(
        "/v1/devices/enrollments",
        json={"event_id": event_id, "gate": gate},
        headers=tenant.at(NOW).token(),
    )
    assert created.status_code == 201, created.text
    code: str = created.json()["code"]
    return code


async def _enroll(
    client: Client, tenant: TenantHandle, event_id: str, gate: str = "Gate B", **extra: Any
) -> dict[str, Any]:
    code = await _code(client, tenant, event_id, gate)
    answer = await client.post(
        "/v1/devices/enroll", json={"code": code, "device_name": f"{gate} scanner", **extra}
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


class _Gate:
    """An enrolled scanner with its own peer key, as the scanner app holds it."""

    def __init__(self, key: DeviceKey, enrolled: dict[str, Any]) -> None:
        self.key = key
        self.enrolled = enrolled
        self.device_id = uuid.UUID(enrolled["device_id"])
        self.headers = {"Authorization": f"Bearer {enrolled['device_token']}"}

    def credentials(self, peer: dict[str, Any] | None = None) -> Credentials:
        peer = peer or self.enrolled["peer"]
        return Credentials(
            device_key=self.key,
            certificate=base64.b64decode(peer["certificate"]),
            issuer_public_key=base64.b64decode(peer["issuer_public_key"]),
            event_key=base64.b64decode(peer["event_key"]),
        )

    def trust(self, revoked: list[str] | None = None) -> Trust:
        """The gate's ``Trust`` built only from what the server answered."""
        peer = self.enrolled["peer"]
        return Trust(
            tenant_id=uuid.UUID(self.enrolled["tenant_id"]),
            event_id=uuid.UUID(self.enrolled["event_id"]),
            issuer_public_key=base64.b64decode(peer["issuer_public_key"]),
            event_key=base64.b64decode(peer["event_key"]),
            revoked=frozenset(uuid.UUID(r) for r in revoked or ()),
        )

    def admission(self, seq: int = 1) -> bytes:
        return self.credentials().seal(
            Record(
                origin=self.device_id,
                seq=seq,
                kind=RecordKind.ADMISSION,
                scan_id=uuid.uuid4(),
                ticket_id=uuid.uuid4(),
                at_ms=int(NOW.timestamp() * 1000),
                gate=self.enrolled["gate"],
            )
        )


async def _gate(client: Client, tenant: TenantHandle, event_id: str, gate: str = "Gate B") -> _Gate:
    key = DeviceKey.generate()
    return _Gate(
        key, await _enroll(client, tenant, event_id, gate, peer_public_key=_b64(key.public_key))
    )


async def test_enrollment_certifies_the_devices_own_key_for_its_gate_and_event(
    client: Client, tenant: TenantHandle
) -> None:
    event_id = await _event(client, tenant, ends_in=timedelta(days=2))
    gate = await _gate(client, tenant, event_id, "Gate B")
    peer = gate.enrolled["peer"]
    assert len(base64.b64decode(peer["event_key"])) == 32
    assert len(base64.b64decode(peer["issuer_public_key"])) == 32

    certificate = gate.trust().certificate(base64.b64decode(peer["certificate"]), NOW)
    assert isinstance(certificate, Certificate), certificate
    assert certificate.device_id == gate.device_id
    assert (certificate.tenant_id, certificate.event_id) == (tenant.id, uuid.UUID(event_id))
    assert certificate.gate == "Gate B"
    assert certificate.public_key == gate.key.public_key
    assert certificate.issued_at == int(NOW.timestamp())
    # A day after the event's end (within the 30-day bound), and the answer says the same.
    expires = NOW + timedelta(days=3)
    assert certificate.expires_at == int(expires.timestamp())
    assert datetime.fromisoformat(peer["expires_at"]) == expires

    # A second gate of the event trusts what the first one says, and nothing else changes it.
    other = await _gate(client, tenant, event_id, "Gate A")
    assert other.enrolled["peer"]["issuer_public_key"] == peer["issuer_public_key"]
    assert other.enrolled["peer"]["event_key"] == peer["event_key"]
    opened = other.trust().open(gate.admission(), NOW)
    assert isinstance(opened, Opened), opened
    assert (opened.record.origin, opened.record.gate) == (gate.device_id, "Gate B")
    assert other.trust().open(gate.admission(), NOW + timedelta(days=3)) is Refusal.EXPIRED


async def test_a_certificate_lives_at_most_thirty_days_and_at_least_an_hour(
    client: Client, tenant: TenantHandle
) -> None:
    far = await _gate(client, tenant, await _event(client, tenant, timedelta(days=200)))
    assert datetime.fromisoformat(far.enrolled["peer"]["expires_at"]) == NOW + timedelta(days=30)
    ended = await _gate(client, tenant, await _event(client, tenant, timedelta(days=-3)))
    assert datetime.fromisoformat(ended.enrolled["peer"]["expires_at"]) == NOW + timedelta(hours=1)


def test_the_expiry_rule() -> None:
    end = datetime(2027, 5, 1, 23, 0, tzinfo=UTC)
    day = timedelta(days=1)
    assert peer_keys.certificate_expiry(end, end - 2 * day) == end + day
    assert peer_keys.certificate_expiry(end, end - 40 * day) == end - 10 * day
    assert peer_keys.certificate_expiry(end, end + 2 * day) == end + 2 * day + timedelta(hours=1)


async def test_without_a_peer_key_enrollment_and_me_are_as_before(
    client: Client, tenant: TenantHandle
) -> None:
    event_id = await _event(client, tenant, timedelta(days=2))
    enrolled = await _enroll(client, tenant, event_id)
    assert enrolled["peer"] is None
    me = await client.get(ME, headers={"Authorization": f"Bearer {enrolled['device_token']}"})
    assert me.status_code == 200, me.text
    assert me.json()["peer"] is None
    assert me.json()["revoked_peers"] == []


@pytest.mark.parametrize(
    ("key", "code"),
    [
        pytest.param(_b64(bytes(31)), "validation_failed", id="31-bytes"),
        pytest.param(_b64(DeviceKey.generate().public_key + b"x"), "validation_failed", id="33"),
        pytest.param("not base64 at all!", "validation_failed", id="not-base64"),
        pytest.param(12345, "validation_failed", id="a-number"),
        pytest.param("", "validation_failed", id="empty"),
        pytest.param(_b64(bytes(32)), "peer_public_key_invalid", id="a-small-order-point"),
        pytest.param(_b64(b"\xff" * 32), "peer_public_key_invalid", id="not-canonical"),
    ],
)
async def test_a_malformed_peer_key_is_400_and_leaves_the_code_unused(
    client: Client, tenant: TenantHandle, key: object, code: str
) -> None:
    event_id = await _event(client, tenant, timedelta(days=2))
    enrollment_code = await _code(client, tenant, event_id, "Gate B")
    refused = await client.post(
        "/v1/devices/enroll",
        json={"code": enrollment_code, "device_name": "Scanner", "peer_public_key": key},
    )
    assert_problem(refused, 400, code)
    assert "peer_public_key" in refused.json()["detail"] + str(refused.json().get("errors", ""))
    good = DeviceKey.generate().public_key
    again = await client.post(
        "/v1/devices/enroll",
        json={"code": enrollment_code, "device_name": "Scanner", "peer_public_key": _b64(good)},
    )
    assert again.status_code == 201, again.text


async def test_every_event_has_its_own_issuer_and_peer_key(
    client: Client, make_tenant: Any, settings: Settings, clock: ManualClock
) -> None:
    a: TenantHandle = await make_tenant("Venue A")
    b: TenantHandle = await make_tenant("Venue B")
    first = await _event(client, a, timedelta(days=2))
    second = await _event(client, a, timedelta(days=2))
    elsewhere = await _event(client, b, timedelta(days=2))
    gates = [await _gate(client, t, e) for t, e in ((a, first), (a, second), (b, elsewhere))]
    issuers = {g.enrolled["peer"]["issuer_public_key"] for g in gates}
    event_keys = {g.enrolled["peer"]["event_key"] for g in gates}
    assert len(issuers) == len(event_keys) == 3
    assert issuers.isdisjoint(event_keys)

    one, two, three = gates
    envelope = one.admission()
    assert two.trust().open(envelope, NOW) is Refusal.NOT_ISSUED_HERE
    assert three.trust().open(envelope, NOW) is Refusal.NOT_ISSUED_HERE
    # Even a gate told the other event's issuer key would refuse it: the certificate names its
    # event (and the record does not open under another event's peer key).
    borrowed = Trust(
        tenant_id=a.id,
        event_id=uuid.UUID(second),
        issuer_public_key=base64.b64decode(one.enrolled["peer"]["issuer_public_key"]),
        event_key=base64.b64decode(one.enrolled["peer"]["event_key"]),
    )
    assert borrowed.open(envelope, NOW) is Refusal.OTHER_EVENT

    # Derived, not stored: another server process with the same master key gives the event's
    # gates the same keys.
    async with AsyncTestClient(app=create_app(settings, clock=clock)) as restarted:
        later = await _gate(restarted, a, first, "Gate C")
    assert later.enrolled["peer"]["issuer_public_key"] == one.enrolled["peer"]["issuer_public_key"]
    assert later.enrolled["peer"]["event_key"] == one.enrolled["peer"]["event_key"]
    assert isinstance(later.trust().open(envelope, NOW), Opened)


async def test_me_renews_the_certificate_and_lists_the_events_revoked_devices(
    client: Client, tenant: TenantHandle, clock: ManualClock
) -> None:
    event_id = await _event(client, tenant, timedelta(days=2))
    other_event = await _event(client, tenant, timedelta(days=2))
    reader = await _gate(client, tenant, event_id, "Gate A")
    stolen = await _gate(client, tenant, event_id, "Gate B")
    lost = await _gate(client, tenant, event_id, "Gate C")
    keyless = await _enroll(client, tenant, event_id, "Gate D")
    elsewhere = await _gate(client, tenant, other_event, "Gate E")

    clock.advance(600)  # within the access token's hour
    now = clock.now()
    manager = tenant.at(now).token()
    for device_id in (lost.device_id, stolen.device_id, keyless["device_id"], elsewhere.device_id):
        revoked = await client.delete(f"/v1/devices/{device_id}", headers=manager)
        assert revoked.status_code == 204, revoked.text
        clock.advance(1)

    me = await client.get(ME, headers=reader.headers)
    assert me.status_code == 200, me.text
    body = me.json()
    # Newest revocation first; only this event's, and only devices that had a peer key.
    assert body["revoked_peers"] == [str(stolen.device_id), str(lost.device_id)]
    renewed = reader.trust().certificate(base64.b64decode(body["peer"]["certificate"]), now)
    assert isinstance(renewed, Certificate), renewed
    assert renewed.issued_at == int(clock.now().timestamp())
    assert renewed.device_id == reader.device_id
    assert body["peer"]["event_key"] == reader.enrolled["peer"]["event_key"]

    # A gate that synced ignores the revoked device: its still-valid certificate opens nothing.
    trust = reader.trust(body["revoked_peers"])
    assert trust.open(stolen.admission(), clock.now()) is Refusal.REVOKED
    assert isinstance(reader.trust().open(stolen.admission(), clock.now()), Opened)

    # The revoked device itself gets no certificate: 401 as before.
    refused = await client.get(ME, headers=stolen.headers)
    assert_problem(refused, 401, "device_revoked")
    assert "peer" not in refused.json()


async def test_peers_heard_goes_from_the_heartbeat_to_the_api_and_the_console(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    event_id = await _event(client, tenant, timedelta(days=2))
    hearing = await _gate(client, tenant, event_id, "Gate A")
    alone = await _gate(client, tenant, event_id, "Gate B")
    off = await _gate(client, tenant, event_id, "Gate C")
    silent = await _gate(client, tenant, event_id, "Gate D")
    for gate, heard in ((hearing, 4), (alone, 0), (off, None)):
        beat = {"queued_scans": 0, "peers_heard": heard}
        sent = await client.post(f"{ME}/heartbeat", json=beat, headers=gate.headers)
        assert sent.status_code == 204, sent.text
    negative = {"queued_scans": 0, "peers_heard": -1}
    assert_problem(
        await client.post(f"{ME}/heartbeat", json=negative, headers=alone.headers),
        400,
        "validation_failed",
    )

    listed = await client.get("/v1/devices", headers=tenant.at(NOW).token())
    assert listed.status_code == 200, listed.text
    by_gate = {d["gate"]: d["peers_heard"] for d in listed.json()["items"]}
    assert by_gate == {"Gate A": 4, "Gate B": 0, "Gate C": None, "Gate D": None}

    database = Database(settings.database)
    try:
        email = f"peers-{tenant.id.hex[:12]}@example.org"
        _, link = await create_user(database, tenant.id, email, NOW)
        assert await set_password(database, link, "a long enough password", NOW)
        session = await sign_in(database, email, "a long enough password", NOW)
    finally:
        await database.close()
    assert session is not None
    client.cookies.set(SESSION_COOKIE, session)
    page = await client.get("/console/devices/table")
    assert page.status_code == 200, page.text
    cells = _peer_cells(page.text)
    assert cells == {
        str(hearing.device_id): "Hears 4 other gates",
        str(alone.device_id): "Hears no other gate",
        str(off.device_id): "Peer sync off",
        str(silent.device_id): "not reported",
    }
    detail = await client.get(f"/console/devices/{hearing.device_id}")
    assert detail.status_code == 200, detail.text
    assert '<dd data-testid="peers">Hears 4 other gates</dd>' in detail.text


def _peer_cells(html: str) -> dict[str, str]:
    """Device id -> the text of its "Peers heard" cell in the devices table."""
    cells: dict[str, str] = {}
    for row in html.split('<tr data-device="')[1:]:
        device_id, rest = row.split('"', 1)
        cell = rest.split('data-testid="peers">', 1)[1].split("</td>", 1)[0]
        cells[device_id] = cell
    return cells


def test_the_peer_keys_are_derived_per_purpose_and_event_and_the_master_key_stays_inside() -> None:
    raw = bytes(range(32))
    master = MasterKey(raw)
    tenant, event, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    key = peer_keys.event_key(master, tenant_id=tenant, event_id=event)
    assert key == peer_keys.event_key(MasterKey(raw), tenant_id=tenant, event_id=event)
    assert len(key) == 32
    seed_of = peer_keys.issuer(master, tenant_id=tenant, event_id=event).key.private_key
    assert key != seed_of.private_bytes_raw()
    assert key != peer_keys.event_key(master, tenant_id=tenant, event_id=other)
    assert key != peer_keys.event_key(master, tenant_id=other, event_id=event)
    assert key != peer_keys.event_key(MasterKey(bytes(32)), tenant_id=tenant, event_id=event)
    assert raw.hex() not in repr(master)
    assert str(raw) not in repr(master)


async def test_the_longest_gate_name_the_server_allows_fits_a_certificate(
    client: Client, tenant: TenantHandle
) -> None:
    assert GATE_NAME_MAX <= MAX_GATE_CHARS
    event_id = await _event(client, tenant, timedelta(days=2))
    name = "Ü" * GATE_NAME_MAX  # as long as a gate's name may be, in two-byte characters
    gate = await _gate(client, tenant, event_id, name)
    opened = gate.trust().open(gate.admission(), NOW)
    assert isinstance(opened, Opened), opened
    assert opened.certificate.gate == name
