"""Hard inputs, sent as a fuzzer or an attacker with a stolen token would send them: control
characters in every text field that reaches Postgres, and a CSV export with such a filter. Each
gets a 400 problem+json naming the field, never a 500 and never a 200 with an empty body."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.ids import new_id
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import (
    HOLDER,
    Client,
    assert_problem,
    buy,
    create_event,
    create_ticket_type,
    enrolled_device,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

Send = Callable[[Client, TenantHandle, str], Awaitable[Any]]


async def _event_name(client: Client, tenant: TenantHandle, bad: str) -> Any:
    return await client.post(
        "/v1/events",
        json={
            "name": bad,
            "venue": "Main Hall",
            "starts_at": "2030-05-01T19:00:00Z",
            "ends_at": "2030-05-01T23:00:00Z",
        },
        headers=tenant.token(),
    )


async def _ticket_type_name(client: Client, tenant: TenantHandle, bad: str) -> Any:
    event = await create_event(client, tenant)
    return await client.post(
        f"/v1/events/{event['id']}/ticket-types",
        json={"name": bad, "capacity": 10},
        headers=tenant.token(),
    )


async def _enrollment_gate(client: Client, tenant: TenantHandle, bad: str) -> Any:
    event = await create_event(client, tenant)
    return await client.post(
        "/v1/devices/enrollments",
        json={"event_id": event["id"], "gate": bad},
        headers=tenant.token(),
    )


async def _device_name(client: Client, tenant: TenantHandle, bad: str) -> Any:
    event = await create_event(client, tenant)
    created = await client.post(
        "/v1/devices/enrollments",
        json={"event_id": event["id"], "gate": "North 1"},
        headers=tenant.token(),
    )
    assert created.status_code == 201, created.text
    return await client.post(
        "/v1/devices/enroll", json={"code": created.json()["code"], "device_name": bad}
    )


async def _ticket_type(client: Client, tenant: TenantHandle) -> str:
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    return str(ticket_type["id"])


async def _holder_name(client: Client, tenant: TenantHandle, bad: str) -> Any:
    return await buy(
        client, tenant, await _ticket_type(client, tenant), holder={**HOLDER, "name": bad}
    )


async def _holder_user_id(client: Client, tenant: TenantHandle, bad: str) -> Any:
    return await buy(
        client, tenant, await _ticket_type(client, tenant), holder={**HOLDER, "user_id": bad}
    )


async def _upload_gate(client: Client, tenant: TenantHandle, bad: str) -> Any:
    event = await create_event(client, tenant)
    device = await enrolled_device(client, tenant, event["id"])
    scan = {
        "scan_id": str(new_id()),
        "code": "not a code",
        "gate": bad,
        "direction": "entry",
        "scanned_at": datetime(2030, 5, 1, 19, 30, tzinfo=UTC).isoformat(),
        "device_result": "rejected",
        "device_reason": "unreadable",
    }
    return await client.post("/v1/sync/scans", json={"scans": [scan]}, headers=device.headers)


async def _scan_log_gate(client: Client, tenant: TenantHandle, bad: str) -> Any:
    return await client.get("/v1/scans", params={"gate": bad}, headers=tenant.token())


async def _revoked_jti(client: Client, tenant: TenantHandle, bad: str) -> Any:
    return await client.post("/v1/tokens/revocations", json={"jti": bad}, headers=tenant.token())


# (the request, where the error names the field)
CASES: dict[str, tuple[Send, str]] = {
    "event name": (_event_name, "name"),
    "ticket-type name": (_ticket_type_name, "name"),
    "enrollment gate": (_enrollment_gate, "gate"),
    "device name": (_device_name, "device_name"),
    "holder name": (_holder_name, "holder.name"),
    "holder user id": (_holder_user_id, "holder.user_id"),
    "upload gate": (_upload_gate, "scans[0].gate"),
    "scan-log gate filter": (_scan_log_gate, "gate"),
    "revoked token id": (_revoked_jti, "jti"),
}


def _names_the_field(response: Any, field: str) -> None:
    assert_problem(response, 400, "validation_failed")
    errors = response.json()["errors"]
    assert [error["key"] for error in errors] == [field], errors
    assert "control characters" in errors[0]["message"], errors


@pytest.mark.parametrize("bad", ["Gate\x00 1", "Gate\n1", "Gate 1\n", "\x1b[31mGate", "Gate\x85"])
@pytest.mark.parametrize("case", list(CASES))
async def test_control_characters_in_a_name_are_a_400_naming_the_field(
    client: Client, tenant: TenantHandle, case: str, bad: str
) -> None:
    send, field = CASES[case]
    _names_the_field(await send(client, tenant, bad), field)


async def test_a_revocation_reason_may_have_lines_but_no_nul(
    client: Client, tenant: TenantHandle
) -> None:
    response = await buy(client, tenant, await _ticket_type(client, tenant))
    ticket_id = response.json()["tickets"][0]["ticket"]["id"]
    nul = await client.post(
        f"/v1/tickets/{ticket_id}/revoke",
        json={"reason": "lost\x00"},
        headers={**tenant.token(), "Idempotency-Key": str(uuid.uuid4())},
    )
    _names_the_field(nul, "reason")
    lines = await client.post(
        f"/v1/tickets/{ticket_id}/revoke",
        json={"reason": "Lost at the door.\nReported by phone."},
        headers={**tenant.token(), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert lines.status_code == 200, lines.text


async def test_a_code_from_a_handheld_scanner_may_end_with_a_line_break(
    client: Client, tenant: TenantHandle
) -> None:
    response = await buy(client, tenant, await _ticket_type(client, tenant))
    code = response.json()["tickets"][0]["code"]
    checked = await client.post(
        "/v1/codes/check", json={"code": code + "\r\n"}, headers=tenant.token()
    )
    assert checked.status_code == 200, checked.text
    assert checked.json()["verdict"]["ticket_id"] == response.json()["tickets"][0]["ticket"]["id"]


async def test_a_csv_export_with_a_nul_filter_is_a_400_before_any_body(
    client: Client, tenant: TenantHandle
) -> None:
    response = await client.get(
        "/v1/scans",
        params={"gate": "North\x00", "event_id": str(uuid.uuid4())},
        headers={**tenant.token(), "Accept": "text/csv"},
    )
    _names_the_field(response, "gate")
    assert "text/csv" not in response.headers["content-type"]
