"""The managers' views over scans: the scan log (JSON pages and CSV export) and an event's
stats, against the real Postgres. Scans are written straight into ``ticket_scans`` with the
owner connection, as check-in would have stored them."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from shared.ids import new_id
from sync_server.db.engine import Database
from sync_server.db.models import Device, TicketScan
from sync_server.domain.scans.schemas import ScanFilter, ScanPage
from sync_server.domain.scans.services import ScanLog, export_csv
from sync_server.http.auth import Role
from sync_server.http.problems import BadRequest
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import Client, assert_problem, bought, connect

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

DOORS_OPEN = datetime(2030, 5, 1, 19, 0, tzinfo=UTC)
Scan = dict[str, Any]


def _at(seconds: float) -> datetime:
    return DOORS_OPEN + timedelta(seconds=seconds)


def scan(
    tenant: TenantHandle,
    event_id: str,
    seconds: float,
    *,
    ticket_id: str | None = None,
    gate: str = "north",
    direction: str = "entry",
    result: str = "admitted",
    reason: str | None = None,
    **columns: Any,
) -> Scan:
    """A ``ticket_scans`` row, with every column present (one executemany needs the same keys
    in every row)."""
    at = _at(seconds)
    return {
        "id": new_id(),
        "tenant_id": tenant.id,
        "event_id": uuid.UUID(event_id),
        "ticket_id": uuid.UUID(ticket_id) if ticket_id else None,
        "device_id": None,
        "scanned_by": "manager:door-staff",
        "gate": gate,
        "direction": direction,
        "result": result,
        "reason": reason,
        "scanned_at": at,
        "received_at": at,
        "conflict_of": None,
        "device_scanned_at": None,
        "clock_offset_ms": 0,
        "offline": False,
        "device_result": None,
        "device_reason": None,
        "server_reason": None,
        "annulled_at": None,
        "annulled_by": None,
        **columns,
    }


async def store(settings: Settings, scans: list[Scan]) -> None:
    async with connect(settings.database.admin_url) as connection:
        await connection.execute(insert(TicketScan), scans)
        await connection.commit()


async def add_device(settings: Settings, tenant: TenantHandle, event_id: str, gate: str) -> str:
    device_id = new_id()
    async with connect(settings.database.admin_url) as connection:
        await connection.execute(
            insert(Device).values(
                id=device_id,
                tenant_id=tenant.id,
                event_id=uuid.UUID(event_id),
                gate=gate,
                name=f"{gate} scanner",
            )
        )
        await connection.commit()
    return str(device_id)


def _ticket_ids(purchase: dict[str, Any]) -> list[str]:
    return [str(t["ticket"]["id"]) for t in purchase["tickets"]]


def _event_id(purchase: dict[str, Any]) -> str:
    return str(purchase["tickets"][0]["ticket"]["event_id"])


class Scenario:
    """One evening at two gates over two minutes (19:00 and 19:01):

    - T1 enters (north); a second entry is rejected (south); a later double entry is undone;
    - T2 enters and leaves; its exit (uploaded offline) got the earlier id;
    - T3 enters (south), then enters again at north: a double entry (conflict);
    - T4's admission is undone by staff;
    - T5 enters, leaves and comes back;
    - an unreadable code at each gate; T6 is revoked.
    """

    def __init__(
        self, tenant: TenantHandle, purchase: dict[str, Any], device_id: str | None
    ) -> None:
        event = _event_id(purchase)
        t1, t2, t3, t4, t5, t6 = _ticket_ids(purchase)

        def at(seconds: float, **fields: Any) -> Scan:
            return scan(tenant, event, seconds, **fields)

        north = {"device_id": uuid.UUID(device_id)} if device_id else {}
        t2_exit = at(
            90,
            ticket_id=t2,
            gate="south",
            direction="exit",
            offline=True,
            device_scanned_at=_at(88),
            clock_offset_ms=2000,
            device_result="admitted",
            received_at=_at(600),
        )
        t1_in = at(10, ticket_id=t1, **north)
        t3_in = at(30, ticket_id=t3, gate="south")
        self.rows: list[Scan] = [
            t2_exit,
            t1_in,
            at(20, ticket_id=t2, **north),
            t3_in,
            at(40, ticket_id=t3, conflict_of=t3_in["id"], **north),
            at(50, result="rejected", reason="invalid_code", **north),
            at(60, ticket_id=t1, gate="south", result="rejected", reason="already_checked_in"),
            at(65, ticket_id=t4, gate="south", annulled_at=_at(70), annulled_by="manager:m"),
            at(70, ticket_id=t5, gate="south"),
            at(75, ticket_id=t6, result="rejected", reason="revoked", **north),
            at(85, result="rejected", reason="invalid_code", gate="south"),
            at(100, ticket_id=t5, direction="exit", **north),
            at(110, ticket_id=t5, **north),
            at(
                115,
                ticket_id=t1,
                conflict_of=t1_in["id"],
                annulled_at=_at(116),
                annulled_by="manager:m",
                **north,
            ),
        ]
        self.event_id = event

    def ids(self, keep: Callable[[Scan], bool] = lambda _: True) -> list[str]:
        return sorted(str(row["id"]) for row in self.rows if keep(row))


@pytest.fixture
async def scenario(client: Client, tenant: TenantHandle, settings: Settings) -> Scenario:
    purchase = await bought(client, tenant, quantity=6)
    device_id = await add_device(settings, tenant, _event_id(purchase), "north")
    made = Scenario(tenant, purchase, device_id)
    await store(settings, made.rows)
    return made


async def _scan_ids(client: Client, tenant: TenantHandle, **params: Any) -> list[str]:
    response = await client.get("/v1/scans", params=params, headers=tenant.token())
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return [item["id"] for item in response.json()["items"]]


def _is_conflict(row: Scan) -> bool:
    return row["conflict_of"] is not None and row["annulled_at"] is None


FILTERS: list[tuple[dict[str, Any], Callable[[Scan], bool]]] = [
    ({}, lambda _: True),
    ({"gate": "south"}, lambda r: r["gate"] == "south"),
    ({"result": "rejected"}, lambda r: r["result"] == "rejected"),
    ({"reason": "invalid_code"}, lambda r: r["reason"] == "invalid_code"),
    ({"direction": "exit"}, lambda r: r["direction"] == "exit"),
    ({"conflicts_only": "true"}, _is_conflict),
    ({"since": "2030-05-01T19:01:00Z"}, lambda r: r["scanned_at"] >= _at(60)),
    ({"until": "2030-05-01T19:01:00Z"}, lambda r: r["scanned_at"] < _at(60)),
    (
        {"since": "2030-05-01T21:00:40+02:00", "until": "2030-05-01T19:01:10Z"},
        lambda r: _at(40) <= r["scanned_at"] < _at(70),
    ),
    (
        {"gate": "north", "result": "admitted", "direction": "entry"},
        lambda r: (r["gate"], r["result"], r["direction"]) == ("north", "admitted", "entry"),
    ),
]


@pytest.mark.parametrize(
    ("params", "keep"), FILTERS, ids=["+".join(params) or "none" for params, _ in FILTERS]
)
async def test_the_scan_log_filters_by_each_field(
    client: Client,
    tenant: TenantHandle,
    scenario: Scenario,
    params: dict[str, Any],
    keep: Callable[[Scan], bool],
) -> None:
    found = await _scan_ids(client, tenant, event_id=scenario.event_id, **params)
    assert found == scenario.ids(keep)
    assert found  # every filter here matches something


async def test_the_scan_log_filters_by_event_device_and_ticket(
    client: Client, tenant: TenantHandle, settings: Settings, scenario: Scenario
) -> None:
    other = await bought(client, tenant)
    elsewhere = scan(tenant, _event_id(other), 5, ticket_id=_ticket_ids(other)[0])
    await store(settings, [elsewhere])

    assert await _scan_ids(client, tenant, event_id=scenario.event_id) == scenario.ids()
    assert await _scan_ids(client, tenant, event_id=_event_id(other)) == [str(elsewhere["id"])]
    assert set(await _scan_ids(client, tenant)) >= {*scenario.ids(), str(elsewhere["id"])}

    device_id = next(r["device_id"] for r in scenario.rows if r["device_id"])
    assert await _scan_ids(client, tenant, device_id=str(device_id)) == scenario.ids(
        lambda r: r["device_id"] == device_id
    )
    t5 = scenario.rows[8]["ticket_id"]
    assert await _scan_ids(client, tenant, ticket_id=str(t5)) == scenario.ids(
        lambda r: r["ticket_id"] == t5
    )


async def test_a_scan_reads_with_its_ticket_and_all_its_details(
    client: Client, tenant: TenantHandle, scenario: Scenario
) -> None:
    response = await client.get(
        "/v1/scans", params={"event_id": scenario.event_id}, headers=tenant.token()
    )
    items = {item["id"]: item for item in response.json()["items"]}
    offline_exit = items[str(scenario.rows[0]["id"])]
    assert offline_exit == {
        "id": str(scenario.rows[0]["id"]),
        "event_id": scenario.event_id,
        "ticket_id": str(scenario.rows[0]["ticket_id"]),
        "holder_name": "Ada Guest",
        "ticket_type": "General",
        "gate": "south",
        "direction": "exit",
        "result": "admitted",
        "reason": None,
        "scanned_at": "2030-05-01T19:01:30Z",
        "received_at": "2030-05-01T19:10:00Z",
        "offline": True,
        "device_scanned_at": "2030-05-01T19:01:28Z",
        "clock_offset_ms": 2000,
        "device_result": "admitted",
        "device_reason": None,
        "server_reason": None,
        "conflict_of": None,
        "annulled_at": None,
        "annulled_by": None,
        "device_id": None,
        "scanned_by": "manager:door-staff",
        "time_adjusted": None,
        "checkin_list_id": None,  # an event without check-in lists (issue 16)
        "zone": None,
        "conflict_resolution": None,  # no conflict a manager resolved (issue 19)
        "conflict_resolved_at": None,
        "conflict_resolved_by": None,
        "conflict_resolution_note": None,
    }
    unreadable = items[str(scenario.rows[5]["id"])]
    assert unreadable["ticket_id"] is None
    assert unreadable["holder_name"] is None
    assert unreadable["ticket_type"] is None
    assert unreadable["reason"] == "invalid_code"
    conflict = items[str(scenario.rows[4]["id"])]
    assert conflict["conflict_of"] == str(scenario.rows[3]["id"])


async def test_pages_follow_the_cursor_and_list_every_scan_once(
    client: Client, tenant: TenantHandle, scenario: Scenario
) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"event_id": scenario.event_id, "limit": 4}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/v1/scans", params=params, headers=tenant.token())
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        assert len(page["items"]) <= 4
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 4  # 14 scans: 4 + 4 + 4 + 2
    assert seen == scenario.ids()


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"since": "2030-05-01T19:02:00Z", "until": "2030-05-01T19:01:00Z"}, "invalid_time_range"),
        ({"since": "2030-05-01T19:00:00"}, "validation_failed"),
        ({"until": "yesterday"}, "validation_failed"),
        ({"result": "maybe"}, "validation_failed"),
        ({"reason": "too_tall"}, "validation_failed"),
        ({"direction": "sideways"}, "validation_failed"),
        ({"event_id": "not-a-uuid"}, "validation_failed"),
        ({"conflicts_only": "perhaps"}, "validation_failed"),
        ({"limit": "0"}, "validation_failed"),
        ({"limit": "1001"}, "validation_failed"),
        ({"cursor": "!!"}, "invalid_cursor"),
    ],
)
async def test_bad_filters_are_a_400_problem(
    client: Client, tenant: TenantHandle, params: dict[str, str], code: str
) -> None:
    response = await client.get("/v1/scans", params=params, headers=tenant.token())
    assert_problem(response, 400, code)


async def test_a_bad_time_range_is_refused_before_a_csv_download_starts(
    client: Client, tenant: TenantHandle
) -> None:
    response = await client.get(
        "/v1/scans",
        params={"since": "2030-05-01T19:02:00Z", "until": "2030-05-01T19:01:00Z"},
        headers={**tenant.token(), "Accept": "text/csv"},
    )
    assert_problem(response, 400, "invalid_time_range")


def _as_csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def _json_rows(client: Client, tenant: TenantHandle, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": 1000, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/scans", params=query, headers=tenant.token())
        assert response.status_code == 200, response.text
        rows += response.json()["items"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return rows


async def test_the_csv_export_holds_every_matching_scan_as_the_json_pages_do(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    purchase = await bought(client, tenant, quantity=3)
    event_id = _event_id(purchase)
    tickets = _ticket_ids(purchase)
    many = [
        scan(
            tenant,
            event_id,
            i,
            ticket_id=tickets[i % 3] if i % 5 else None,
            gate="north" if i % 2 else "south",
            result="admitted" if i % 5 else "rejected",
            reason=None if i % 5 else "invalid_code",
        )
        for i in range(2600)
    ]
    await store(settings, many)
    params = {"event_id": event_id, "gate": "north"}

    response = await client.get(
        "/v1/scans", params=params, headers={**tenant.token(), "Accept": "text/csv"}
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="scans-{event_id}.csv"'
    header, *lines = list(csv.reader(io.StringIO(response.text)))
    json_rows = await _json_rows(client, tenant, **params)
    assert len(json_rows) == 1300  # more than one page
    assert header == list(json_rows[0])
    assert lines == [[_as_csv_cell(row[column]) for column in header] for row in json_rows]


async def test_the_csv_export_of_all_events_is_named_so(
    client: Client, tenant: TenantHandle, scenario: Scenario
) -> None:
    response = await client.get("/v1/scans", headers={**tenant.token(), "Accept": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == 'attachment; filename="scans-all.csv"'
    _, *lines = list(csv.reader(io.StringIO(response.text)))
    assert sorted(line[0] for line in lines) == scenario.ids()
    plain = await client.get("/v1/scans", headers={**tenant.token(), "Accept": "*/*"})
    assert plain.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("chunk", [3, 7, 14, 100])
async def test_the_export_reads_chunk_after_chunk_and_misses_nothing(
    tenant: TenantHandle, settings: Settings, scenario: Scenario, chunk: int
) -> None:
    database = Database(settings.database)
    try:
        parts = [
            part
            async for part in await export_csv(
                database, tenant.id, ScanFilter(event_id=uuid.UUID(scenario.event_id)), chunk=chunk
            )
        ]
    finally:
        await database.close()
    assert len(parts) == -(-14 // chunk)  # one part per non-empty chunk, the header in the first
    _, *lines = list(csv.reader(io.StringIO("".join(parts))))
    assert [line[0] for line in lines] == scenario.ids()


async def test_the_csv_export_keeps_spreadsheets_from_running_names_as_formulas(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    purchase = await bought(client, tenant)
    event_id = _event_id(purchase)
    await store(settings, [scan(tenant, event_id, 1, ticket_id=_ticket_ids(purchase)[0])])
    async with connect(settings.database.admin_url) as connection:
        await connection.exec_driver_sql(
            "UPDATE tickets SET holder_name = '=HYPERLINK(\"http://x\")' WHERE id = $1",
            (uuid.UUID(_ticket_ids(purchase)[0]),),
        )
        await connection.commit()
    response = await client.get(
        "/v1/scans",
        params={"event_id": event_id},
        headers={**tenant.token(), "Accept": "text/csv"},
    )
    header, line = list(csv.reader(io.StringIO(response.text)))
    assert line[header.index("holder_name")] == '\'=HYPERLINK("http://x")'


async def test_event_stats_count_a_hand_made_evening(
    client: Client, tenant: TenantHandle, settings: Settings, scenario: Scenario
) -> None:
    other = await bought(client, tenant)  # another event's scans must not count
    await store(settings, [scan(tenant, _event_id(other), 5, ticket_id=_ticket_ids(other)[0])])

    response = await client.get(f"/v1/events/{scenario.event_id}/stats", headers=tenant.token())

    assert response.status_code == 200, response.text
    stats = response.json()
    generated_at = stats.pop("generated_at")
    assert datetime.fromisoformat(generated_at).tzinfo is not None
    assert stats == {
        "event_id": scenario.event_id,
        "admitted": 5,  # T1, T2, T3, T5 twice
        "rejected": 4,
        "rejected_by_reason": {"already_checked_in": 1, "invalid_code": 2, "revoked": 1},
        "inside_now": 3,  # T1, T3, T5 (T2 left; T4 was undone)
        "conflicts": 1,  # T3's second entry (T1's was undone)
        "annulled": 2,
        "per_gate": [
            {"gate": "north", "admitted": 3, "rejected": 2, "conflicts": 1},
            {"gate": "south", "admitted": 2, "rejected": 2, "conflicts": 0},
        ],
        "per_minute": [
            {"minute": "2030-05-01T19:00:00Z", "admitted": 3, "rejected": 1},
            {"minute": "2030-05-01T19:01:00Z", "admitted": 2, "rejected": 3},
        ],
    }
    conflicts = await _scan_ids(client, tenant, event_id=scenario.event_id, conflicts_only=True)
    assert len(conflicts) == stats["conflicts"]


async def test_an_event_without_scans_has_zero_counts(client: Client, tenant: TenantHandle) -> None:
    purchase = await bought(client, tenant)
    response = await client.get(f"/v1/events/{_event_id(purchase)}/stats", headers=tenant.token())
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["admitted"] == stats["rejected"] == stats["inside_now"] == 0
    assert stats["rejected_by_reason"] == {}
    assert stats["per_gate"] == stats["per_minute"] == []


async def test_stats_of_an_unknown_event_are_a_404(client: Client, tenant: TenantHandle) -> None:
    response = await client.get(f"/v1/events/{uuid.uuid4()}/stats", headers=tenant.token())
    assert_problem(response, 404, "not_found")


async def test_another_tenants_manager_sees_none_of_the_scans(
    client: Client,
    tenant: TenantHandle,
    scenario: Scenario,
    make_tenant: Callable[..., Any],
) -> None:
    rival: TenantHandle = await make_tenant("Rival venue")
    listed = await client.get(
        "/v1/scans", params={"event_id": scenario.event_id}, headers=rival.token()
    )
    assert listed.status_code == 200
    assert listed.json() == {"items": [], "next_cursor": None}
    exported = await client.get("/v1/scans", headers={**rival.token(), "Accept": "text/csv"})
    assert exported.status_code == 200
    assert len(list(csv.reader(io.StringIO(exported.text)))) == 1  # the header alone
    stats = await client.get(f"/v1/events/{scenario.event_id}/stats", headers=rival.token())
    assert_problem(stats, 404, "not_found")


@pytest.mark.parametrize("role", [Role.SERVICE, Role.SCANNER])
@pytest.mark.parametrize("accept", ["application/json", "text/csv"])
async def test_only_managers_read_scans_and_stats(
    client: Client, tenant: TenantHandle, scenario: Scenario, role: Role, accept: str
) -> None:
    claims: dict[str, Any] = {}
    if role is Role.SCANNER:
        claims = {"device_id": uuid.uuid4(), "event_id": uuid.UUID(scenario.event_id)}
    headers = {**tenant.token(role, gate="north", **claims), "Accept": accept}
    assert_problem(await client.get("/v1/scans", headers=headers), 403, "wrong_role")
    stats = await client.get(f"/v1/events/{scenario.event_id}/stats", headers=headers)
    assert_problem(stats, 403, "wrong_role")


# --- the console's parts of the log: newest first, by ticket-id prefix, by holder name ------


async def _log_page(
    settings: Settings,
    tenant: TenantHandle,
    filters: ScanFilter,
    cursor: str | None = None,
    limit: int = 100,
    **options: Any,
) -> ScanPage:
    database = Database(settings.database)
    try:
        async with database.tenant(tenant.id) as session:
            return await ScanLog(session).page(filters, cursor, limit, **options)
    finally:
        await database.close()


async def test_newest_first_pages_run_from_the_latest_scan_back_to_the_first(
    tenant: TenantHandle, settings: Settings, scenario: Scenario
) -> None:
    filters = ScanFilter(event_id=uuid.UUID(scenario.event_id))
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        page = await _log_page(settings, tenant, filters, cursor, 4, newest_first=True)
        seen.extend(str(item.id) for item in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == scenario.ids()[::-1]
    oldest_first = await _log_page(settings, tenant, filters)
    assert [str(item.id) for item in oldest_first.items] == scenario.ids()


async def test_the_log_finds_a_tickets_scans_by_the_start_of_its_id(
    tenant: TenantHandle, settings: Settings, scenario: Scenario
) -> None:
    t5 = scenario.rows[8]["ticket_id"]
    for prefix in (t5.hex, str(t5), str(t5)[:30].upper()):
        page = await _log_page(
            settings,
            tenant,
            ScanFilter(event_id=uuid.UUID(scenario.event_id), ticket_id_prefix=prefix),
        )
        assert [str(i.id) for i in page.items] == scenario.ids(lambda r: r["ticket_id"] == t5)


async def test_the_log_finds_scans_by_the_start_of_the_holders_name_in_any_case(
    tenant: TenantHandle, settings: Settings, scenario: Scenario
) -> None:
    t3 = scenario.rows[3]["ticket_id"]
    async with connect(settings.database.admin_url) as connection:
        await connection.exec_driver_sql(
            "UPDATE tickets SET holder_name = 'Zoë 100%_Sure' WHERE id = $1", (t3,)
        )
        await connection.commit()
    event_id = uuid.UUID(scenario.event_id)

    async def found(prefix: str) -> list[str]:
        page = await _log_page(
            settings, tenant, ScanFilter(event_id=event_id, holder_prefix=prefix)
        )
        return [str(i.id) for i in page.items]

    assert await found("zOË") == scenario.ids(lambda r: r["ticket_id"] == t3)
    assert await found("Zoë 100%_") == scenario.ids(lambda r: r["ticket_id"] == t3)
    # LIKE's wildcards in the text match only themselves.
    assert await found("Zoë 1_0") == []
    assert await found("%") == []
    assert await found("Ada") == scenario.ids(
        lambda r: r["ticket_id"] is not None and r["ticket_id"] != t3
    )


async def test_a_ticket_id_prefix_that_is_not_hex_is_a_400_problem(
    tenant: TenantHandle, settings: Settings
) -> None:
    with pytest.raises(BadRequest) as refused:
        await _log_page(settings, tenant, ScanFilter(ticket_id_prefix="0190zz"))
    assert refused.value.code == "invalid_ticket_id"


async def test_a_pages_double_entries_read_with_the_admissions_they_collided_with(
    tenant: TenantHandle, settings: Settings, scenario: Scenario
) -> None:
    database = Database(settings.database)
    try:
        async with database.tenant(tenant.id) as session:
            log = ScanLog(session)
            conflict = scenario.rows[4]
            firsts = await log.scans([conflict["conflict_of"]])
            names = await log.device_names([conflict["device_id"]])
    finally:
        await database.close()
    first = firsts[conflict["conflict_of"]]
    assert (first.gate, first.scanned_at) == ("south", _at(30))
    assert names == {conflict["device_id"]: "north scanner"}
