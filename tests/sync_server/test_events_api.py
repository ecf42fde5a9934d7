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
