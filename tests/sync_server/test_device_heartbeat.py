"""The scanners' heartbeat (issue 17): what a device says about itself once a sync cycle, and
what managers see of it in ``GET /v1/devices`` — last contact, ``online``, ``status`` and the
reported state — with the server's clock moved (``ManualClock``) instead of waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from shared.clock import ManualClock
from sync_server.app import create_app
from sync_server.domain.devices.controllers import HEARTBEAT_MAX_BYTES
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import DeviceHandle, create_event, enrolled_device

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

Client = AsyncTestClient[Litestar]

HEARTBEAT = "/v1/devices/me/heartbeat"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def client(settings: Settings, clock: ManualClock) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(settings, clock=clock)) as test_client:
        yield test_client


async def _gate(client: Client, tenant: TenantHandle, gate: str = "North 1") -> DeviceHandle:
    event = await create_event(client, tenant)
    return await enrolled_device(client, tenant, event["id"], gate)


async def _device(
    client: Client, tenant: TenantHandle, clock: ManualClock, device: DeviceHandle
) -> dict[str, Any]:
    """The device as the manager's list shows it, checked against ``GET /v1/devices/{id}``."""
    manager = tenant.at(clock.now()).token()
    listed = await client.get("/v1/devices", headers=manager)
    assert listed.status_code == 200, listed.text
    found: dict[str, Any] = next(d for d in listed.json()["items"] if d["id"] == device.device_id)
    one = await client.get(f"/v1/devices/{device.device_id}", headers=manager)
    assert one.status_code == 200, one.text
    assert one.json() == found
    return found


def _beat(**fields: Any) -> dict[str, Any]:
    return {
        "queued_scans": 7,
        "queued_annulments": 1,
        "oldest_queued_at": "2026-12-04T19:30:00Z",
        "clock_offset_ms": -420_000,
        "app_version": "0.1.0",
        "setup_version": 3,
        "last_sync_at": "2026-12-04T19:29:00Z",
        "sync_interval_seconds": 5,
        "lab_mode": False,
    } | fields


async def test_a_heartbeat_is_what_managers_see_of_the_device(
    client: Client, tenant: TenantHandle, clock: ManualClock
) -> None:
    gate = await _gate(client, tenant)
    sent = await client.post(HEARTBEAT, json=_beat(), headers=gate.headers)
    assert sent.status_code == 204, sent.text

    device = await _device(client, tenant, clock, gate)

    assert device["online"] is True
    assert device["heartbeat_at"] == device["last_seen_at"]
    assert datetime.fromisoformat(device["last_seen_at"]) == clock.now()
    assert device["queued_scans"] == 7
    assert device["queued_annulments"] == 1
    assert datetime.fromisoformat(device["oldest_queued_at"]) == datetime(
        2026, 12, 4, 19, 30, tzinfo=UTC
    )
    assert device["clock_offset_ms"] == -420_000
    assert (device["app_version"], device["setup_version"]) == ("0.1.0", 3)
    assert device["sync_interval_seconds"] == 5
    assert device["lab_mode"] is False
    assert device["status"].startswith("Online")
    assert "7 scans not yet uploaded, the oldest from 19:30 UTC" in device["status"]
    assert "1 annulment not yet sent" in device["status"]
    assert "Its clock is 7 min ahead." in device["status"]

    # The queue drained: the next heartbeat says so, and the old numbers are gone.
    assert (
        await client.post(
            HEARTBEAT,
            json=_beat(queued_scans=0, queued_annulments=0, oldest_queued_at=None),
            headers=gate.headers,
        )
    ).status_code == 204
    device = await _device(client, tenant, clock, gate)
    assert (device["queued_scans"], device["oldest_queued_at"]) == (0, None)
    assert "Nothing waiting to upload." in device["status"]


