"""Changing an event and its ticket types through the API (PATCH), against the real Postgres:
the result is checked as a new one would be, capacity never drops below what is sold (even
while tickets sell), and what scanners must learn grows the event's setup version."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from litestar import Litestar

from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import (
    EVENT,
    Client,
    assert_problem,
    buy,
    concurrent_client,
    create_event,
    create_ticket_type,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def _patch(client: Client, tenant: TenantHandle, path: str, body: dict[str, Any]) -> Any:
    return await client.patch(path, json=body, headers=tenant.token())


async def test_an_event_changes_only_the_fields_given(client: Client, tenant: TenantHandle) -> None:
    event = await create_event(client, tenant)
    response = await _patch(
        client, tenant, f"/v1/events/{event['id']}", {"name": "Autumn Concert", "venue": "Annex"}
    )
    assert response.status_code == 200, response.text
    changed = response.json()
    assert (changed["name"], changed["venue"]) == ("Autumn Concert", "Annex")
    assert changed["starts_at"] == event["starts_at"]
    # Name and venue are nothing a scanner decides by: the setup stays.
    assert changed["setup_version"] == event["setup_version"]
    read = await client.get(f"/v1/events/{event['id']}", headers=tenant.token())
    assert read.json() == changed


async def test_new_times_and_time_zone_reach_scanners_through_the_setup_version(
    client: Client, tenant: TenantHandle
) -> None:
    event = await create_event(client, tenant)
    response = await _patch(
        client,
        tenant,
        f"/v1/events/{event['id']}",
        {
            "starts_at": "2030-05-01T18:00:00+02:00",
            "time_zone": "Europe/Berlin",
            "days": [{"date": "2030-05-01", "name": "Opening"}],
            "admission_opens_at": "2030-05-01T17:00:00+02:00",
        },
    )
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["starts_at"] == "2030-05-01T16:00:00Z"
    assert changed["time_zone"] == "Europe/Berlin"
    assert [d["name"] for d in changed["days"]] == ["Opening"]
    assert changed["setup_version"] > event["setup_version"]
    cleared = await _patch(
        client, tenant, f"/v1/events/{event['id']}", {"admission_opens_at": None}
    )
    assert cleared.json()["admission_opens_at"] is None


async def test_an_events_expiry_grace_is_set_kept_and_reset_to_the_servers_default(
    client: Client, tenant: TenantHandle
) -> None:
    """``expiry_grace_seconds``: given at creation, kept by a change that does not name it,
    changed by one that does, and ``null`` puts the event back on the server's default."""
    plain = await create_event(client, tenant)
    assert plain["expiry_grace_seconds"] is None
    event = await create_event(client, tenant, expiry_grace_seconds=1800)
    assert event["expiry_grace_seconds"] == 1800
    path = f"/v1/events/{event['id']}"
    renamed = await _patch(client, tenant, path, {"name": "Renamed"})
    assert renamed.json()["expiry_grace_seconds"] == 1800
    longer = await _patch(client, tenant, path, {"expiry_grace_seconds": 30 * 24 * 3600})
    assert longer.status_code == 200, longer.text
    assert longer.json()["expiry_grace_seconds"] == 30 * 24 * 3600
    # Nothing a scanner decides by: the setup version stays.
    assert longer.json()["setup_version"] == event["setup_version"]
    reset = await _patch(client, tenant, path, {"expiry_grace_seconds": None})
    assert reset.status_code == 200, reset.text
    read = await client.get(path, headers=tenant.token())
    assert read.json()["expiry_grace_seconds"] is None


@pytest.mark.parametrize("grace", [-1, 30 * 24 * 3600 + 1, 1.5, "six hours", 2**63])
async def test_a_new_event_with_a_wrong_expiry_grace_is_refused(
    client: Client, tenant: TenantHandle, grace: Any
) -> None:
    response = await client.post(
        "/v1/events", json={**EVENT, "expiry_grace_seconds": grace}, headers=tenant.token()
    )
    assert_problem(response, 400, "validation_failed")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"ends_at": "2030-05-01T18:00:00Z"}, "invalid_time_window"),  # before it starts
        ({"admission_opens_at": "2030-05-02T00:00:00Z"}, "invalid_time_window"),
        ({"time_zone": "Mars/Olympus"}, "invalid_time_zone"),
        ({"days": [{"date": "2030-05-01"}, {"date": "2030-05-01"}]}, "duplicate_day"),
        ({"name": ""}, "validation_failed"),
        ({"capacity": 5}, "validation_failed"),  # not a field of an event
        ({"expiry_grace_seconds": -1}, "validation_failed"),
        ({"expiry_grace_seconds": 30 * 24 * 3600 + 1}, "validation_failed"),  # over 30 days
        ({"expiry_grace_seconds": "6h"}, "validation_failed"),
        ({"expiry_grace_seconds": 2**40}, "validation_failed"),  # beyond the column's integer
    ],
)
async def test_a_change_that_would_make_a_wrong_event_is_refused_and_changes_nothing(
    client: Client, tenant: TenantHandle, body: dict[str, Any], code: str
) -> None:
    event = await create_event(client, tenant)
    response = await _patch(client, tenant, f"/v1/events/{event['id']}", body)
    assert_problem(response, 400, code)
    read = await client.get(f"/v1/events/{event['id']}", headers=tenant.token())
    assert read.json() == event


