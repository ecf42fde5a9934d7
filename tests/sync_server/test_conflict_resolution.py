"""Managers resolve double entries (issue 19), against the real Postgres: accept (both
admissions stand) or annul; recorded in the ticket's history and the outbox, sent to both gates
through the feed, counted as an admission and no longer as a conflict, the same answer when
asked again."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from sqlalchemy import text

from shared.clock import ManualClock
from shared.ids import new_id
from sync_server.app import create_app
from sync_server.domain.checkin.admission import list_history
from sync_server.domain.checkin.queries import HistoryScan
from sync_server.http.auth import Role
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import (
    Client,
    DeviceHandle,
    assert_problem,
    buy,
    connect,
    create_event,
    create_ticket_type,
    enrolled_device,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

T = datetime(2030, 5, 1, 19, 30, tzinfo=UTC)
EVENT_NIGHT = datetime(2030, 5, 1, 20, 0, tzinfo=UTC)


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings, clock=ManualClock(EVENT_NIGHT))


@pytest.fixture
async def tenant(make_tenant: Callable[..., Awaitable[TenantHandle]]) -> TenantHandle:
    made = await make_tenant("Main venue")
    return made.at(EVENT_NIGHT)


def _scan(code: str, at: datetime, gate: str) -> dict[str, Any]:
    return {
        "scan_id": str(new_id()),
        "code": code,
        "gate": gate,
        "direction": "entry",
        "scanned_at": at.isoformat(),
        "clock_offset_ms": 0,
        "device_result": "admitted",
    }


async def _upload(client: Client, device: DeviceHandle, scan: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/sync/scans", json={"scans": [scan]}, headers=device.headers)
    assert response.status_code == 200, response.text
    outcome: dict[str, Any] = response.json()["outcomes"][0]
    return outcome


async def _feed_admissions(client: Client, device: DeviceHandle) -> dict[str, dict[str, Any]]:
    """The device's view of every admission, from the whole feed (later changes win)."""
    seen: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/sync/changes", params=params, headers=device.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        for change in page["changes"]:
            if change["type"] == "admission":
                seen[change["scan_id"]] = change
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return seen


class DoubleEntry:
    def __init__(
        self, event_id: str, ticket_id: str, first: str, second: str, devices: list[DeviceHandle]
    ) -> None:
        self.event_id, self.ticket_id = event_id, ticket_id
        self.first, self.second, self.devices = first, second, devices


async def _double_entry(client: Client, tenant: TenantHandle) -> DoubleEntry:
    """Two gates that admitted one ticket offline, both uploaded: the later is a conflict."""
    event = await create_event(client, tenant)
    kind = await create_ticket_type(client, tenant, event["id"])
    bought = await buy(client, tenant, kind["id"])
    assert bought.status_code == 201, bought.text
    item = bought.json()["tickets"][0]
    north = await enrolled_device(client, tenant, event["id"], gate="North 1")
    south = await enrolled_device(client, tenant, event["id"], gate="South 2")
    first = _scan(item["code"], T, "North 1")
    second = _scan(item["code"], T + timedelta(seconds=40), "South 2")
    assert (await _upload(client, north, first))["conflict_of"] is None
    assert (await _upload(client, south, second))["conflict_of"] == first["scan_id"]
    return DoubleEntry(
        event["id"], item["ticket"]["id"], first["scan_id"], second["scan_id"], [north, south]
    )


async def _resolve(client: Client, tenant: TenantHandle, scan_id: str, **body: Any) -> Any:
    return await client.post(
        f"/v1/scans/{scan_id}/resolve", json=body, headers=tenant.token(Role.MANAGER)
    )


