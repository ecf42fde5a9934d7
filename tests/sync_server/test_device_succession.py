"""A gate enrolled again on the same computer takes over the device it was (issue 19, migration
0023, docs/operations.md "A scanner the server no longer knows").

After a restore from a backup a gate may have to enroll again and becomes a new device; the
scans it made as the old one — some of which the restored database lacks — must still go up,
and its undos too. The new enrollment names the old device and signs this enrollment with the
old device's peer key; the server then lets the new device upload, look up and undo the old
one's scans, and revokes the old one. Without that proof (a wrong key, another event, a revoked
device) nothing is taken over: another device's scan id stays "taken".
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar

from shared.clock import ManualClock
from shared.ids import new_id
from shared.peers import DeviceKey, succession_message
from sync_server.app import create_app
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import Client, assert_problem, buy, create_event, create_ticket_type

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

T = datetime(2030, 5, 1, 19, 30, tzinfo=UTC)  # inside the default test event's hours
EVENT_NIGHT = datetime(2030, 5, 1, 20, 0, tzinfo=UTC)


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings, clock=ManualClock(EVENT_NIGHT))


@pytest.fixture
async def tenant(make_tenant: Callable[..., Awaitable[TenantHandle]]) -> TenantHandle:
    made = await make_tenant("Main venue")
    return made.at(EVENT_NIGHT)


@dataclass
class Gate:
    """An enrolled scanner: its peer key (kept on its disk) and its token."""

    device_id: uuid.UUID
    key: DeviceKey
    headers: dict[str, str]
    succeeds: str | None


async def _code(client: Client, tenant: TenantHandle, event_id: str, gate: str) -> str:
    created = await client.post(
        "/v1/devices/enrollments", json={"event_id": event_id, "gate": gate}, headers=tenant.token()
    )
    assert created.status_code == 201, created.text
    code: str = created.json()["code"]
    return code


async def _enroll(
    client: Client,
    tenant: TenantHandle,
    event_id: str,
    *,
    gate: str = "North 1",
    after: Gate | None = None,
    signed_by: DeviceKey | None = None,
) -> Gate:
    """Enroll a gate; ``after``: the device this computer was, claimed with a signature by
    ``signed_by`` (its own key unless given)."""
    key = DeviceKey.generate()
    code = await _code(client, tenant, event_id, gate)
    body: dict[str, Any] = {
        "code": code,
        "device_name": f"{gate} scanner",
        "peer_public_key": base64.b64encode(key.public_key).decode(),
    }
    if after is not None:
        signer = signed_by or after.key
        message = succession_message(after.device_id, key.public_key, code)
        body["succeeds"] = {
            "device_id": str(after.device_id),
            "signature": base64.b64encode(signer.sign(message)).decode(),
        }
    answer = await client.post("/v1/devices/enroll", json=body)
    assert answer.status_code == 201, answer.text
    enrolled = answer.json()
    return Gate(
        uuid.UUID(enrolled["device_id"]),
        key,
        {"Authorization": f"Bearer {enrolled['device_token']}"},
        enrolled["succeeds"],
    )


async def _tickets(client: Client, tenant: TenantHandle, count: int = 3) -> tuple[str, list[str]]:
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    response = await buy(client, tenant, ticket_type["id"], quantity=count)
    assert response.status_code == 201, response.text
    return event["id"], [t["code"] for t in response.json()["tickets"]]


def _scan(code: str, at: datetime) -> dict[str, Any]:
    return {
        "scan_id": str(new_id()),
        "code": code,
        "gate": "North 1",
        "direction": "entry",
        "scanned_at": at.isoformat(),
        "clock_offset_ms": 0,
        "device_result": "admitted",
    }


async def _upload(client: Client, gate: Gate, scans: list[dict[str, Any]]) -> Any:
    return await client.post("/v1/sync/scans", json={"scans": scans}, headers=gate.headers)


async def _device(client: Client, tenant: TenantHandle, device_id: uuid.UUID) -> dict[str, Any]:
    listed = await client.get("/v1/devices", headers=tenant.token())
    assert listed.status_code == 200, listed.text
    found: dict[str, Any] = next(d for d in listed.json()["items"] if d["id"] == str(device_id))
    return found


async def test_a_gate_enrolled_again_takes_over_its_scans_and_undos(
    client: Client, tenant: TenantHandle
) -> None:
    event_id, codes = await _tickets(client, tenant)
    old = await _enroll(client, tenant, event_id)
    first, second = _scan(codes[0], T), _scan(codes[1], T + timedelta(minutes=1))
    stored = await _upload(client, old, [first, second])
    assert stored.status_code == 200, stored.text

    new = await _enroll(client, tenant, event_id, after=old)

    assert new.succeeds == str(old.device_id)
    # The old device is revoked (its tokens on the same computer were replaced), with why.
    was = await _device(client, tenant, old.device_id)
    assert was["revoked_reason"] == "re_enrolled"
    assert was["status"].startswith("Replaced")
    assert (await _device(client, tenant, new.device_id))["succeeds_id"] == str(old.device_id)
    gone = await client.get("/v1/sync/changes", headers=old.headers)
    assert_problem(gone, 401, "device_revoked")

    # Everything the computer made goes up again: what the server has is a repeat (answered as
    # recorded, nothing doubled), what it lacks (made after a backup it was restored from) is
    # recorded under the new device.
    third = _scan(codes[2], T + timedelta(minutes=2))
    again = await _upload(client, new, [first, second, third])
    assert again.status_code == 200, again.text
    outcomes = again.json()["outcomes"]
    assert [o["duplicate_upload"] for o in outcomes] == [True, True, False]
    assert [o["result"] for o in outcomes] == ["admitted"] * 3
    assert [o["scan_id"] for o in outcomes] == [s["scan_id"] for s in (first, second, third)]

    # It can ask what the server recorded for the old device's scan, and undo it.
    looked_up = await client.get(f"/v1/sync/scans/{first['scan_id']}", headers=new.headers)
    assert looked_up.status_code == 200, looked_up.text
    assert looked_up.json()["result"] == "admitted"
    undone = await client.post(f"/v1/scans/{first['scan_id']}/annul", headers=new.headers)
    assert undone.status_code == 200, undone.text

    # A third enrollment of the same computer takes over the whole line.
    newest = await _enroll(client, tenant, event_id, after=new)
    assert newest.succeeds == str(new.device_id)
    repeat = await _upload(client, newest, [second, third])
    assert repeat.status_code == 200, repeat.text
    assert [o["duplicate_upload"] for o in repeat.json()["outcomes"]] == [True, True]


async def test_without_proof_nothing_is_taken_over(
    client: Client, tenant: TenantHandle, make_tenant: Callable[..., Awaitable[TenantHandle]]
) -> None:
    event_id, codes = await _tickets(client, tenant)
    old = await _enroll(client, tenant, event_id)
    mine = _scan(codes[0], T)
    assert (await _upload(client, old, [mine])).status_code == 200

    # Signed by a key that is not the old device's (a thief who knows its id).
    forged = await _enroll(client, tenant, event_id, after=old, signed_by=DeviceKey.generate())
    assert forged.succeeds is None
    taken = await _upload(client, forged, [mine])
    assert_problem(taken, 409, "scan_id_taken")
    not_yours = await client.post(f"/v1/scans/{mine['scan_id']}/annul", headers=forged.headers)
    assert_problem(not_yours, 403, "not_your_scan")
    looked_up = await client.get(f"/v1/sync/scans/{mine['scan_id']}", headers=forged.headers)
    assert_problem(looked_up, 409, "scan_id_taken")
    # The old device was not switched off by the attempt.
    assert (await _device(client, tenant, old.device_id))["revoked_at"] is None

    # The computer moved to another event: a new gate there, nothing taken over.
    other_event, _ = await _tickets(client, tenant, count=1)
    moved = await _enroll(client, tenant, other_event, after=old)
    assert moved.succeeds is None
    assert (await _device(client, tenant, old.device_id))["revoked_at"] is None

    # A device a manager revoked (stolen) cannot be taken over, even with its own key.
    revoked = await client.delete(f"/v1/devices/{old.device_id}", headers=tenant.token())
    assert revoked.status_code == 204, revoked.text
    after_theft = await _enroll(client, tenant, event_id, after=old)
    assert after_theft.succeeds is None
    assert_problem(await _upload(client, after_theft, [mine]), 409, "scan_id_taken")

    # Another tenant's device id is not found under this tenant's row-level security.
    elsewhere = (await make_tenant("Elsewhere")).at(EVENT_NIGHT)
    their_event, _ = await _tickets(client, elsewhere, count=1)
    stranger = await _enroll(client, elsewhere, their_event, after=old)
    assert stranger.succeeds is None
