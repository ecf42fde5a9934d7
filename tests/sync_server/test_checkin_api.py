"""Online check-in (POST /v1/validate) and annulment, against the real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from litestar import Litestar
from sqlalchemy import text

from sync_server.http.auth import Role
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import (
    Client,
    DeviceHandle,
    bought,
    buy,
    concurrent_client,
    connect,
    create_event,
    create_ticket_type,
    enrolled_device,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def _validate(client: Client, device: DeviceHandle, code: str, **fields: Any) -> Any:
    return await client.post("/v1/validate", json={"code": code, **fields}, headers=device.headers)


async def _setup(
    client: Client, tenant: TenantHandle, **event: Any
) -> tuple[str, list[str], DeviceHandle]:
    created = await create_event(client, tenant, **event)
    ticket_type = await create_ticket_type(client, tenant, created["id"])
    purchase = await buy(client, tenant, ticket_type["id"], quantity=3)
    assert purchase.status_code == 201, purchase.text
    codes = [t["code"] for t in purchase.json()["tickets"]]
    device = await enrolled_device(client, tenant, created["id"], gate="North 1")
    return created["id"], codes, device


async def _rows(settings: Settings, sql: str, **params: Any) -> list[Any]:
    async with connect(settings.database.admin_url) as connection:
        return list((await connection.execute(text(sql), params)).all())


async def test_first_scan_admits_and_a_second_names_the_first(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    _, codes, device = await _setup(client, tenant)
    first = await _validate(client, device, codes[0])
    assert first.status_code == 200, first.text
    verdict = first.json()
    assert verdict["result"] == "admitted"
    assert verdict["reason"] is None
    assert verdict["holder_name"] == "Ada Guest"
    assert verdict["ticket_type"] == "General"
    assert verdict["gate"] == "North 1"
    assert verdict["chain_verified"] is None  # no chain check yet: said, not faked

    second = await _validate(client, device, codes[0])
    assert second.status_code == 409
    again = second.json()
    assert again["reason"] == "already_checked_in"
    assert again["prior"]["scan_id"] == verdict["scan_id"]
    assert again["prior"]["gate"] == "North 1"
    assert again["prior"]["device_id"] == device.device_id

    ticket = (
        await client.get(f"/v1/tickets/{verdict['ticket_id']}", headers=tenant.token())
    ).json()
    assert ticket["status"] == "checked_in"
    history = (
        await client.get(f"/v1/tickets/{verdict['ticket_id']}/history", headers=tenant.token())
    ).json()
    assert [h["kind"] for h in history] == ["purchased", "checked_in"]
    events = await _rows(
        settings, "SELECT routing_key FROM outbox WHERE ticket_id = :t", t=verdict["ticket_id"]
    )
    assert sorted(r.routing_key for r in events) == ["ticket.checked_in", "ticket.purchased"]
    scans = await _rows(
        settings,
        "SELECT result, reason FROM ticket_scans WHERE ticket_id = :t ORDER BY id",
        t=verdict["ticket_id"],
    )
    assert [tuple(r) for r in scans] == [("admitted", None), ("rejected", "already_checked_in")]


async def test_fifty_gates_at_once_admit_exactly_once(
    client: Client, tenant: TenantHandle, settings: Settings, app: Litestar
) -> None:
    event_id, codes, _ = await _setup(client, tenant)
    devices = [await enrolled_device(client, tenant, event_id, gate=f"Gate {i}") for i in range(50)]
    async with concurrent_client(app) as racing:
        answers = await asyncio.gather(*(_validate(racing, d, codes[0]) for d in devices))
    admitted = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 409]
    assert len(admitted) == 1
    assert len(refused) == 49
    winner = admitted[0].json()
    for answer in refused:
        body = answer.json()
        assert body["reason"] == "already_checked_in"
        assert body["prior"]["scan_id"] == winner["scan_id"]
        assert body["prior"]["gate"] == winner["gate"]
    history = (
        await client.get(f"/v1/tickets/{winner['ticket_id']}/history", headers=tenant.token())
    ).json()
    assert [h["kind"] for h in history] == ["purchased", "checked_in"]
    counts = await _rows(
        settings,
        "SELECT result, count(*) FROM ticket_scans WHERE ticket_id = :t "
        "GROUP BY result ORDER BY result",
        t=winner["ticket_id"],
    )
    assert [tuple(r) for r in counts] == [("admitted", 1), ("rejected", 49)]


async def test_rejections_say_why(client: Client, tenant: TenantHandle, make_tenant: Any) -> None:
    _, codes, device = await _setup(client, tenant)
    middle = len(codes[0]) // 2
    tampered = (
        codes[0][:middle] + ("A" if codes[0][middle] != "A" else "B") + codes[0][middle + 1 :]
    )
    other_event = await bought(client, tenant)
    other_code = other_event["tickets"][0]["code"]
    stranger = await make_tenant("Stranger")
    foreign = (await bought(client, stranger))["tickets"][0]["code"]
    cases = {
        tampered: "invalid_code",
        "hello": "invalid_code",
        other_code: "wrong_event",
        foreign: "unknown_key",
    }
    for code, reason in cases.items():
        answer = await _validate(client, device, code)
        assert answer.status_code == 422, answer.text
        assert answer.json()["reason"] == reason
        assert answer.json()["ticket_id"] is None

    revoked_code = codes[1]
    checked = await client.post(
        "/v1/codes/check", json={"code": revoked_code}, headers=tenant.token()
    )
    revoked_id = checked.json()["verdict"]["ticket_id"]
    await client.post(
        f"/v1/tickets/{revoked_id}/revoke",
        json={"reason": "refund"},
        headers={**tenant.token(), "Idempotency-Key": "r"},
    )
    answer = await _validate(client, device, revoked_code)
    assert answer.status_code == 422
    assert answer.json()["reason"] == "revoked"
    # A revoked ticket's holder who is somehow inside may still leave.
    assert (await _validate(client, device, revoked_code, direction="exit")).status_code == 200


async def test_a_transferred_tickets_old_code_is_superseded_at_the_gate(
    client: Client, tenant: TenantHandle
) -> None:
    purchase = await bought(client, tenant)
    item = purchase["tickets"][0]
    device = await enrolled_device(client, tenant, item["ticket"]["event_id"])
    moved = await client.post(
        f"/v1/tickets/{item['ticket']['id']}/transfer",
        json={"holder": {"user_id": "u2", "name": "New Holder"}},
        headers={**tenant.token(Role.SERVICE), "Idempotency-Key": "t"},
    )
    old = await _validate(client, device, item["code"])
    assert old.status_code == 422
    assert old.json()["reason"] == "superseded"
    new = await _validate(client, device, moved.json()["code"])
    assert new.status_code == 200
    assert new.json()["holder_name"] == "New Holder"


@pytest.mark.parametrize(("allow_reentry", "status"), [(True, 200), (False, 409)])
async def test_reentry_after_exit_follows_the_event_setting(
    client: Client, tenant: TenantHandle, allow_reentry: bool, status: int
) -> None:
    _, codes, device = await _setup(client, tenant, allow_reentry=allow_reentry)
    assert (await _validate(client, device, codes[0])).status_code == 200
    out = await _validate(client, device, codes[0], direction="exit")
    assert out.status_code == 200
    assert out.json()["direction"] == "exit"
    back = await _validate(client, device, codes[0])
    assert back.status_code == status
    if status == 409:
        assert back.json()["prior"]["scan_id"]


async def test_a_retried_scan_id_gets_the_same_verdict_and_one_row(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    _, codes, device = await _setup(client, tenant)
    scan_id = str(uuid.uuid4())
    first = await _validate(client, device, codes[0], scan_id=scan_id)
    again = await _validate(client, device, codes[0], scan_id=scan_id)
    assert first.status_code == again.status_code == 200
    assert first.json()["scan_id"] == again.json()["scan_id"] == scan_id
    assert first.json()["result"] == again.json()["result"]
    rows = await _rows(settings, "SELECT count(*) FROM ticket_scans WHERE id = :s", s=scan_id)
    assert rows[0][0] == 1


async def test_an_admission_can_be_undone_by_a_manager_or_its_device(
    client: Client, tenant: TenantHandle
) -> None:
    event_id, codes, device = await _setup(client, tenant)
    other = await enrolled_device(client, tenant, event_id, gate="South")
    admitted = (await _validate(client, device, codes[0])).json()
    scan_url = f"/v1/scans/{admitted['scan_id']}/annul"
    refused = await client.post(scan_url, headers=other.headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "not_your_scan"
    undone = await client.post(scan_url, headers=device.headers)
    assert undone.status_code == 200, undone.text
    ticket = (
        await client.get(f"/v1/tickets/{admitted['ticket_id']}", headers=tenant.token())
    ).json()
    assert ticket["status"] == "active"
    history = (
        await client.get(f"/v1/tickets/{admitted['ticket_id']}/history", headers=tenant.token())
    ).json()
    assert [h["kind"] for h in history] == ["purchased", "checked_in", "checkin_annulled"]
    twice = await client.post(scan_url, headers=tenant.token())
    assert twice.status_code == 422
    assert twice.json()["code"] == "already_annulled"
    # The person can now be admitted for real.
    assert (await _validate(client, other, codes[0])).status_code == 200


async def test_an_annulment_says_why_in_the_tickets_history(
    client: Client, tenant: TenantHandle
) -> None:
    _event_id, codes, device = await _setup(client, tenant)
    admitted = (await _validate(client, device, codes[0])).json()
    scan_url = f"/v1/scans/{admitted['scan_id']}/annul"
    bad = await client.post(scan_url, json={"reason": ""}, headers=device.headers)
    assert bad.status_code == 400, bad.text
    reason = "app stopped before the verdict was shown"
    undone = await client.post(scan_url, json={"reason": reason}, headers=device.headers)
    assert undone.status_code == 200, undone.text
    history = (
        await client.get(f"/v1/tickets/{admitted['ticket_id']}/history", headers=tenant.token())
    ).json()
    assert [(h["kind"], h["reason"]) for h in history] == [
        ("purchased", None),
        ("checked_in", None),
        ("checkin_annulled", reason),
    ]
    # A body without a reason (and no body at all, above) undoes with none given.
    again = (await _validate(client, device, codes[0])).json()
    plain = await client.post(
        f"/v1/scans/{again['scan_id']}/annul", json={}, headers=device.headers
    )
    assert plain.status_code == 200, plain.text


async def test_a_manager_checks_in_by_hand_at_a_named_gate(
    client: Client, tenant: TenantHandle
) -> None:
    _, codes, _ = await _setup(client, tenant)
    missing_gate = await client.post(
        "/v1/validate", json={"code": codes[0]}, headers=tenant.token()
    )
    assert missing_gate.status_code == 400
    assert missing_gate.json()["code"] == "gate_required"
    ok = await client.post(
        "/v1/validate", json={"code": codes[0], "gate": "Box office"}, headers=tenant.token()
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["gate"] == "Box office"
    service = await client.post(
        "/v1/validate", json={"code": codes[1], "gate": "X"}, headers=tenant.token(Role.SERVICE)
    )
    assert service.status_code == 403