async def _stats(client: Client, tenant: TenantHandle, event_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/events/{event_id}/stats", headers=tenant.token())
    assert response.status_code == 200, response.text
    stats: dict[str, Any] = response.json()
    return stats


async def _conflict_ids(client: Client, tenant: TenantHandle, event_id: str) -> list[str]:
    response = await client.get(
        "/v1/scans",
        params={"event_id": event_id, "conflicts_only": "true"},
        headers=tenant.token(),
    )
    assert response.status_code == 200, response.text
    return [s["id"] for s in response.json()["items"]]


async def _outbox(settings: Settings, ticket_id: str, routing_key: str) -> list[dict[str, Any]]:
    async with connect(settings.database.admin_url) as connection:
        rows = await connection.execute(
            text("SELECT payload FROM outbox WHERE ticket_id = :t AND routing_key = :k"),
            {"t": ticket_id, "k": routing_key},
        )
        return [row.payload for row in rows]


async def test_an_accepted_conflict_stands_as_an_admission_everywhere(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    double = await _double_entry(client, tenant)
    before = await _stats(client, tenant, double.event_id)
    assert (before["admitted"], before["conflicts"]) == (1, 1)
    assert await _conflict_ids(client, tenant, double.event_id) == [double.second]
    for device in double.devices:
        seen = await _feed_admissions(client, device)
        assert seen[double.second]["conflict_of"] == double.first
        assert seen[double.second]["conflict_resolved"] is False

    answer = await _resolve(client, tenant, double.second, action="accept", note="re-entry")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["scan_id"] == double.second
    assert body["ticket_id"] == double.ticket_id
    assert body["conflict_of"] == double.first
    assert body["resolution"] == "accepted"
    assert body["resolved_by"].startswith("manager:")
    assert body["note"] == "re-entry"
    # Asked again (a retry after a lost answer): the same answer, nothing more recorded.
    again = await _resolve(client, tenant, double.second, action="accept", note="other")
    assert again.status_code == 200, again.text
    assert again.json() == body
    assert_problem(
        await _resolve(client, tenant, double.second, action="annul"), 409, "already_resolved"
    )

    after = await _stats(client, tenant, double.event_id)
    assert (after["admitted"], after["conflicts"], after["annulled"]) == (2, 0, 0)
    assert after["per_gate"]
    assert all(g["conflicts"] == 0 for g in after["per_gate"])
    assert await _conflict_ids(client, tenant, double.event_id) == []
    scans = await client.get(
        "/v1/scans", params={"event_id": double.event_id}, headers=tenant.token()
    )
    logged = {s["id"]: s for s in scans.json()["items"]}[double.second]
    assert logged["conflict_of"] == double.first
    assert logged["conflict_resolution"] == "accepted"
    assert logged["conflict_resolution_note"] == "re-entry"

    history = (
        await client.get(f"/v1/tickets/{double.ticket_id}/history", headers=tenant.token())
    ).json()
    resolved = [h for h in history if h["kind"] == "conflict_resolved"]
    assert len(resolved) == 1
    assert resolved[0]["actor"] == body["resolved_by"]
    assert resolved[0]["reason"] == "re-entry"
    assert resolved[0]["to_status"] == "checked_in"
    assert resolved[0]["details"] == {
        "scan_id": double.second,
        "conflict_of": double.first,
        "gate": "South 2",
        "resolution": "accepted",
    }
    (event,) = await _outbox(settings, double.ticket_id, "ticket.conflict_resolved")
    assert event["type"] == "dev.gatehouse.ticket.conflict_resolved"
    assert event["data"]["scan_id"] == double.second
    assert event["data"]["resolution"] == "accepted"
    assert event["data"]["reason"] == "re-entry"

    # Both gates hear it: the admission stands, no conflict named.
    for device in double.devices:
        seen = await _feed_admissions(client, device)
        assert seen[double.second]["conflict_resolved"] is True
        assert seen[double.second]["conflict_of"] is None
        assert seen[double.second]["annulled"] is False


async def test_annulling_a_conflict_goes_through_the_annul_path(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    double = await _double_entry(client, tenant)
    answer = await _resolve(client, tenant, double.second, action="annul")
    assert answer.status_code == 200, answer.text
    assert answer.json()["resolution"] == "annulled"
    assert answer.json()["note"] is None
    again = await _resolve(client, tenant, double.second, action="annul")
    assert again.json() == answer.json()
    assert_problem(
        await _resolve(client, tenant, double.second, action="accept"), 409, "already_resolved"
    )
    stats = await _stats(client, tenant, double.event_id)
    assert (stats["admitted"], stats["conflicts"], stats["annulled"]) == (1, 0, 1)
    history = (
        await client.get(f"/v1/tickets/{double.ticket_id}/history", headers=tenant.token())
    ).json()
    assert [h["kind"] for h in history][-2:] == ["checkin_annulled", "conflict_resolved"]
    # The first admission still stands: the ticket stays checked in.
    assert history[-1]["to_status"] == "checked_in"
    assert len(await _outbox(settings, double.ticket_id, "ticket.checkin_annulled")) == 1
    assert len(await _outbox(settings, double.ticket_id, "ticket.conflict_resolved")) == 1
    for device in double.devices:
        seen = await _feed_admissions(client, device)
        assert seen[double.second]["annulled"] is True
        assert seen[double.second]["conflict_resolved"] is True


async def test_only_a_managers_standing_double_entry_of_the_tenant_can_be_resolved(
    client: Client, tenant: TenantHandle, make_tenant: Callable[..., Awaitable[TenantHandle]]
) -> None:
    double = await _double_entry(client, tenant)
    other = (await make_tenant("Other venue")).at(EVENT_NIGHT)
    assert_problem(await _resolve(client, other, double.second, action="accept"), 404, "not_found")
    assert_problem(await _resolve(client, tenant, str(new_id()), action="accept"), 404, "not_found")
    # The first admission is no conflict.
    assert_problem(
        await _resolve(client, tenant, double.first, action="accept"), 409, "not_a_conflict"
    )
    for body in ({"action": "forgive"}, {}, {"action": "accept", "note": ""}, {"x": 1}):
        assert_problem(
            await _resolve(client, tenant, double.second, **body), 400, "validation_failed"
        )
    device = double.devices[1]
    refused = await client.post(
        f"/v1/scans/{double.second}/resolve", json={"action": "accept"}, headers=device.headers
    )
    assert refused.status_code == 403, refused.text
    service = await client.post(
        f"/v1/scans/{double.second}/resolve",
        json={"action": "accept"},
        headers=tenant.token(Role.SERVICE),
    )
    assert service.status_code == 403, service.text
    # An annulled double entry no longer stands.
    annulled = await client.post(
        f"/v1/scans/{double.second}/annul", headers=tenant.token(Role.MANAGER)
    )
    assert annulled.status_code == 200, annulled.text
    assert_problem(
        await _resolve(client, tenant, double.second, action="accept"), 409, "not_a_conflict"
    )


async def test_an_accepted_conflict_that_stops_being_one_loses_its_resolution(
    client: Client, tenant: TenantHandle
) -> None:
    double = await _double_entry(client, tenant)
    accepted = await _resolve(client, tenant, double.second, action="accept")
    assert accepted.status_code == 200, accepted.text
    # The first admission undone: the replay makes the second the ticket's admission, no
    # double entry any more, and its resolution goes with the conflict.
    annulled = await client.post(
        f"/v1/scans/{double.first}/annul", headers=tenant.token(Role.MANAGER)
    )
    assert annulled.status_code == 200, annulled.text
    scans = await client.get(
        "/v1/scans", params={"event_id": double.event_id}, headers=tenant.token()
    )
    logged = {s["id"]: s for s in scans.json()["items"]}[double.second]
    assert logged["conflict_of"] is None
    assert logged["conflict_resolution"] is None
    assert logged["conflict_resolved_at"] is None
    stats = await _stats(client, tenant, double.event_id)
    assert (stats["admitted"], stats["conflicts"], stats["annulled"]) == (1, 0, 1)
    assert_problem(
        await _resolve(client, tenant, double.second, action="accept"), 409, "not_a_conflict"
    )


def test_check_in_lists_count_an_accepted_double_entry_as_the_scanners_do() -> None:
    """The feed tells scanners an accepted double entry is none (``conflict_of`` null), so
    their offline gates count it in a list's entries; the server's lists must count it too,
    or a rule like "at most two entries" would decide one way online and another offline."""
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ticket = uuid.uuid4()
    at = datetime(2027, 6, 1, 20, 0, tzinfo=UTC)

    def scan(scan_id: uuid.UUID, conflict_of: uuid.UUID | None, *, accepted: bool) -> HistoryScan:
        return HistoryScan(
            id=scan_id,
            ticket_id=ticket,
            scanned_at=at,
            direction="entry",
            gate="North",
            device_id=None,
            conflict_of=conflict_of,
            online=False,
            conflict_accepted=accepted,
        )

    counted = list_history(
        [
            scan(first, None, accepted=False),
            scan(second, first, accepted=True),
            scan(third, first, accepted=False),
        ]
    )
    assert [s.scan_id for s in counted] == [first, second]
