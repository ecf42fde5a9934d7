"""Seats back on revocation (issue 19) against the real Postgres and RabbitMQ: revocations that
release seats race 200 purchases on a type at capacity without overselling, each released seat
is sold once, and every ``ticket.revoked`` event reaches the broker saying whether the seat was
released."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from litestar import Litestar

from sync_server.messaging.relay import OutboxRelay, RelayConfig
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import (
    Client,
    assert_problem,
    buy,
    concurrent_client,
    create_event,
    create_ticket_type,
)
from tests.sync_server.messaging.conftest import running
from tests.sync_server.messaging.rabbit import bound_queue, collect, of_tenants

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

CAPACITY = 50
PURCHASES = 200
FAST = RelayConfig(batch_size=100, poll_interval=0.5, backoff_initial=0.1, backoff_max=1.0)


async def _revoke(client: Any, tenant: TenantHandle, ticket_id: str, **fields: Any) -> Any:
    return await client.post(
        f"/v1/tickets/{ticket_id}/revoke",
        json={"reason": "refunded", **fields},
        headers={**tenant.token(), "Idempotency-Key": str(uuid.uuid4())},
    )


async def _ticket_type(client: Client, tenant: TenantHandle, event_id: str) -> dict[str, Any]:
    types = await client.get(f"/v1/events/{event_id}/ticket-types", headers=tenant.token())
    assert types.status_code == 200, types.text
    found: dict[str, Any] = types.json()[0]
    return found


async def _tickets(client: Client, tenant: TenantHandle, event_id: str) -> list[dict[str, Any]]:
    listed = await client.get(
        "/v1/tickets", params={"event_id": event_id, "limit": 500}, headers=tenant.token()
    )
    assert listed.status_code == 200, listed.text
    assert listed.json()["next_cursor"] is None
    items: list[dict[str, Any]] = listed.json()["items"]
    return items


async def test_release_seat_is_set_on_create_and_patch_and_revocations_override_it(
    client: Client, tenant: TenantHandle
) -> None:
    event = await create_event(client, tenant)
    created = await client.post(
        f"/v1/events/{event['id']}/ticket-types",
        json={"name": "Refundable", "capacity": 3, "release_seat": True},
        headers=tenant.token(),
    )
    assert created.status_code == 201, created.text
    assert created.json()["release_seat"] is True
    kept = await create_ticket_type(client, tenant, event["id"], capacity=3, name="Kept")
    assert kept["release_seat"] is False
    patched = await client.patch(
        f"/v1/events/{event['id']}/ticket-types/{kept['id']}",
        json={"release_seat": True},
        headers=tenant.token(),
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["release_seat"] is True
    assert patched.json()["capacity"] == 3
    bad = await client.patch(
        f"/v1/events/{event['id']}/ticket-types/{kept['id']}",
        json={"release_seat": "yes"},
        headers=tenant.token(),
    )
    assert_problem(bad, 400, "validation_failed")

    response = await buy(client, tenant, created.json()["id"], quantity=3)
    assert response.status_code == 201, response.text
    first, second, third = (t["ticket"]["id"] for t in response.json()["tickets"])
    # Overridden per call: kept though the type releases.
    assert (await _revoke(client, tenant, first, release_seat=False)).status_code == 200
    types = {
        t["name"]: t
        for t in (
            await client.get(f"/v1/events/{event['id']}/ticket-types", headers=tenant.token())
        ).json()
    }
    assert types["Refundable"]["sold"] == 3
    # As the type says.
    assert (await _revoke(client, tenant, second)).status_code == 200
    # Revoking twice releases once.
    assert_problem(await _revoke(client, tenant, second, release_seat=True), 409, "already_revoked")
    types = {
        t["name"]: t
        for t in (
            await client.get(f"/v1/events/{event['id']}/ticket-types", headers=tenant.token())
        ).json()
    }
    assert types["Refundable"]["sold"] == 2
    assert types["Refundable"]["available"] == 1
    history = await client.get(f"/v1/tickets/{second}/history", headers=tenant.token())
    assert history.json()[-1]["kind"] == "revoked"
    assert history.json()[-1]["details"] == {"seat_released": True}
    history = await client.get(f"/v1/tickets/{first}/history", headers=tenant.token())
    assert history.json()[-1]["details"] == {"seat_released": False}
    assert third


async def test_seats_released_under_200_concurrent_purchases_never_oversell(
    client: Client,
    tenant: TenantHandle,
    app: Litestar,
    amqp_url: str,
    relay_url: str,
) -> None:
    event = await create_event(client, tenant)
    created = await client.post(
        f"/v1/events/{event['id']}/ticket-types",
        json={"name": "General", "capacity": CAPACITY, "release_seat": True},
        headers=tenant.token(),
    )
    assert created.status_code == 201, created.text
    type_id = created.json()["id"]
    # At capacity: every seat sold.
    sold_out = await asyncio.gather(
        *(buy(client, tenant, type_id, quantity=10) for _ in range(CAPACITY // 10))
    )
    assert [r.status_code for r in sold_out] == [201] * (CAPACITY // 10)
    first_sold = [t["ticket"]["id"] for r in sold_out for t in r.json()["tickets"]]
    refunded, kept = first_sold[: CAPACITY // 2], first_sold[CAPACITY // 2 :]

    async with bound_queue(amqp_url, routing_keys=("ticket.revoked",)) as queue:
        relay = OutboxRelay(relay_url, amqp_url, FAST)
        async with running(relay):
            # Revocations interleaved with the purchases, so that they race rather than follow.
            calls: list[tuple[str, Any]] = [
                ("buy", lambda racing: buy(racing, tenant, type_id)) for _ in range(PURCHASES)
            ]
            for i, ticket_id in enumerate(refunded):
                calls.insert(
                    i * (PURCHASES // len(refunded)) + i,
                    ("revoke", lambda racing, t=ticket_id: _revoke(racing, tenant, t)),
                )
            # One refund that keeps its seat, racing too.
            calls.insert(
                PURCHASES // 2,
                ("revoke", lambda racing: _revoke(racing, tenant, kept[0], release_seat=False)),
            )
            async with concurrent_client(app) as racing:
                results = await asyncio.gather(*(call(racing) for _, call in calls))
            purchases = [r for (kind, _), r in zip(calls, results, strict=True) if kind == "buy"]
            revocations = [
                r for (kind, _), r in zip(calls, results, strict=True) if kind == "revoke"
            ]
            assert len(purchases) == PURCHASES
            assert [r.status_code for r in revocations] == [200] * (len(refunded) + 1)
            statuses = [r.status_code for r in purchases]
            assert statuses.count(201) + statuses.count(409) == PURCHASES
            for response in purchases:
                if response.status_code == 409:
                    assert_problem(response, 409, "sold_out")
            raced = statuses.count(201)
            # Every released seat sold at most once: never more sales than seats released.
            assert raced <= len(refunded)

            # Final counts add up: ``sold`` is the tickets not revoked and the one refund that
            # kept its seat, within the capacity.
            live = [
                t for t in await _tickets(client, tenant, event["id"]) if t["status"] != "revoked"
            ]
            counted = await _ticket_type(client, tenant, event["id"])
            assert counted["sold"] == len(live) + 1 == CAPACITY - len(refunded) + raced
            assert counted["sold"] <= CAPACITY
            # What is left is exactly the seats released and not yet sold again: buying them
            # sells out again, and no further.
            left = len(refunded) - raced
            assert counted["available"] == left
            for _ in range(left):
                assert (await buy(client, tenant, type_id)).status_code == 201
            assert_problem(await buy(client, tenant, type_id), 409, "sold_out")
            assert (await _ticket_type(client, tenant, event["id"]))["sold"] == CAPACITY

            arrivals = await collect(
                queue, mine=of_tenants(tenant.id), expected=len(refunded) + 1, settle=0.5
            )
    released = {
        a.envelope["data"]["ticket_id"]: a.envelope["data"]["seat_released"] for a in arrivals
    }
    assert {a.routing_key for a in arrivals} == {"ticket.revoked"}
    assert len(arrivals) == len(refunded) + 1
    assert released == {**dict.fromkeys(refunded, True), kept[0]: False}