async def test_a_device_goes_offline_when_its_syncs_stop_and_keeps_its_last_report(
    client: Client, tenant: TenantHandle, clock: ManualClock
) -> None:
    gate = await _gate(client, tenant)
    await client.post(HEARTBEAT, json=_beat(sync_interval_seconds=5), headers=gate.headers)

    # Three intervals of 5 s are 15 s: less than the minute every device gets.
    clock.advance(60)
    assert (await _device(client, tenant, clock, gate))["online"] is True
    clock.advance(1)
    device = await _device(client, tenant, clock, gate)
    assert device["online"] is False
    assert device["status"].startswith("Offline: no contact for 1 min")
    assert "7 scans not yet uploaded" in device["status"]
    assert "when it last reported, 1 min ago" in device["status"]
    assert device["queued_scans"] == 7

    # Any sync is contact again (GET /v1/devices/me), heartbeat or not.
    assert (await client.get("/v1/devices/me", headers=gate.headers)).status_code == 200
    assert (await _device(client, tenant, clock, gate))["online"] is True


async def test_a_slow_syncing_device_gets_three_intervals_up_to_ten_minutes(
    client: Client, tenant: TenantHandle, clock: ManualClock
) -> None:
    slow = await _gate(client, tenant, "Slow")
    slowest = await _gate(client, tenant, "Slowest")
    await client.post(HEARTBEAT, json=_beat(sync_interval_seconds=100), headers=slow.headers)
    await client.post(HEARTBEAT, json=_beat(sync_interval_seconds=3600), headers=slowest.headers)

    clock.advance(300)
    assert (await _device(client, tenant, clock, slow))["online"] is True
    clock.advance(1)
    assert (await _device(client, tenant, clock, slow))["online"] is False
    clock.advance(299)
    assert (await _device(client, tenant, clock, slowest))["online"] is True
    clock.advance(1)
    assert (await _device(client, tenant, clock, slowest))["online"] is False


async def test_a_device_that_never_sent_a_heartbeat_is_listed_as_before(
    client: Client, tenant: TenantHandle, clock: ManualClock
) -> None:
    """An older scanner syncs without a heartbeat: its contact still counts, and the page says
    it has not reported its queue."""
    gate = await _gate(client, tenant)
    device = await _device(client, tenant, clock, gate)
    assert device["online"] is False
    assert device["status"] == "Not connected since it was enrolled."

    assert (await client.get("/v1/devices/me", headers=gate.headers)).status_code == 200
    device = await _device(client, tenant, clock, gate)
    assert device["online"] is True
    assert device["heartbeat_at"] is None
    assert device["queued_scans"] is None
    assert "has not reported its queue" in device["status"]


async def test_a_revoked_device_is_offline_and_its_heartbeat_refused(
    client: Client, tenant: TenantHandle, clock: ManualClock
) -> None:
    gate = await _gate(client, tenant)
    await client.post(HEARTBEAT, json=_beat(), headers=gate.headers)
    revoked = await client.delete(
        f"/v1/devices/{gate.device_id}", headers=tenant.at(clock.now()).token()
    )
    assert revoked.status_code == 204

    refused = await client.post(HEARTBEAT, json=_beat(queued_scans=0), headers=gate.headers)
    assert refused.status_code == 401
    assert refused.json()["code"] == "device_revoked"
    device = await _device(client, tenant, clock, gate)
    assert (device["online"], device["queued_scans"]) == (False, 7)
    assert device["status"] == "Revoked by a manager."


