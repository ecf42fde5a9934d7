"""The demo seed gives a person something real to try: its token works and its codes check
out the way their labels say."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sync_server.demo import seed_demo
from sync_server.settings import Settings
from tests.sync_server.helpers import Client

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_demo_seed(client: Client, settings: Settings) -> None:
    seed = await seed_demo(settings, datetime.now(UTC))
    headers = {"Authorization": f"Bearer {seed.manager_token}"}
    event = await client.get(f"/v1/events/{seed.event_id}", headers=headers)
    assert event.status_code == 200
    outcomes = {}
    for ticket in seed.tickets:
        checked = await client.post("/v1/codes/check", json={"code": ticket.code}, headers=headers)
        verdict = checked.json()["verdict"]
        outcomes[ticket.label] = verdict["reason"] or verdict["result"]
    assert list(outcomes.values()) == [
        "admitted",
        "admitted",
        "admitted",
        "superseded",
        "revoked",
        "admitted",
    ], outcomes
    # The printed enrollment codes enroll scanners for their gates, once each.
    assert set(seed.enrollment_codes) == {"North 1", "South 2"}
    code = seed.enrollment_codes["North 1"]
    enrolled = await client.post(
        "/v1/devices/enroll", json={"code": code, "device_name": "demo scanner"}
    )
    assert enrolled.status_code == 201, enrolled.text
    assert enrolled.json()["gate"] == "North 1"
    assert enrolled.json()["event"]["event_id"] == str(seed.event_id)
    again = await client.post("/v1/devices/enroll", json={"code": code, "device_name": "second"})
    assert again.status_code == 422
