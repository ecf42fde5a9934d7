"""What an enrolled device may claim, tried as an attacker would (issue 14, items 1-5).

A device's token is a key to its own gate and its own scans, not to the timeline, other gates'
counts or other devices' verdicts: each test here is one way a device used to get further than
that (see docs/sync-protocol.md, "What a device may claim").
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.domain import Direction
from shared.ids import new_id
from shared.timeline import AdmittedScan, replay
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import (
    Client,
    DeviceHandle,
    assert_problem,
    buy,
    create_event,
    create_ticket_type,
    enrolled_device,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def _codes(client: Client, tenant: TenantHandle, **event: Any) -> tuple[str, list[str]]:
    created = await create_event(client, tenant, **event)
    ticket_type = await create_ticket_type(client, tenant, created["id"])
    purchase = await buy(client, tenant, ticket_type["id"], quantity=2)
    assert purchase.status_code == 201, purchase.text
    return created["id"], [t["code"] for t in purchase.json()["tickets"]]


def _scan(code: str, at: datetime | str, **fields: Any) -> dict[str, Any]:
    return {
        "scan_id": str(new_id()),
        "code": code,
        "gate": "North 1",
        "direction": "entry",
        "scanned_at": at if isinstance(at, str) else at.isoformat(),
        "clock_offset_ms": 0,
        "device_result": "admitted",
        **fields,
    }


async def _upload(client: Client, device: DeviceHandle, *scans: dict[str, Any]) -> Any:
    return await client.post("/v1/sync/scans", json={"scans": list(scans)}, headers=device.headers)


async def _uploaded(client: Client, device: DeviceHandle, *scans: dict[str, Any]) -> Any:
    response = await _upload(client, device, *scans)
    assert response.status_code == 200, response.text
    return response.json()


async def _validate(client: Client, device: DeviceHandle, code: str, **fields: Any) -> Any:
    return await client.post("/v1/validate", json={"code": code, **fields}, headers=device.headers)


async def _scan_log(client: Client, tenant: TenantHandle, event_id: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/scans", params={"event_id": event_id}, headers=tenant.token())
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- 1: a far-future exit ---------------------------------------------------------------------


async def test_an_exit_dated_fifty_years_ahead_lets_the_code_in_once_not_for_ever(
    client: Client, tenant: TenantHandle
) -> None:
    event_id, codes = await _codes(client, tenant, allow_reentry=True)
    gate = await enrolled_device(client, tenant, event_id, gate="North 1")
    rogue = await enrolled_device(client, tenant, event_id, gate="South 2")
    offline_gate = await enrolled_device(client, tenant, event_id, gate="East 3")
    assert (await _validate(client, gate, codes[0])).status_code == 200

    future = datetime.now(UTC) + timedelta(days=365 * 50)
    exit_scan = _scan(codes[0], future, direction="exit")
    answer = await _uploaded(client, rogue, exit_scan)
    # The exit counts from no later than it reached the server: one person may come back in,
    # then the code is inside again, at every gate.
    statuses = [(await _validate(client, gate, codes[0])).status_code for _ in range(3)]
    assert statuses == [200, 409, 409]
    # Stored, answered, with the reason: the device's clock claim was beyond belief.
    (outcome,) = answer["outcomes"]
    assert outcome["result"] == "admitted"
    assert outcome["time_adjusted"] == "clock_ahead"
    received = _at(answer["server_time"])
    # What a scanner's offline gate replays, from the feed: no admission is dated after the
    # server had it, so the code is inside there too.
    feed = await client.get("/v1/sync/changes", headers=offline_gate.headers)
    admissions = [c for c in feed.json()["changes"] if c["type"] == "admission"]
    fake = next(c for c in admissions if c["scan_id"] == exit_scan["scan_id"])
    assert _at(fake["scanned_at"]) <= received
    timeline = replay(
        (
            AdmittedScan(c["scan_id"], _at(c["scanned_at"]), Direction(c["direction"]))
            for c in admissions
        ),
        allow_reentry=True,
    )
    assert timeline.inside


# --- 2: an old-dated entry against an online admission ----------------------------------------


async def test_an_offline_claim_dated_before_an_online_admission_is_the_conflict(
    client: Client, tenant: TenantHandle
) -> None:
    event_id, codes = await _codes(client, tenant)
    rogue = await enrolled_device(client, tenant, event_id, gate="South 2")
    honest = await enrolled_device(client, tenant, event_id, gate="East 3")
    gate = await enrolled_device(client, tenant, event_id, gate="North 1")
    online = await _validate(client, gate, codes[0])
    assert online.status_code == 200, online.text
    admitted = online.json()

    fake = _scan(codes[0], "2000-01-01T00:00:00Z")
    answer = await _uploaded(client, rogue, fake)
    (outcome,) = answer["outcomes"]
    assert outcome["conflict_of"] == admitted["scan_id"]
    assert outcome["time_adjusted"] == "clock_behind"
    assert answer["reclassified"] == []  # the online admission was not touched

    # A claim within every bound (just before the online scan) is a conflict all the same.
    just_before = _at(admitted["scanned_at"]) - timedelta(milliseconds=1)
    close = await _uploaded(client, honest, _scan(codes[0], just_before))
    assert close["outcomes"][0]["conflict_of"] == admitted["scan_id"]
    assert close["outcomes"][0]["time_adjusted"] is None
    assert close["reclassified"] == []

    log = {s["id"]: s for s in await _scan_log(client, tenant, event_id)}
    assert log[admitted["scan_id"]]["conflict_of"] is None
    assert log[fake["scan_id"]]["conflict_of"] == admitted["scan_id"]
    assert log[fake["scan_id"]]["time_adjusted"] == "clock_behind"
    assert log[fake["scan_id"]]["device_scanned_at"].startswith("2000-01-01")


# --- 3: the gate a scan is counted for ----------------------------------------------------------


async def test_an_uploaded_scan_counts_for_the_devices_own_gate(
    client: Client, tenant: TenantHandle
) -> None:
    event_id, codes = await _codes(client, tenant)
    device = await enrolled_device(client, tenant, event_id, gate="North 1")
    now = datetime.now(UTC)
    await _uploaded(
        client,
        device,
        _scan(codes[0], now, gate="VIP-BACKSTAGE"),
        _scan(codes[1], now, gate="North 1"),
    )
    assert {s["gate"] for s in await _scan_log(client, tenant, event_id)} == {"North 1"}
    stats = await client.get(f"/v1/events/{event_id}/stats", headers=tenant.token())
    assert [(g["gate"], g["admitted"]) for g in stats.json()["per_gate"]] == [("North 1", 2)]


# --- 4: clock claims the columns cannot hold ------------------------------------------------


@pytest.mark.parametrize("offset", [3_000_000_000, 2**62, -(2**62), -3_000_000_000])
async def test_an_offset_beyond_bounds_is_a_400_naming_the_field(
    client: Client, tenant: TenantHandle, offset: int
) -> None:
    event_id, codes = await _codes(client, tenant)
    device = await enrolled_device(client, tenant, event_id)
    now = datetime.now(UTC)
    response = await _upload(
        client, device, _scan(codes[0], now), _scan(codes[1], now, clock_offset_ms=offset)
    )
    assert_problem(response, 400, "validation_failed")
    assert [e["key"] for e in response.json()["errors"]] == ["scans[1].clock_offset_ms"]


@pytest.mark.parametrize("scanned_at", ["9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00Z"])
async def test_a_date_no_clock_reads_is_a_400_naming_the_field(
    client: Client, tenant: TenantHandle, scanned_at: str
) -> None:
    event_id, codes = await _codes(client, tenant)
    device = await enrolled_device(client, tenant, event_id)
    scan = _scan(codes[0], scanned_at, clock_offset_ms=2_000_000_000)
    response = await _upload(client, device, scan)
    assert_problem(response, 400, "validation_failed")
    (error,) = response.json()["errors"]
    assert error["key"] == "scans[0]"
    assert error["message"].startswith("scanned_at must be from 1970-01-01 until 2100-01-01")


@pytest.mark.parametrize(
    ("scanned_at", "offset", "adjusted"),
    [
        ("2099-12-31T23:59:59.999999Z", 2_147_483_647, "clock_ahead"),
        ("1970-01-01T00:00:00Z", -2_147_483_647, "clock_behind"),
    ],
)
async def test_a_clock_at_the_ends_of_its_bounds_is_placed_and_flagged(
    client: Client, tenant: TenantHandle, scanned_at: str, offset: int, adjusted: str
) -> None:
    event_id, codes = await _codes(client, tenant)
    device = await enrolled_device(client, tenant, event_id)
    scan = _scan(codes[0], scanned_at, clock_offset_ms=offset)
    answer = await _uploaded(client, device, scan)
    assert answer["outcomes"][0]["time_adjusted"] == adjusted
    (logged,) = await _scan_log(client, tenant, event_id)
    assert logged["device_scanned_at"][:4] == scanned_at[:4]  # the claim is kept as made
    assert logged["clock_offset_ms"] == offset
    assert _at(logged["scanned_at"]) <= _at(answer["server_time"])
    again = await _uploaded(client, device, scan)  # and a re-upload answers the same
    assert again["outcomes"][0]["time_adjusted"] == adjusted
    assert again["outcomes"][0]["duplicate_upload"]


async def test_a_scan_time_without_a_utc_offset_is_a_400(
    client: Client, tenant: TenantHandle
) -> None:
    event_id, codes = await _codes(client, tenant)
    device = await enrolled_device(client, tenant, event_id)
    response = await _upload(client, device, _scan(codes[0], "2030-05-01T19:30:00"))
    assert_problem(response, 400, "validation_failed")
    assert [e["key"] for e in response.json()["errors"]] == ["scans[0].scanned_at"]


# --- 5: a scan id belongs to its device --------------------------------------------------------


async def test_another_devices_scan_id_is_taken_everywhere(
    client: Client, tenant: TenantHandle, make_tenant: Any
) -> None:
    event_id, codes = await _codes(client, tenant)
    owner = await enrolled_device(client, tenant, event_id, gate="North 1")
    neighbour = await enrolled_device(client, tenant, event_id, gate="South 2")
    other_tenant = await make_tenant("Other venue")
    other_event, other_codes = await _codes(client, other_tenant)
    stranger = await enrolled_device(client, other_tenant, other_event)
    scan_id = str(new_id())
    first = await _validate(client, owner, codes[0], scan_id=scan_id)
    assert first.status_code == 200, first.text
    assert first.json()["holder_name"] == "Ada Guest"

    for device, code in ((neighbour, codes[1]), (stranger, other_codes[0])):
        asked = await _validate(client, device, code, scan_id=scan_id)
        assert_problem(asked, 409, "scan_id_taken")
        assert "Ada Guest" not in asked.text
        looked_up = await client.get(f"/v1/sync/scans/{scan_id}", headers=device.headers)
        assert_problem(looked_up, 409, "scan_id_taken")
        uploaded = await _upload(
            client, device, {**_scan(code, datetime.now(UTC)), "scan_id": scan_id}
        )
        assert_problem(uploaded, 409, "scan_id_taken")
    by_hand = await client.post(
        "/v1/validate",
        json={"code": codes[1], "scan_id": scan_id, "gate": "Box office"},
        headers=tenant.token(),
    )
    assert_problem(by_hand, 409, "scan_id_taken")

    # The owner still gets its own verdict back, and nobody else's scan was stored.
    again = await _validate(client, owner, codes[0], scan_id=scan_id)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert (await client.get(f"/v1/sync/scans/{scan_id}", headers=owner.headers)).status_code == 200
    assert [s["id"] for s in await _scan_log(client, tenant, event_id)] == [scan_id]
    assert await _scan_log(client, other_tenant, other_event) == []


async def test_a_scan_id_first_used_in_another_tenant_is_taken_for_uploads_too(
    client: Client, tenant: TenantHandle, make_tenant: Any
) -> None:
    event_id, codes = await _codes(client, tenant)
    owner = await enrolled_device(client, tenant, event_id)
    other_tenant = await make_tenant("Other venue")
    other_event, other_codes = await _codes(client, other_tenant)
    stranger = await enrolled_device(client, other_tenant, other_event)
    mine = _scan(codes[0], datetime.now(UTC))
    await _uploaded(client, owner, mine)
    theirs = {**_scan(other_codes[0], datetime.now(UTC)), "scan_id": mine["scan_id"]}
    fresh = _scan(other_codes[1], datetime.now(UTC))
    assert_problem(await _upload(client, stranger, fresh, theirs), 409, "scan_id_taken")
    assert await _scan_log(client, other_tenant, other_event) == []  # the batch is refused whole