async def test_a_device_reports_only_about_itself(
    client: Client, tenant: TenantHandle, make_tenant: Any, clock: ManualClock
) -> None:
    """The row written is the token's device: nothing in the body names another, and another
    tenant's manager does not find it at all."""
    north = await _gate(client, tenant, "North")
    south = await _gate(client, tenant, "South")
    await client.post(HEARTBEAT, json=_beat(queued_scans=3), headers=south.headers)
    for _ in range(3):  # a retry is the same report again
        sent = await client.post(
            HEARTBEAT,
            json=_beat(queued_scans=2_000_000_000, device_id=south.device_id),
            headers=north.headers,
        )
        assert sent.status_code == 204, sent.text

    assert (await _device(client, tenant, clock, north))["queued_scans"] == 2_000_000_000
    assert (await _device(client, tenant, clock, south))["queued_scans"] == 3
    other: TenantHandle = await make_tenant("Other venue")
    elsewhere = await client.get(
        f"/v1/devices/{north.device_id}", headers=other.at(clock.now()).token()
    )
    assert elsewhere.status_code == 404


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"queued_scans": -1}, "queued_scans"),
        ({"queued_scans": 2**31}, "queued_scans"),
        ({"queued_scans": "many"}, "queued_scans"),
        ({"queued_annulments": -5}, "queued_annulments"),
        ({"clock_offset_ms": 2**31}, "clock_offset_ms"),
        ({"clock_offset_ms": -(2**31)}, "clock_offset_ms"),
        ({"oldest_queued_at": "2200-01-01T00:00:00Z"}, "oldest_queued_at"),
        ({"oldest_queued_at": "2026-12-04T19:30:00"}, "oldest_queued_at"),
        ({"last_sync_at": "1969-12-31T23:59:59Z"}, "last_sync_at"),
        ({"app_version": "1.0\nRevoked by a manager."}, "app_version"),
        ({"app_version": "x" * 65}, "app_version"),
        ({"setup_version": -1}, "setup_version"),
        ({"sync_interval_seconds": 0}, "sync_interval_seconds"),
        ({"sync_interval_seconds": 3601}, "sync_interval_seconds"),
        ({"lab_mode": "yes"}, "lab_mode"),
    ],
)
async def test_absurd_heartbeats_are_refused_naming_the_field(
    client: Client, tenant: TenantHandle, clock: ManualClock, fields: dict[str, Any], key: str
) -> None:
    gate = await _gate(client, tenant)
    await client.post(HEARTBEAT, json=_beat(), headers=gate.headers)

    refused = await client.post(HEARTBEAT, json=_beat(**fields), headers=gate.headers)

    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "validation_failed"
    assert [error["key"] for error in refused.json()["errors"]] == [key]
    assert (await _device(client, tenant, clock, gate))["queued_scans"] == 7  # unchanged


async def test_fields_a_newer_scanner_adds_are_ignored_and_the_size_is_bounded(
    client: Client, tenant: TenantHandle, clock: ManualClock
) -> None:
    gate = await _gate(client, tenant)
    newer = await client.post(
        HEARTBEAT, json=_beat(peers_heard=4, queued_scans=1), headers=gate.headers
    )
    assert newer.status_code == 204, newer.text
    assert (await _device(client, tenant, clock, gate))["queued_scans"] == 1
    minimal = await client.post(HEARTBEAT, json={"queued_scans": 0}, headers=gate.headers)
    assert minimal.status_code == 204, minimal.text

    padded = _beat(padding="x" * HEARTBEAT_MAX_BYTES)
    too_large = await client.post(HEARTBEAT, json=padded, headers=gate.headers)
    assert too_large.status_code == 413, too_large.text
    not_json = await client.post(
        HEARTBEAT,
        content=b"{",
        headers={**gate.headers, "Content-Type": "application/json"},
    )
    assert not_json.status_code == 400, not_json.text


async def test_only_a_scanner_sends_a_heartbeat_and_only_managers_read_devices(
    client: Client, tenant: TenantHandle, clock: ManualClock
) -> None:
    gate = await _gate(client, tenant)
    manager = tenant.at(clock.now()).token()
    as_manager = await client.post(HEARTBEAT, json=_beat(), headers=manager)
    assert as_manager.status_code == 403, as_manager.text
    as_scanner = await client.get(f"/v1/devices/{gate.device_id}", headers=gate.headers)
    assert as_scanner.status_code == 403, as_scanner.text
    anonymous = await client.post(HEARTBEAT, json=_beat())
    assert anonymous.status_code == 401
