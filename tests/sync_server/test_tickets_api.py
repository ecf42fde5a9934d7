"""The ticket lifecycle through the HTTP API, against the real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from sqlalchemy import text

from shared.domain import VerdictReason
from shared.ticket_code import TicketCode, read_code
from sync_server.db.engine import Database
from sync_server.domain.keys.services import KeyStore
from sync_server.domain.tickets.services import expire_ended_events
from sync_server.http.auth import Role
from sync_server.redis.ticket_cache import invalidating
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import (
    Client,
    assert_problem,
    bought,
    buy,
    concurrent_client,
    connect,
    create_event,
    create_ticket_type,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def _check(client: Client, tenant: TenantHandle, code: str, **fields: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/codes/check", json={"code": code, **fields}, headers=tenant.token(Role.SERVICE)
    )
    assert response.status_code == 200, response.text
    verdict: dict[str, Any] = response.json()["verdict"]
    return verdict


async def _rows(settings: Settings, sql: str, **params: Any) -> list[Any]:
    async with connect(settings.database.admin_url) as connection:
        return list((await connection.execute(text(sql), params)).all())


def _codeless(purchase: dict[str, Any]) -> dict[str, Any]:
    return {**purchase, "tickets": [{**t, "code": ""} for t in purchase["tickets"]]}


async def test_a_purchase_returns_tickets_with_codes_that_check_out(
    client: Client, tenant: TenantHandle
) -> None:
    purchase = await bought(client, tenant, quantity=3)
    assert len(purchase["tickets"]) == 3
    assert len({t["ticket"]["id"] for t in purchase["tickets"]}) == 3
    for item in purchase["tickets"]:
        assert item["ticket"]["status"] == "active"
        assert item["ticket"]["secret_version"] == 0
        verdict = await _check(client, tenant, item["code"])
        assert verdict["result"] == "admitted", verdict
        assert verdict["ticket_id"] == item["ticket"]["id"]
        assert verdict["holder_name"] == "Ada Guest"
        assert verdict["ticket_type"] == "General"


async def test_concurrent_purchases_never_oversell(
    client: Client, tenant: TenantHandle, app: Litestar
) -> None:
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"], capacity=50)
    async with concurrent_client(app) as racing:
        responses = await asyncio.gather(
            *(buy(racing, tenant, ticket_type["id"]) for _ in range(200))
        )
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 50
    assert statuses.count(409) == 150
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, "sold_out")
    listed = await client.get(
        "/v1/tickets", params={"event_id": event["id"], "limit": 500}, headers=tenant.token()
    )
    assert len(listed.json()["items"]) == 50
    types = await client.get(f"/v1/events/{event['id']}/ticket-types", headers=tenant.token())
    assert types.json()[0]["sold"] == 50
    assert types.json()[0]["available"] == 0


async def test_a_replayed_purchase_returns_the_same_tickets_and_creates_nothing(
    client: Client, tenant: TenantHandle, settings: Settings, app: Litestar
) -> None:
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"], capacity=10)
    key = str(uuid.uuid4())
    first = await buy(client, tenant, ticket_type["id"], quantity=2, key=key)
    assert first.status_code == 201
    async with concurrent_client(app) as racing:
        again = await asyncio.gather(
            *(buy(racing, tenant, ticket_type["id"], quantity=2, key=key) for _ in range(5))
        )
    for replay in again:
        assert replay.status_code == 201
        # The same tickets; their codes are issued afresh (the answer is kept without them).
        assert _codeless(replay.json()) == _codeless(first.json())
        assert replay.headers["idempotent-replayed"] == "true"
    count = await _rows(
        settings, "SELECT count(*) FROM tickets WHERE ticket_type_id = :t", t=ticket_type["id"]
    )
    assert count[0][0] == 2
    types = await client.get(f"/v1/events/{event['id']}/ticket-types", headers=tenant.token())
    assert types.json()[0]["sold"] == 2

    other_body = await buy(client, tenant, ticket_type["id"], quantity=3, key=key)
    assert_problem(other_body, 422, "idempotency_key_reused")


async def test_concurrent_first_requests_with_one_key_buy_once(
    client: Client, tenant: TenantHandle, settings: Settings, app: Litestar
) -> None:
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"], capacity=10)
    key = str(uuid.uuid4())
    async with concurrent_client(app) as racing:
        responses = await asyncio.gather(
            *(buy(racing, tenant, ticket_type["id"], key=key) for _ in range(10))
        )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["purchase_id"] for r in responses}) == 1
    count = await _rows(
        settings, "SELECT count(*) FROM tickets WHERE ticket_type_id = :t", t=ticket_type["id"]
    )
    assert count[0][0] == 1


async def test_writes_need_an_idempotency_key(client: Client, tenant: TenantHandle) -> None:
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    response = await client.post(
        "/v1/purchases",
        json={"ticket_type_id": ticket_type["id"], "holder": {"user_id": "u", "name": "N"}},
        headers=tenant.token(),
    )
    assert_problem(response, 400, "idempotency_key_required")


async def test_transfer_supersedes_the_old_code_and_is_recorded_once(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    purchase = await bought(client, tenant)
    old = purchase["tickets"][0]
    ticket_id = old["ticket"]["id"]
    new_holder = {"user_id": "user-2", "name": "Grace Friend"}
    transferred = await client.post(
        f"/v1/tickets/{ticket_id}/transfer",
        json={"holder": new_holder},
        headers={**tenant.token(Role.SERVICE), "Idempotency-Key": "transfer-1"},
    )
    assert transferred.status_code == 200, transferred.text
    new = transferred.json()
    assert new["ticket"]["secret_version"] == 1
    assert new["ticket"]["holder"] == {**new_holder, "wallet": None}

    assert (await _check(client, tenant, old["code"]))["reason"] == VerdictReason.SUPERSEDED
    fresh = await _check(client, tenant, new["code"])
    assert fresh["result"] == "admitted"
    assert fresh["holder_name"] == "Grace Friend"

    history = await client.get(f"/v1/tickets/{ticket_id}/history", headers=tenant.token())
    steps = [
        (h["kind"], h["from_status"], h["to_status"], h["secret_version"]) for h in history.json()
    ]
    assert steps == [("purchased", None, "active", 0), ("transferred", "active", "active", 1)]
    assert history.json()[1]["details"]["previous_holder"]["name"] == "Ada Guest"
    outbox = await _rows(
        settings,
        "SELECT routing_key, payload FROM outbox WHERE ticket_id = :t ORDER BY created_at, id",
        t=ticket_id,
    )
    assert [row.routing_key for row in outbox] == ["ticket.purchased", "ticket.transferred"]
    envelope = outbox[1].payload
    assert envelope["specversion"] == "1.0"
    assert envelope["type"] == "dev.gatehouse.ticket.transferred"
    assert envelope["tenantid"] == str(tenant.id)
    assert envelope["subject"] == f"tickets/{ticket_id}"
    assert envelope["data"]["secret_version"] == 1

    # Retrying the transfer replays it: no third history row, no third event.
    retry = await client.post(
        f"/v1/tickets/{ticket_id}/transfer",
        json={"holder": new_holder},
        headers={**tenant.token(Role.SERVICE), "Idempotency-Key": "transfer-1"},
    )
    assert retry.status_code == 200
    assert {**retry.json(), "code": ""} == {**new, "code": ""}
    assert (await _check(client, tenant, retry.json()["code"]))["result"] == "admitted"
    assert (
        len((await client.get(f"/v1/tickets/{ticket_id}/history", headers=tenant.token())).json())
        == 2
    )
    assert len(await _rows(settings, "SELECT 1 FROM outbox WHERE ticket_id = :t", t=ticket_id)) == 2


async def test_revoked_tickets_are_refused_and_cannot_be_revoked_twice(
    client: Client, tenant: TenantHandle
) -> None:
    item = (await bought(client, tenant))["tickets"][0]
    ticket_id = item["ticket"]["id"]
    revoke = await client.post(
        f"/v1/tickets/{ticket_id}/revoke",
        json={"reason": "refunded"},
        headers={**tenant.token(), "Idempotency-Key": "r1"},
    )
    assert revoke.status_code == 200, revoke.text
    assert revoke.json()["status"] == "revoked"
    assert (await _check(client, tenant, item["code"]))["reason"] == VerdictReason.REVOKED
    twice = await client.post(
        f"/v1/tickets/{ticket_id}/revoke",
        json={"reason": "refunded"},
        headers={**tenant.token(), "Idempotency-Key": "r2"},
    )
    assert_problem(twice, 409, "already_revoked")
    transfer = await client.post(
        f"/v1/tickets/{ticket_id}/transfer",
        json={"holder": {"user_id": "x", "name": "X"}},
        headers={**tenant.token(), "Idempotency-Key": "t1"},
    )
    assert_problem(transfer, 422, "ticket_not_transferable")
    code = await client.get(f"/v1/tickets/{ticket_id}/code", headers=tenant.token())
    assert_problem(code, 422, "ticket_not_active")


async def test_tenants_never_see_each_other(client: Client, make_tenant: Any) -> None:
    a, b = await make_tenant("A"), await make_tenant("B")
    item = (await bought(client, a))["tickets"][0]
    ticket_id, event_id = item["ticket"]["id"], item["ticket"]["event_id"]
    for path in (
        f"/v1/tickets/{ticket_id}",
        f"/v1/tickets/{ticket_id}/history",
        f"/v1/events/{event_id}",
    ):
        assert_problem(await client.get(path, headers=b.token()), 404, "not_found")
    transfer = await client.post(
        f"/v1/tickets/{ticket_id}/transfer",
        json={"holder": {"user_id": "x", "name": "X"}},
        headers={**b.token(), "Idempotency-Key": "b-1"},
    )
    assert_problem(transfer, 404, "not_found")
    listed = await client.get("/v1/tickets", params={"event_id": event_id}, headers=b.token())
    assert listed.json()["items"] == []
    # B's checker does not even know A's keys.
    assert (await _check(client, b, item["code"]))["reason"] == VerdictReason.UNKNOWN_KEY


async def test_bad_tokens_get_401_or_403_with_problem_json(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    event = await create_event(client, tenant)
    url = f"/v1/events/{event['id']}"
    assert_problem(await client.get(url), 401, "missing_token")
    assert_problem(
        await client.get(url, headers={"Authorization": "Basic abc"}), 401, "missing_token"
    )
    assert_problem(
        await client.get(url, headers={"Authorization": "Bearer not-a-jwt"}), 401, "invalid_token"
    )
    # Minted an hour ago with a minute to live: expired without waiting for the clock.
    expired = tenant.token(ttl_seconds=60, now=datetime.now(UTC) - timedelta(hours=1))
    assert_problem(await client.get(url, headers=expired), 401, "token_expired")

    import jwt  # noqa: PLC0415

    forged = jwt.encode(
        {
            "sub": "x",
            "tenant_id": str(tenant.id),
            "role": "manager",
            "exp": datetime.now(UTC) + timedelta(minutes=5),
        },
        "a-different-secret-that-is-long-enough-for-hs256",
        algorithm="HS256",
    )
    assert_problem(
        await client.get(url, headers={"Authorization": f"Bearer {forged}"}), 401, "invalid_token"
    )
    no_tenant = jwt.encode(
        {"sub": "x", "role": "manager", "exp": datetime.now(UTC) + timedelta(minutes=5)},
        settings.auth.jwt_secret,
        algorithm="HS256",
    )
    assert_problem(
        await client.get(url, headers={"Authorization": f"Bearer {no_tenant}"}),
        401,
        "invalid_token",
    )

    scanner = tenant.token(
        Role.SCANNER, device_id=uuid.uuid4(), event_id=uuid.UUID(event["id"]), gate="A"
    )
    assert_problem(await client.get(url, headers=scanner), 403, "wrong_role")
    service = tenant.token(Role.SERVICE)
    rotate = await client.post(f"{url}/keys/rotate", headers=service)
    assert_problem(rotate, 403, "wrong_role")


async def test_invalid_bodies_get_400_validation_failed(
    client: Client, tenant: TenantHandle
) -> None:
    bad_event = await client.post("/v1/events", json={"name": ""}, headers=tenant.token())
    assert_problem(bad_event, 400, "validation_failed")
    assert bad_event.json()["errors"]
    backwards = await client.post(
        "/v1/events",
        json={
            "name": "X",
            "venue": "Y",
            "starts_at": "2030-01-02T00:00:00Z",
            "ends_at": "2030-01-01T00:00:00Z",
        },
        headers=tenant.token(),
    )
    assert_problem(backwards, 400, "invalid_time_window")
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    too_many = await buy(client, tenant, ticket_type["id"], quantity=51)
    assert_problem(too_many, 400, "validation_failed")
    bad_wallet = await buy(
        client, tenant, ticket_type["id"], holder={"user_id": "u", "name": "N", "wallet": "0xabc"}
    )
    assert_problem(bad_wallet, 400, "validation_failed")
    unknown_type = await buy(client, tenant, str(uuid.uuid4()))
    assert_problem(unknown_type, 404, "not_found")
    bad_cursor = await client.get("/v1/tickets", params={"cursor": "!!"}, headers=tenant.token())
    assert_problem(bad_cursor, 400, "invalid_cursor")


async def test_ticket_list_pages_with_a_cursor(client: Client, tenant: TenantHandle) -> None:
    purchase = await bought(client, tenant, quantity=7)
    event_id = purchase["tickets"][0]["ticket"]["event_id"]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"event_id": event_id, "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/tickets", params=params, headers=tenant.token())).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(t["ticket"]["id"] for t in purchase["tickets"])
    assert len(seen) == 7


async def test_codes_from_before_a_key_rotation_still_check(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    before = (await bought(client, tenant))["tickets"][0]
    event_id = before["ticket"]["event_id"]
    rotated = await client.post(f"/v1/events/{event_id}/keys/rotate", headers=tenant.token())
    assert rotated.status_code == 201, rotated.text
    assert (await _check(client, tenant, before["code"]))["result"] == "admitted"
    fresh = await client.get(f"/v1/tickets/{before['ticket']['id']}/code", headers=tenant.token())
    assert fresh.status_code == 200
    database = Database(settings.database)
    try:
        async with database.tenant(tenant.id) as session:
            ring = await KeyStore(settings.master_key).issuer_ring(
                session, uuid.UUID(event_id), tenant_id=tenant.id
            )
    finally:
        await database.close()
    decoded = read_code(ring.scanner_ring, fresh.json()["code"])
    assert isinstance(decoded, TicketCode)
    assert decoded.encryption_key_id == rotated.json()["encryption_key_id"]
    assert (await _check(client, tenant, fresh.json()["code"]))["result"] == "admitted"


async def test_the_expiry_job_expires_tickets_of_ended_events(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    purchase = await bought(client, tenant, quantity=2)
    ticket_ids = [t["ticket"]["id"] for t in purchase["tickets"]]
    event = (
        await client.get(
            f"/v1/events/{purchase['tickets'][0]['ticket']['event_id']}", headers=tenant.token()
        )
    ).json()
    database = Database(settings.database)
    try:
        # As ``gatehouse-server expire`` does: expired tickets leave the API's ticket cache.
        async with invalidating(database, settings.redis):
            before_end = datetime.fromisoformat(event["ends_at"]) - timedelta(minutes=1)
            await expire_ended_events(database, before_end)
            ticket = await client.get(f"/v1/tickets/{ticket_ids[0]}", headers=tenant.token())
            assert ticket.json()["status"] == "active"  # and now cached
            after_end = datetime.fromisoformat(event["ends_at"]) + timedelta(minutes=1)
            assert await expire_ended_events(database, after_end) >= 2
            assert await expire_ended_events(database, after_end) == 0
    finally:
        await database.close()
    for ticket_id in ticket_ids:
        ticket = (await client.get(f"/v1/tickets/{ticket_id}", headers=tenant.token())).json()
        assert ticket["status"] == "expired"
        history = (
            await client.get(f"/v1/tickets/{ticket_id}/history", headers=tenant.token())
        ).json()
        assert [h["kind"] for h in history] == ["purchased", "expired"]
        events = await _rows(
            settings, "SELECT routing_key FROM outbox WHERE ticket_id = :t", t=ticket_id
        )
        assert sorted(r.routing_key for r in events) == ["ticket.expired", "ticket.purchased"]
    assert (await _check(client, tenant, purchase["tickets"][0]["code"]))[
        "reason"
    ] == VerdictReason.EXPIRED
