from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.sync_server.conftest import TenantHandle

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

EVENT = {
    "name": "Spring Concert",
    "venue": "Main Hall",
    "starts_at": "2027-05-01T19:00:00Z",
    "ends_at": "2027-05-01T23:00:00Z",
}


async def test_create_and_read_an_event(
    client: AsyncTestClient[Litestar], tenant: TenantHandle
) -> None:
    created = await client.post("/v1/events", json=EVENT, headers=tenant.token())
    assert created.status_code == 201, created.text
    event: dict[str, Any] = created.json()
    assert event["name"] == "Spring Concert"
    read = await client.get(f"/v1/events/{event['id']}", headers=tenant.token())
    assert read.json() == event


async def test_openapi_lists_the_api_without_a_token(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/v1/events", "/v1/purchases", "/v1/tickets/{ticket_id}/transfer", "/health"):
        assert path in paths, path


async def test_health_needs_no_token(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_unknown_paths_are_problem_json(
    client: AsyncTestClient[Litestar], tenant: TenantHandle
) -> None:
    response = await client.get("/v1/nothing-here", headers=tenant.token())
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "not_found"
