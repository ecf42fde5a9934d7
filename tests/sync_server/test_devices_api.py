from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from shared.clock import ManualClock
from shared.keys import ScannerKeyRing
from shared.ticket_code import CodeRejection, RejectionKind, TicketCode, issue_code, read_code
from shared.wire import ScannerKeys
from sync_server.app import create_app
from sync_server.db.engine import Database
from sync_server.domain.keys.services import KeyStore
from sync_server.http.auth import Role, mint_token
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import concurrent_client

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

EVENT = {
    "name": "Spring Concert",
    "venue": "Main Hall",
    "starts_at": "2027-05-01T19:00:00Z",
    "ends_at": "2027-05-01T23:00:00Z",
}
CODE_SHAPE = re.compile(r"ENR(-[0-9A-HJKMNP-TV-Z]{4}){3}")

Client = AsyncTestClient[Litestar] | httpx.AsyncClient


async def _event(client: Client, tenant: TenantHandle) -> str:
    created = await client.post("/v1/events", json=EVENT, headers=tenant.token())
    assert created.status_code == 201, created.text
    event_id: str = created.json()["id"]
    return event_id


async def _enrollment(
    client: Client, tenant: TenantHandle, event_id: str, gate: str = "North 1", **extra: Any
) -> dict[str, Any]:
    created = await client.post(
        "/v1/devices/enrollments",
        json={"event_id": event_id, "gate": gate, **extra},
        headers=tenant.token(),
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def _enroll(client: Client, code: str, name: str = "Gate scanner") -> httpx.Response:
    return await client.post("/v1/devices/enroll", json={"code": code, "device_name": name})


async def _enrolled(client: Client, tenant: TenantHandle, event_id: str) -> dict[str, Any]:
    enrollment = await _enrollment(client, tenant, event_id)
    enrolled = await _enroll(client, enrollment["code"])
    assert enrolled.status_code == 201, enrolled.text
    body: dict[str, Any] = enrolled.json()
    return body


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _ring(keys: object) -> ScannerKeyRing:
    return ScannerKeyRing.from_wire(msgspec.convert(keys, ScannerKeys, strict=False))


def _problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


async def _issue(settings: Settings, tenant_id: uuid.UUID, event_id: str) -> str:
    """A ticket code made with the event's current issuer keys, straight from the database."""
    database = Database(settings.database)
    try:
        async with database.tenant(tenant_id) as session:
            ring = await KeyStore(settings.master_key).issuer_ring(
                session, uuid.UUID(event_id), tenant_id=tenant_id
            )
    finally:
        await database.close()
    return issue_code(
        ring,
        ticket_id=uuid.uuid4(),
        event_id=uuid.UUID(event_id),
        secret_version=0,
        issued_at=datetime.now(UTC),
    )


async def test_enroll_use_keys_and_revoke(
    client: AsyncTestClient[Litestar], tenant: TenantHandle, settings: Settings
) -> None:
    event_id = await _event(client, tenant)
    enrollment = await _enrollment(client, tenant, event_id, gate="North 1")
    assert CODE_SHAPE.fullmatch(enrollment["code"]), enrollment["code"]
    assert enrollment["event_id"] == event_id
    assert enrollment["gate"] == "North 1"

    enrolled = await _enroll(client, enrollment["code"], name="Scanner A")
    assert enrolled.status_code == 201, enrolled.text
    device: dict[str, Any] = enrolled.json()
    assert device["tenant_id"] == str(tenant.id)
    assert (device["event_id"], device["gate"]) == (event_id, "North 1")
    token = _bearer(device["device_token"])

    # The keys the device got read a code the event issues.
    code = await _issue(settings, tenant.id, event_id)
    read = read_code(_ring(device["keys"]), code)
    assert isinstance(read, TicketCode)
    assert str(read.event_id) == event_id

    me = await client.get("/v1/devices/me", headers=token)
    assert me.status_code == 200, me.text
    assert me.json()["device_id"] == device["device_id"]
    assert me.json()["name"] == "Scanner A"
    assert me.json()["revoked"] is False

    # After a rotation the device refreshes its keys through /me and reads the new codes.
    rotated = await client.post(f"/v1/events/{event_id}/keys/rotate", headers=tenant.token())
    assert rotated.status_code == 201, rotated.text
    new_code = await _issue(settings, tenant.id, event_id)
    stale = read_code(_ring(device["keys"]), new_code)
    assert isinstance(stale, CodeRejection)
    assert stale.kind is RejectionKind.UNKNOWN_KEY
    refreshed = _ring((await client.get("/v1/devices/me", headers=token)).json()["keys"])
    assert rotated.json()["signing_key_id"] in refreshed.verify_key_ids
    assert rotated.json()["encryption_key_id"] in refreshed.encryption_key_ids
    assert isinstance(read_code(refreshed, new_code), TicketCode)
    assert isinstance(read_code(refreshed, code), TicketCode)

    listed = (await client.get("/v1/devices", headers=tenant.token())).json()["items"]
    assert [(d["id"], d["revoked_at"]) for d in listed] == [(device["device_id"], None)]
    assert listed[0]["last_seen_at"] is not None

    revoke = await client.delete(f"/v1/devices/{device['device_id']}", headers=tenant.token())
    assert revoke.status_code == 204, revoke.text
    again = await client.delete(f"/v1/devices/{device['device_id']}", headers=tenant.token())
    assert again.status_code == 204, again.text
    _problem(await client.get("/v1/devices/me", headers=token), 401, "device_revoked")
    listed = (await client.get("/v1/devices", headers=tenant.token())).json()["items"]
    assert listed[0]["revoked_at"] is not None


async def test_a_code_enrolls_one_device_only(
    client: AsyncTestClient[Litestar], tenant: TenantHandle
) -> None:
    event_id = await _event(client, tenant)
    code = (await _enrollment(client, tenant, event_id))["code"]
    assert (await _enroll(client, code)).status_code == 201
    _problem(await _enroll(client, code), 422, "enrollment_code_invalid")


async def test_devices_racing_with_one_code_get_exactly_one_enrollment(
    settings: Settings, tenant: TenantHandle
) -> None:
    async with concurrent_client(create_app(settings)) as http:
        event_id = await _event(http, tenant)
        code = (await _enrollment(http, tenant, event_id))["code"]
        answers = await asyncio.gather(*(_enroll(http, code, f"Scanner {i}") for i in range(8)))
        assert sorted(a.status_code for a in answers) == [201] + [422] * 7
        for answer in answers:
            if answer.status_code == 422:
                assert answer.json()["code"] == "enrollment_code_invalid"
        listed = (await http.get("/v1/devices", headers=tenant.token())).json()["items"]
        winner = next(a for a in answers if a.status_code == 201).json()
        assert [d["id"] for d in listed] == [winner["device_id"]]


async def test_an_expired_code_is_refused(settings: Settings, tenant: TenantHandle) -> None:
    clock = ManualClock(datetime.now(UTC))
    async with AsyncTestClient(app=create_app(settings, clock=clock)) as client:
        event_id = await _event(client, tenant)
        enrollment = await _enrollment(client, tenant, event_id, ttl_seconds=60)
        clock.advance(61)
        _problem(await _enroll(client, enrollment["code"]), 422, "enrollment_code_expired")
        fresh = await _enrollment(client, tenant, event_id, ttl_seconds=60)
        clock.advance(59)
        assert (await _enroll(client, fresh["code"])).status_code == 201


@pytest.mark.parametrize(
    "retype",
    [
        pytest.param(lambda code: code.lower().replace("-", ""), id="lowercase-no-dashes"),
        pytest.param(lambda code: code.replace("-", " "), id="spaces"),
        pytest.param(lambda code: f"  {code.removeprefix('ENR-')}\n", id="no-prefix"),
        pytest.param(
            lambda code: code.replace("0", "O").replace("1", "l"), id="letters-for-digits"
        ),
    ],
)
async def test_codes_are_read_forgivingly(
    client: AsyncTestClient[Litestar], tenant: TenantHandle, retype: Callable[[str], str]
) -> None:
    event_id = await _event(client, tenant)
    code = (await _enrollment(client, tenant, event_id))["code"]
    enrolled = await _enroll(client, retype(code))
    assert enrolled.status_code == 201, enrolled.text


@pytest.mark.parametrize("code", ["", "ENR-0000-0000-0000", "hello", "ENR-" + "A" * 40])
async def test_codes_that_were_never_made_are_invalid(
    client: AsyncTestClient[Litestar], code: str
) -> None:
    answer = await _enroll(client, code)
    if code:
        _problem(answer, 422, "enrollment_code_invalid")
    else:
        _problem(answer, 400, "validation_failed")


async def test_tenants_never_see_each_others_devices(
    client: AsyncTestClient[Litestar], make_tenant: Callable[..., Any]
) -> None:
    a: TenantHandle = await make_tenant("Venue A")
    b: TenantHandle = await make_tenant("Venue B")
    event_a = await _event(client, a)
    device = await _enrolled(client, a, event_a)
    assert device["tenant_id"] == str(a.id)

    assert (await client.get("/v1/devices", headers=b.token())).json()["items"] == []
    _problem(
        await client.delete(f"/v1/devices/{device['device_id']}", headers=b.token()),
        404,
        "not_found",
    )
    _problem(
        await client.post(
            "/v1/devices/enrollments",
            json={"event_id": event_a, "gate": "East"},
            headers=b.token(),
        ),
        404,
        "not_found",
    )
    me = await client.get("/v1/devices/me", headers=_bearer(device["device_token"]))
    assert me.status_code == 200, me.text


async def test_each_endpoint_refuses_the_wrong_role(
    client: AsyncTestClient[Litestar], tenant: TenantHandle
) -> None:
    event_id = await _event(client, tenant)
    device = await _enrolled(client, tenant, event_id)
    scanner = _bearer(device["device_token"])
    enrollment = {"event_id": event_id, "gate": "X"}
    refused: list[tuple[str, str, dict[str, Any] | None, dict[str, str]]] = [
        ("POST", "/v1/devices/enrollments", enrollment, scanner),
        ("GET", "/v1/devices", None, scanner),
        ("DELETE", f"/v1/devices/{device['device_id']}", None, scanner),
        ("POST", "/v1/devices/enrollments", enrollment, tenant.token(Role.SERVICE)),
        ("GET", "/v1/devices/me", None, tenant.token()),
    ]
    for method, path, body, headers in refused:
        _problem(await client.request(method, path, json=body, headers=headers), 403, "wrong_role")
    _problem(
        await client.post("/v1/devices/enrollments", json=enrollment),
        401,
        "missing_token",
    )
    # The scanner was refused, not revoked.
    assert (await client.get("/v1/devices/me", headers=scanner)).status_code == 200


async def test_enrollment_requests_are_checked(
    client: AsyncTestClient[Litestar], tenant: TenantHandle
) -> None:
    event_id = await _event(client, tenant)
    for bad in (
        {"event_id": event_id, "gate": ""},
        {"event_id": event_id, "gate": "G" * 65},
        {"event_id": event_id, "gate": "North", "ttl_seconds": 5},
        {"event_id": event_id, "gate": "North", "ttl_seconds": 365 * 24 * 3600},
        {"event_id": "not-a-uuid", "gate": "North"},
    ):
        answer = await client.post("/v1/devices/enrollments", json=bad, headers=tenant.token())
        _problem(answer, 400, "validation_failed")
    _problem(
        await client.post(
            "/v1/devices/enrollments",
            json={"event_id": str(uuid.uuid4()), "gate": "North"},
            headers=tenant.token(),
        ),
        404,
        "not_found",
    )
    _problem(
        await client.delete(f"/v1/devices/{uuid.uuid4()}", headers=tenant.token()),
        404,
        "not_found",
    )


async def test_device_list_pages_and_filters_by_event(
    client: AsyncTestClient[Litestar], tenant: TenantHandle
) -> None:
    first, second = await _event(client, tenant), await _event(client, tenant)
    ids = [(await _enrolled(client, tenant, first))["device_id"] for _ in range(3)]
    other = (await _enrolled(client, tenant, second))["device_id"]

    page = (
        await client.get(f"/v1/devices?event_id={first}&limit=2", headers=tenant.token())
    ).json()
    assert [d["id"] for d in page["items"]] == ids[:2]
    rest = (
        await client.get(
            f"/v1/devices?event_id={first}&limit=2&cursor={page['next_cursor']}",
            headers=tenant.token(),
        )
    ).json()
    assert [d["id"] for d in rest["items"]] == ids[2:]
    assert rest["next_cursor"] is None
    everything = (await client.get("/v1/devices", headers=tenant.token())).json()["items"]
    assert [d["id"] for d in everything] == [*ids, other]
    _problem(
        await client.get(f"/v1/devices?event_id={uuid.uuid4()}", headers=tenant.token()),
        404,
        "not_found",
    )


async def test_device_tokens_carry_the_configured_issuer_and_audience(
    settings: Settings, tenant: TenantHandle
) -> None:
    auth = replace(settings.auth, issuer="https://gatehouse.test", audience="gates")
    manager = _bearer(
        mint_token(
            auth.jwt_secret,
            tenant_id=tenant.id,
            role=Role.MANAGER,
            subject="manager",
            ttl_seconds=600,
            issuer=auth.issuer,
            audience=auth.audience,
        )
    )
    async with AsyncTestClient(app=create_app(replace(settings, auth=auth))) as client:
        created = await client.post("/v1/events", json=EVENT, headers=manager)
        assert created.status_code == 201, created.text
        enrollment = await client.post(
            "/v1/devices/enrollments",
            json={"event_id": created.json()["id"], "gate": "South"},
            headers=manager,
        )
        enrolled = await _enroll(client, enrollment.json()["code"])
        me = await client.get("/v1/devices/me", headers=_bearer(enrolled.json()["device_token"]))
        assert me.status_code == 200, me.text
        # A token without them is refused by this server.
        _problem(await client.get("/v1/devices", headers=tenant.token()), 401, "invalid_token")
