"""Numbers and times at the edges of what JSON, Python and Postgres can hold, as a fuzzer sends
them: each is a 400 problem+json that names the field, never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import EVENT, Client, assert_problem, buy, create_event

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

HUGE = 2**64
#: Times Python can hold but not convert to UTC, and times far outside any event.
EDGE_TIMES = [
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    "9999-12-31T23:59:59Z",
    "1900-01-01T00:00:00Z",
]


def _names(response: Any, field: str) -> None:
    assert_problem(response, 400, "validation_failed")
    errors = response.json()["errors"]
    assert [error["key"] for error in errors] == [field], errors


@pytest.mark.parametrize("when", EDGE_TIMES)
@pytest.mark.parametrize("field", ["starts_at", "ends_at", "admission_opens_at"])
async def test_an_event_time_outside_2000_to_2200_is_a_400(
    client: Client, tenant: TenantHandle, field: str, when: str
) -> None:
    response = await client.post("/v1/events", json={**EVENT, field: when}, headers=tenant.token())
    _names(response, field)


@pytest.mark.parametrize("when", EDGE_TIMES)
@pytest.mark.parametrize("field", ["since", "until"])
async def test_a_scan_log_time_outside_2000_to_2200_is_a_400(
    client: Client, tenant: TenantHandle, field: str, when: str
) -> None:
    for accept in ("application/json", "text/csv"):
        response = await client.get(
            "/v1/scans", params={field: when}, headers={**tenant.token(), "Accept": accept}
        )
        _names(response, field)


async def test_huge_numbers_are_a_400_naming_the_field(
    client: Client, tenant: TenantHandle
) -> None:
    event = await create_event(client, tenant)
    capacity = await client.post(
        f"/v1/events/{event['id']}/ticket-types",
        json={"name": "General", "capacity": HUGE},
        headers=tenant.token(),
    )
    _names(capacity, "capacity")
    ticket_type = await client.post(
        f"/v1/events/{event['id']}/ticket-types",
        json={"name": "General", "capacity": 10},
        headers=tenant.token(),
    )
    quantity = await buy(client, tenant, ticket_type.json()["id"], quantity=HUGE)
    _names(quantity, "quantity")
    ttl = await client.post(
        "/v1/devices/enrollments",
        json={"event_id": event["id"], "gate": "North", "ttl_seconds": HUGE},
        headers=tenant.token(),
    )
    _names(ttl, "ttl_seconds")
    for path in ("/v1/events", "/v1/tickets", "/v1/devices", "/v1/scans"):
        limit = await client.get(path, params={"limit": str(HUGE)}, headers=tenant.token())
        _names(limit, "limit")
