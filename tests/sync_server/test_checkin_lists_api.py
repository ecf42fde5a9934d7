"""Check-in lists on the server (issue 16): the API that keeps them, the verdicts they give
online and on upload, the zones they count in the stats and the scan log, and the setup the
changes feed carries to scanners. Real app, real Postgres."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from shared.checkin_lists import inside_by_zone
from shared.checkin_rules import MAX_RULE_DEPTH
from shared.domain import Direction
from shared.ids import new_id
from shared.timeline import AdmittedScan
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import (
    assert_problem,
    buy,
    connect,
    create_event,
    create_ticket_type,
    enrolled_device,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

Client = AsyncTestClient[Litestar]


async def _lists(client: Client, tenant: TenantHandle, event_id: str) -> str:
    return f"/v1/events/{event_id}/checkin-lists"


async def _tickets(
    client: Client, tenant: TenantHandle, type_id: str, count: int = 1
) -> list[dict[str, Any]]:
    response = await buy(client, tenant, type_id, quantity=count)
    assert response.status_code == 201, response.text
    return [{"id": t["ticket"]["id"], "code": t["code"]} for t in response.json()["tickets"]]


async def _venue(client: Client, tenant: TenantHandle) -> dict[str, Any]:
    """An event with GA and VIP tickets, a main list (every type, Main gate, the general area)
    and a VIP list (VIP only, VIP gate, the lounge)."""
    event = await create_event(client, tenant)
    ga = await create_ticket_type(client, tenant, event["id"], name="General admission")
    vip = await create_ticket_type(client, tenant, event["id"], name="VIP")
    path = await _lists(client, tenant, event["id"])
    main = await client.post(path, json={"name": "Main", "gates": ["Main"]}, headers=tenant.token())
    assert main.status_code == 201, main.text
    lounge = await client.post(
        path,
        json={
            "name": "VIP lounge",
            "ticket_type_ids": [vip["id"]],
            "gates": ["VIP"],
            "zone": "lounge",
        },
        headers=tenant.token(),
    )
    assert lounge.status_code == 201, lounge.text
    return {
        "event_id": event["id"],
        "ga": ga["id"],
        "vip": vip["id"],
        "main": main.json()["id"],
        "lounge": lounge.json()["id"],
        "path": path,
    }


async def test_lists_are_created_read_changed_and_deleted(
    client: Client, tenant: TenantHandle
) -> None:
    venue = await _venue(client, tenant)
    path, headers = venue["path"], tenant.token()

    listed = await client.get(path, headers=headers)
    assert listed.status_code == 200
    assert [item["name"] for item in listed.json()] == ["Main", "VIP lounge"]
    one = await client.get(f"{path}/{venue['lounge']}", headers=headers)
    assert one.json()["ticket_type_ids"] == [venue["vip"]]
    assert one.json()["zone"] == "lounge"

    changed = await client.patch(
        f"{path}/{venue['lounge']}",
        json={"zone": "backstage", "allow_reentry": True},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["zone"] == "backstage"
    assert changed.json()["allow_reentry"] is True
    assert changed.json()["gates"] == ["VIP"]  # what the change did not name stays

    cleared = await client.patch(f"{path}/{venue['lounge']}", json={"zone": None}, headers=headers)
    assert cleared.json()["zone"] is None

    removed = await client.delete(f"{path}/{venue['lounge']}", headers=headers)
    assert removed.json() == {"id": venue["lounge"], "outcome": "deleted"}
    gone = await client.get(f"{path}/{venue['lounge']}", headers=headers)
    assert_problem(gone, 404, "not_found")


async def test_bad_lists_are_400s_naming_what_is_wrong(
    client: Client, tenant: TenantHandle
) -> None:
    venue = await _venue(client, tenant)
    path, headers = venue["path"], tenant.token()
    stranger = str(uuid.uuid4())

    unknown = await client.post(
        path, json={"name": "X", "ticket_type_ids": [stranger]}, headers=headers
    )
    assert_problem(unknown, 400, "unknown_ticket_types")
    assert stranger in unknown.json()["detail"]

    deep: Any = True
    for _ in range(MAX_RULE_DEPTH + 1):
        deep = {"!": [deep]}
    bad_rule = await client.post(path, json={"name": "X", "rules": deep}, headers=headers)
    assert bad_rule.status_code == 400
    assert "rules" in bad_rule.text

    patched = await client.patch(
        f"{path}/{venue['main']}", json={"ticket_type_ids": [stranger]}, headers=headers
    )
    assert_problem(patched, 400, "unknown_ticket_types")
    window = await client.patch(
        f"{path}/{venue['main']}",
        json={
            "windows": [{"opens_at": "2030-05-01T20:00:00Z", "closes_at": "2030-05-01T19:00:00Z"}]
        },
        headers=headers,
    )
    assert window.status_code == 400


async def test_a_retried_create_with_its_key_makes_one_list(
    client: Client, tenant: TenantHandle
) -> None:
    event = await create_event(client, tenant)
    path = f"/v1/events/{event['id']}/checkin-lists"
    headers = {**tenant.token(), "Idempotency-Key": "list-1"}
    first = await client.post(path, json={"name": "Main"}, headers=headers)
    again = await client.post(path, json={"name": "Main"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len((await client.get(path, headers=tenant.token())).json()) == 1


async def test_another_tenant_sees_none_of_the_lists(
    client: Client, tenant: TenantHandle, make_tenant: Any
) -> None:
    venue = await _venue(client, tenant)
    other = await make_tenant("Other venue")
    seen = await client.get(f"{venue['path']}/{venue['main']}", headers=other.token())
    assert_problem(seen, 404, "not_found")
    listed = await client.get(venue["path"], headers=other.token())
    assert_problem(listed, 404, "not_found")


async def test_a_pretix_list_imports_with_its_ids_mapped(
    client: Client, tenant: TenantHandle
) -> None:
    venue = await _venue(client, tenant)
    pretix = {
        "name": "VIP entrance",
        "all_products": False,
        "limit_products": [12],
        "allow_entry_after_exit": False,
        "rules": {
            "inList": [{"var": "product"}, {"objectList": [{"lookup": ["product", "12", "VIP"]}]}]
        },
    }
    imported = await client.post(
        f"{venue['path']}/import-pretix",
        json={"list": pretix, "mapping": {"products": {"12": [venue["vip"]]}}},
        headers=tenant.token(),
    )
    assert imported.status_code == 201, imported.text
    body = imported.json()
    assert body["ticket_type_ids"] == [venue["vip"]]
    assert body["allow_reentry"] is False
    assert venue["vip"] in str(body["rules"])

    unmapped = await client.post(
        f"{venue['path']}/import-pretix",
        json={
            "list": {**pretix, "limit_products": [12, 13]},
            "mapping": {"products": {"12": [venue["vip"]]}},
        },
        headers=tenant.token(),
    )
    assert_problem(unmapped, 400, "pretix_import_failed")
    assert "13" in unmapped.json()["detail"]


async def test_lists_decide_online_and_exits_are_never_refused(
    client: Client, tenant: TenantHandle
) -> None:
    venue = await _venue(client, tenant)
    (ga,) = await _tickets(client, tenant, venue["ga"])
    (vip,) = await _tickets(client, tenant, venue["vip"])
    vip_gate = await enrolled_device(client, tenant, venue["event_id"], gate="VIP")
    main_gate = await enrolled_device(client, tenant, venue["event_id"], gate="Main")

    asked = {"code": ga["code"], "scan_id": str(new_id())}
    refused = await client.post("/v1/validate", json=asked, headers=vip_gate.headers)
    assert refused.status_code == 422
    assert refused.json()["reason"] == "not_on_list"
    assert refused.json()["message"] == "General admission tickets enter at the Main gate."
    retried = await client.post("/v1/validate", json=asked, headers=vip_gate.headers)
    assert retried.json() == refused.json()  # the recorded verdict, its sentence included

    entered = await client.post(
        "/v1/validate", json={"code": vip["code"]}, headers=main_gate.headers
    )
    assert entered.json()["result"] == "admitted"
    lounge = await client.post("/v1/validate", json={"code": vip["code"]}, headers=vip_gate.headers)
    assert lounge.json()["result"] == "admitted"  # another zone: not a double entry
    again = await client.post("/v1/validate", json={"code": vip["code"]}, headers=vip_gate.headers)
    assert again.json()["reason"] == "already_checked_in"

    # An exit at a gate whose lists do not name the ticket's type is still let out.
    out = await client.post(
        "/v1/validate", json={"code": ga["code"], "direction": "exit"}, headers=vip_gate.headers
    )
    assert out.json()["result"] == "admitted"

    stats = (
        await client.get(f"/v1/events/{venue['event_id']}/stats", headers=tenant.token())
    ).json()
    assert stats["inside_by_zone"] == {"lounge": 1}
    assert stats["inside_now"] == 1
    scans = await client.get(
        "/v1/scans",
        params={"event_id": venue["event_id"], "zone": "lounge"},
        headers=tenant.token(),
    )
    items = scans.json()["items"]
    assert [(s["ticket_id"], s["checkin_list_id"], s["zone"]) for s in items] == [
        (vip["id"], venue["lounge"], "lounge")
    ]
    on_main = await client.get(
        "/v1/scans",
        params={"event_id": venue["event_id"], "checkin_list_id": venue["main"]},
        headers=tenant.token(),
    )
    assert [s["ticket_id"] for s in on_main.json()["items"]] == [vip["id"]]

    # A list with scans is archived, not deleted, and decides nothing from then on.
    archived = await client.delete(f"{venue['path']}/{venue['lounge']}", headers=tenant.token())
    assert archived.json()["outcome"] == "archived"
    kept = await client.get(f"{venue['path']}/{venue['lounge']}", headers=tenant.token())
    assert kept.json()["archived"] is True


async def test_an_event_without_lists_has_no_zones_in_its_stats(
    client: Client, tenant: TenantHandle
) -> None:
    event = await create_event(client, tenant)
    stats = await client.get(f"/v1/events/{event['id']}/stats", headers=tenant.token())
    assert "inside_by_zone" not in stats.json()


async def test_an_upload_records_the_list_and_the_servers_opinion(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    venue = await _venue(client, tenant)
    (ga, vip) = [
        *(await _tickets(client, tenant, venue["ga"])),
        *(await _tickets(client, tenant, venue["vip"])),
    ]
    vip_gate = await enrolled_device(client, tenant, venue["event_id"], gate="VIP")
    main_gate = await enrolled_device(client, tenant, venue["event_id"], gate="Main")
    # After the enrollments (earlier is placed at them), and the batch after this scan (a scan
    # later than its upload's arrival is placed at the arrival).
    at = datetime.now(UTC) + timedelta(milliseconds=1)
    # The VIP entered the general area first: the lounge entry after it is no double entry.
    earlier = {
        "scan_id": str(new_id()),
        "code": vip["code"],
        "gate": "Main",
        "direction": "entry",
        "scanned_at": (at - timedelta(milliseconds=1)).isoformat(),
        "device_result": "admitted",
    }
    first = await client.post(
        "/v1/sync/scans", json={"scans": [earlier]}, headers=main_gate.headers
    )
    assert first.json()["outcomes"][0]["server_reason"] is None
    scans = [
        {
            "scan_id": str(new_id()),
            "code": c["code"],
            "gate": "VIP",
            "direction": "entry",
            "scanned_at": (at + timedelta(seconds=i)).isoformat(),
            "device_result": "admitted",
        }
        for i, c in enumerate([ga, vip])
    ]
    answer = await client.post("/v1/sync/scans", json={"scans": scans}, headers=vip_gate.headers)
    assert answer.status_code == 200, answer.text
    outcomes = answer.json()["outcomes"]
    assert [o["result"] for o in outcomes] == ["admitted", "admitted"]  # what happened stands
    assert [o["server_reason"] for o in outcomes] == ["not_on_list", None]
    assert [o["conflict_of"] for o in outcomes] == [None, None]
    async with connect(settings.database.admin_url) as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT ticket_id::text, checkin_list_id::text, zone FROM ticket_scans "
                    "WHERE event_id = :e ORDER BY scanned_at, id"
                ),
                {"e": venue["event_id"]},
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (vip["id"], venue["main"], None),
        (ga["id"], None, None),
        (vip["id"], venue["lounge"], "lounge"),
    ]


async def test_the_feed_carries_the_setup_until_the_device_has_it(
    client: Client, tenant: TenantHandle
) -> None:
    venue = await _venue(client, tenant)
    await _tickets(client, tenant, venue["vip"])
    device = await enrolled_device(client, tenant, venue["event_id"], gate="VIP")

    first = (await client.get("/v1/sync/changes", headers=device.headers)).json()
    setup = first["checkin_setup"]
    assert setup["version"] == first["checkin_setup_version"]
    assert {item["id"] for item in setup["lists"]} == {venue["main"], venue["lounge"]}
    assert {t["id"] for t in setup["ticket_types"]} == {venue["ga"], venue["vip"]}
    assert [c["ticket_type_id"] for c in first["changes"] if c["type"] == "ticket"] == [
        venue["vip"]
    ]

    held = {"setup_version": setup["version"]}
    same = (await client.get("/v1/sync/changes", params=held, headers=device.headers)).json()
    assert same["checkin_setup"] is None
    assert same["checkin_setup_version"] == setup["version"]

    await client.patch(
        f"{venue['path']}/{venue['lounge']}",
        json={"gates": ["VIP", "Side"]},
        headers=tenant.token(),
    )
    days = await client.put(
        f"/v1/events/{venue['event_id']}/days",
        json={"time_zone": "Europe/Berlin", "days": [{"date": "2030-05-01", "name": "Friday"}]},
        headers=tenant.token(),
    )
    assert days.status_code == 200, days.text
    newer = (await client.get("/v1/sync/changes", params=held, headers=device.headers)).json()
    assert newer["checkin_setup_version"] > setup["version"]
    assert newer["checkin_setup"]["time_zone"] == "Europe/Berlin"
    lounge = next(i for i in newer["checkin_setup"]["lists"] if i["id"] == venue["lounge"])
    assert lounge["gates"] == ["Side", "VIP"]


async def test_event_days_and_ticket_type_days_are_checked(
    client: Client, tenant: TenantHandle
) -> None:
    bad_zone = await client.post(
        "/v1/events",
        json={
            "name": "E",
            "venue": "V",
            "starts_at": "2030-05-01T19:00:00Z",
            "ends_at": "2030-05-03T23:00:00Z",
            "time_zone": "Mars/Olympus",
        },
        headers=tenant.token(),
    )
    assert_problem(bad_zone, 400, "invalid_time_zone")
    event = await create_event(
        client,
        tenant,
        time_zone="Europe/Berlin",
        days=[{"date": "2030-05-01"}, {"date": "2030-05-02"}],
    )
    assert event["time_zone"] == "Europe/Berlin"
    twice = await client.put(
        f"/v1/events/{event['id']}/days",
        json={"time_zone": "UTC", "days": [{"date": "2030-05-01"}, {"date": "2030-05-01"}]},
        headers=tenant.token(),
    )
    assert_problem(twice, 400, "duplicate_day")
    kind = await client.post(
        f"/v1/events/{event['id']}/ticket-types",
        json={"name": "Day pass", "capacity": 5, "days": ["2030-05-02"]},
        headers=tenant.token(),
    )
    assert kind.json()["days"] == ["2030-05-02"]
    changed = await client.patch(
        f"/v1/events/{event['id']}/ticket-types/{kind.json()['id']}",
        json={"days": ["2030-05-01", "2030-05-02"]},
        headers=tenant.token(),
    )
    assert changed.json()["days"] == ["2030-05-01", "2030-05-02"]


async def test_inside_by_zone_in_sql_is_the_shared_rule(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    """The stats count who is inside each zone in SQL; the shared core has the rule
    (``inside_by_zone``): random histories of many tickets give both the same counts."""
    venue = await _venue(client, tenant)
    tickets = await _tickets(client, tenant, venue["vip"], count=40)
    zones = {venue["main"]: None, venue["lounge"]: "lounge"}
    rng = random.Random(16)
    start = datetime(2030, 5, 1, 19, 0, tzinfo=UTC)
    histories: list[list[AdmittedScan]] = []
    rows = []
    for ticket in tickets:
        history: list[AdmittedScan] = []
        for step in range(rng.randint(0, 6)):
            list_id = rng.choice(list(zones))
            scan = AdmittedScan(
                scan_id=new_id(),
                at=start + timedelta(minutes=step * 7 + rng.randint(0, 3)),
                direction=rng.choice([Direction.ENTRY, Direction.ENTRY, Direction.EXIT]),
                list_id=list_id,
                zone=zones[list_id],
            )
            history.append(scan)
            rows.append((scan, ticket["id"]))
        histories.append(history)
    async with connect(settings.database.admin_url) as connection:
        for scan, ticket_id in rows:
            await connection.execute(
                text(
                    "INSERT INTO ticket_scans (id, tenant_id, ticket_id, event_id, scanned_by, "
                    "gate, direction, result, scanned_at, received_at, checkin_list_id, zone) "
                    "VALUES (:id, :tenant, :ticket, :event, 'test', 'Main', :direction, "
                    "'admitted', :at, :at, :list, :zone)"
                ),
                {
                    "id": scan.scan_id,
                    "tenant": tenant.id,
                    "ticket": ticket_id,
                    "event": venue["event_id"],
                    "direction": scan.direction.value,
                    "at": scan.at,
                    "list": scan.list_id,
                    "zone": scan.zone,
                },
            )
        await connection.commit()
    stats = (
        await client.get(f"/v1/events/{venue['event_id']}/stats", headers=tenant.token())
    ).json()
    expected = inside_by_zone(histories)
    assert expected  # the random histories leave somebody inside
    assert stats["inside_by_zone"] == dict(sorted(expected.items()))
    assert stats["inside_now"] == sum(expected.values())