async def test_another_tenants_event_and_ticket_types_are_not_found(
    client: Client, tenant: TenantHandle, make_tenant: Any
) -> None:
    event = await create_event(client, tenant)
    kind = await create_ticket_type(client, tenant, event["id"])
    other: TenantHandle = await make_tenant("Other venue")
    response = await _patch(client, other, f"/v1/events/{event['id']}", {"name": "Mine"})
    assert_problem(response, 404, "not_found")
    response = await _patch(
        client, other, f"/v1/events/{event['id']}/ticket-types/{kind['id']}", {"capacity": 1}
    )
    assert_problem(response, 404, "not_found")


async def test_a_ticket_type_changes_its_name_and_capacity_but_not_below_what_is_sold(
    client: Client, tenant: TenantHandle
) -> None:
    event = await create_event(client, tenant)
    kind = await create_ticket_type(client, tenant, event["id"], capacity=10)
    await create_ticket_type(client, tenant, event["id"], name="VIP")
    assert (await buy(client, tenant, kind["id"], quantity=3)).status_code == 201
    path = f"/v1/events/{event['id']}/ticket-types/{kind['id']}"

    response = await _patch(client, tenant, path, {"name": "Standing", "capacity": 3})
    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["capacity"]) == ("Standing", 3)
    assert response.json()["available"] == 0

    refused = await _patch(client, tenant, path, {"capacity": 2, "name": "Renamed"})
    assert_problem(refused, 409, "capacity_below_sold")
    assert "3 tickets of this type are sold already" in refused.json()["detail"]
    taken = await _patch(client, tenant, path, {"name": "VIP"})
    assert_problem(taken, 409, "ticket_type_exists")
    types = await client.get(f"/v1/events/{event['id']}/ticket-types", headers=tenant.token())
    assert {(t["name"], t["capacity"]) for t in types.json()} >= {("Standing", 3)}


async def test_the_old_days_only_request_still_works(client: Client, tenant: TenantHandle) -> None:
    event = await create_event(client, tenant)
    kind = await create_ticket_type(client, tenant, event["id"])
    path = f"/v1/events/{event['id']}/ticket-types/{kind['id']}"
    response = await _patch(client, tenant, path, {"days": ["2030-05-01"]})
    assert response.status_code == 200, response.text
    assert response.json()["days"] == ["2030-05-01"]
    assert response.json()["capacity"] == kind["capacity"]


async def test_lowering_capacity_while_tickets_sell_never_leaves_more_sold_than_capacity(
    client: Client, tenant: TenantHandle, app: Litestar
) -> None:
    event = await create_event(client, tenant)
    kind = await create_ticket_type(client, tenant, event["id"], capacity=40)
    path = f"/v1/events/{event['id']}/ticket-types/{kind['id']}"
    async with concurrent_client(app) as racing:
        responses = await asyncio.gather(
            *(buy(racing, tenant, kind["id"]) for _ in range(30)),
            *(_patch(racing, tenant, path, {"capacity": 20}) for _ in range(3)),
        )
    sales, changes = responses[:30], responses[30:]
    sold = sum(r.status_code == 201 for r in sales)
    assert all(r.status_code in {201, 409} for r in sales)
    assert all(r.status_code in {200, 409} for r in changes)
    final = await client.get(f"/v1/events/{event['id']}/ticket-types", headers=tenant.token())
    (row,) = final.json()
    assert row["sold"] == sold
    assert row["sold"] <= row["capacity"]
    if any(r.status_code == 200 for r in changes):
        assert row["capacity"] == 20
    else:  # every change came after more than 20 were sold
        assert row["capacity"] == 40
        assert sold > 20


async def test_concurrent_event_changes_apply_one_after_the_other(
    client: Client, tenant: TenantHandle, app: Litestar
) -> None:
    event = await create_event(client, tenant)
    path = f"/v1/events/{event['id']}"
    async with concurrent_client(app) as racing:
        # Each alone is a valid event; both together would end before it starts.
        later_start, earlier_end = await asyncio.gather(
            _patch(racing, tenant, path, {"starts_at": "2030-05-01T22:00:00Z"}),
            _patch(racing, tenant, path, {"ends_at": "2030-05-01T21:00:00Z"}),
        )
    statuses = sorted([later_start.status_code, earlier_end.status_code])
    assert statuses == [200, 400]
    read = (await client.get(path, headers=tenant.token())).json()
    assert read["ends_at"] > read["starts_at"]
