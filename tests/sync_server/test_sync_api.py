"""The offline sync protocol: scan uploads and the changes feed, against the real Postgres."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from sqlalchemy import text

from shared import wire
from shared.clock import ManualClock
from shared.ids import new_id
from sync_server.app import create_app
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

T = datetime(2030, 5, 1, 19, 30, tzinfo=UTC)  # inside the default test event's hours
#: When the server receives the uploads: on the event night, after the scans they carry (an
#: upload's scan is never placed later than its arrival: docs/sync-protocol.md).
EVENT_NIGHT = datetime(2030, 5, 1, 20, 0, tzinfo=UTC)


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings, clock=ManualClock(EVENT_NIGHT))


@pytest.fixture
async def tenant(make_tenant: Callable[..., Awaitable[TenantHandle]]) -> TenantHandle:
    """The tenant, its tokens minted on the event night: the server checks a token's expiry by
    its own clock, which stands there."""
    made = await make_tenant("Main venue")
    return made.at(EVENT_NIGHT)


async def _event_with_tickets(
    client: Client, tenant: TenantHandle, count: int = 3
) -> tuple[str, list[dict[str, Any]]]:
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    response = await buy(client, tenant, ticket_type["id"], quantity=count)
    assert response.status_code == 201, response.text
    return event["id"], response.json()["tickets"]


def _scan(
    code: str, at: datetime, *, offset_ms: int = 0, gate: str = "North 1", **extra: Any
) -> dict[str, Any]:
    return {
        "scan_id": str(new_id()),
        "code": code,
        "gate": gate,
        "direction": "entry",
        "scanned_at": at.isoformat(),
        "clock_offset_ms": offset_ms,
        "device_result": "admitted",
        **extra,
    }


async def _upload(
    client: Client, device: DeviceHandle, scans: list[dict[str, Any]]
) -> dict[str, Any]:
    response = await client.post("/v1/sync/scans", json={"scans": scans}, headers=device.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _feed(
    client: Client, device: DeviceHandle, cursor: str | None = None, limit: int = 5000
) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    if cursor:
        params["cursor"] = cursor
    response = await client.get("/v1/sync/changes", params=params, headers=device.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _rows(settings: Settings, sql: str, **params: Any) -> list[Any]:
    async with connect(settings.database.admin_url) as connection:
        return list((await connection.execute(text(sql), params)).all())


async def test_the_earlier_offline_admission_wins_even_when_uploaded_later(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    event_id, tickets = await _event_with_tickets(client, tenant)
    code = tickets[0]["code"]
    gate_a = await enrolled_device(client, tenant, event_id, gate="North 1")
    gate_b = await enrolled_device(client, tenant, event_id, gate="South 2")
    # Gate A's clock runs 5 minutes fast: its raw time says later than B, corrected says earlier.
    scan_a = _scan(code, T + timedelta(minutes=5), offset_ms=-300_000, gate="North 1")
    scan_b = _scan(code, T + timedelta(seconds=30), gate="South 2")

    first = await _upload(client, gate_b, [scan_b])
    assert first["outcomes"][0]["result"] == "admitted"
    assert first["outcomes"][0]["conflict_of"] is None

    second = await _upload(client, gate_a, [scan_a])
    assert second["outcomes"][0]["scan_id"] == scan_a["scan_id"]
    assert second["outcomes"][0]["conflict_of"] is None
    assert second["reclassified"] == [
        {
            "scan_id": scan_b["scan_id"],
            "result": "admitted",
            "reason": None,
            "conflict_of": scan_a["scan_id"],
            "duplicate_upload": False,
            "server_reason": None,
            "stored": True,
            "time_adjusted": None,
        }
    ]
    stored = await _rows(
        settings,
        "SELECT id::text, scanned_at, device_scanned_at, clock_offset_ms, conflict_of::text "
        "FROM ticket_scans WHERE id IN (:a, :b) ORDER BY scanned_at",
        a=scan_a["scan_id"],
        b=scan_b["scan_id"],
    )
    assert [r[0] for r in stored] == [scan_a["scan_id"], scan_b["scan_id"]]
    assert stored[0].scanned_at == T
    assert stored[0].device_scanned_at == T + timedelta(minutes=5)
    assert stored[0].clock_offset_ms == -300_000
    assert stored[1].conflict_of == scan_a["scan_id"]
    # Gate B learns that its admission was a double entry; gate A sees B's scan as one.
    b_view = [c for c in (await _feed(client, gate_b))["changes"] if c["type"] == "admission"]
    own = next(c for c in b_view if c["scan_id"] == scan_b["scan_id"])
    assert own["conflict_of"] == scan_a["scan_id"]
    a_view = [c for c in (await _feed(client, gate_a))["changes"] if c["type"] == "admission"]
    assert {c["scan_id"] for c in a_view} == {scan_b["scan_id"]}
    conflicts = await _rows(
        settings,
        "SELECT payload FROM outbox WHERE routing_key = 'scan.conflict' AND ticket_id = :t",
        t=tickets[0]["ticket"]["id"],
    )
    assert [c.payload["data"]["scan_id"] for c in conflicts] == [scan_b["scan_id"]]
    history = (
        await client.get(
            f"/v1/tickets/{tickets[0]['ticket']['id']}/history", headers=tenant.token()
        )
    ).json()
    assert [h["kind"] for h in history] == ["purchased", "checked_in"]


async def test_repeated_and_interrupted_uploads_store_each_scan_once(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    event_id, tickets = await _event_with_tickets(client, tenant, count=4)
    device = await enrolled_device(client, tenant, event_id)
    batch = [_scan(t["code"], T + timedelta(seconds=i)) for i, t in enumerate(tickets)]

    cut_off = await client.post(
        "/v1/sync/scans",
        content=msgspec.json.encode({"scans": batch})[:-40],
        headers={**device.headers, "Content-Type": "application/json"},
    )
    assert cut_off.status_code == 400
    ids = [s["scan_id"] for s in batch]
    count_sql = "SELECT count(*) FROM ticket_scans WHERE id::text = ANY(:ids)"
    assert (await _rows(settings, count_sql, ids=ids))[0][0] == 0

    half = await _upload(client, device, batch[:2])  # the part that got through before
    assert [o["duplicate_upload"] for o in half["outcomes"]] == [False, False]
    outcomes = [await _upload(client, device, batch) for _ in range(3)]
    assert [o["duplicate_upload"] for o in outcomes[0]["outcomes"]] == [True, True, False, False]
    for repeat in outcomes[1:]:
        assert all(o["duplicate_upload"] for o in repeat["outcomes"])
        assert [(o["scan_id"], o["result"], o["conflict_of"]) for o in repeat["outcomes"]] == [
            (o["scan_id"], o["result"], o["conflict_of"]) for o in outcomes[0]["outcomes"]
        ]
    assert (await _rows(settings, count_sql, ids=ids))[0][0] == len(batch)


async def test_uploads_are_checked(client: Client, tenant: TenantHandle) -> None:
    event_id, tickets = await _event_with_tickets(client, tenant)
    device = await enrolled_device(client, tenant, event_id)
    other = await enrolled_device(client, tenant, event_id, gate="South")
    too_many = [_scan(tickets[0]["code"], T) for _ in range(1001)]
    response = await client.post("/v1/sync/scans", json={"scans": too_many}, headers=device.headers)
    assert response.status_code == 400
    mine = _scan(tickets[0]["code"], T)
    await _upload(client, device, [mine])
    stolen = await client.post("/v1/sync/scans", json={"scans": [mine]}, headers=other.headers)
    assert stolen.status_code == 409
    assert stolen.json()["code"] == "scan_id_taken"
    manager = await client.post("/v1/sync/scans", json={"scans": [mine]}, headers=tenant.token())
    assert manager.status_code == 403


async def test_an_offline_admission_the_server_would_refuse_is_kept_and_flagged(
    client: Client, tenant: TenantHandle
) -> None:
    event_id, tickets = await _event_with_tickets(client, tenant)
    device = await enrolled_device(client, tenant, event_id)
    ticket_id = tickets[1]["ticket"]["id"]
    await client.post(
        f"/v1/tickets/{ticket_id}/revoke",
        json={"reason": "chargeback"},
        headers={**tenant.token(), "Idempotency-Key": "rv"},
    )
    stale = _scan(tickets[1]["code"], T)  # the device had not heard of the revocation yet
    refused = _scan("GARBAGE", T, device_result="rejected", device_reason="invalid_code")
    outcome = await _upload(client, device, [stale, refused])
    assert outcome["outcomes"][0]["result"] == "admitted"
    assert outcome["outcomes"][0]["server_reason"] == "revoked"
    assert outcome["outcomes"][1]["result"] == "rejected"
    assert outcome["outcomes"][1]["reason"] == "invalid_code"


async def test_a_resumed_feed_ends_with_exactly_the_servers_tickets(
    client: Client, tenant: TenantHandle
) -> None:
    event_id, tickets = await _event_with_tickets(client, tenant, count=7)
    device = await enrolled_device(client, tenant, event_id)
    neighbour = await enrolled_device(client, tenant, event_id, gate="South")
    known: dict[str, tuple[str, int]] = {}
    admissions: set[str] = set()
    key_ids: set[int] = set()

    def apply(page: dict[str, Any]) -> None:
        for change in page["changes"]:
            if change["type"] == "ticket":
                known[change["ticket_id"]] = (change["status"], change["secret_version"])
            elif change["type"] == "admission":
                admissions.add(change["scan_id"])
            else:
                key_ids.update(k["key_id"] for k in change["keys"]["encryption_keys"])

    page = await _feed(client, device, limit=3)
    apply(page)
    assert page["has_more"]
    cursor = page["next_cursor"]
    # The device goes offline; meanwhile the server changes tickets and another gate admits.
    moved = tickets[5]["ticket"]["id"]
    gone = tickets[6]["ticket"]["id"]
    await client.post(
        f"/v1/tickets/{moved}/transfer",
        json={"holder": {"user_id": "u9", "name": "Friend"}},
        headers={**tenant.token(), "Idempotency-Key": "tr"},
    )
    await client.post(
        f"/v1/tickets/{gone}/revoke",
        json={"reason": "refund"},
        headers={**tenant.token(), "Idempotency-Key": "rv"},
    )
    admitted = await client.post(
        "/v1/validate", json={"code": tickets[0]["code"]}, headers=neighbour.headers
    )
    assert admitted.status_code == 200
    # Back online: resume from the cursor, a page at a time.
    while True:
        page = await _feed(client, device, cursor, limit=3)
        apply(page)
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    server = (
        await client.get("/v1/tickets", params={"event_id": event_id}, headers=tenant.token())
    ).json()["items"]
    assert known == {t["id"]: (t["status"], t["secret_version"]) for t in server}
    assert known[moved] == ("active", 1)
    assert known[gone] == ("revoked", 0)
    assert known[tickets[0]["ticket"]["id"]] == ("checked_in", 0)
    assert admissions == {admitted.json()["scan_id"]}
    assert key_ids  # the scanner got the event's keys from the feed
    # Nothing new: the cursor stays put and the page is empty.
    idle = await _feed(client, device, cursor)
    assert idle["changes"] == []
    assert idle["next_cursor"] == cursor
    assert not idle["has_more"]


async def test_the_feed_speaks_msgpack_and_gzip(client: Client, tenant: TenantHandle) -> None:
    event_id, _ = await _event_with_tickets(client, tenant, count=20)
    device = await enrolled_device(client, tenant, event_id)
    packed = await client.get(
        "/v1/sync/changes",
        headers={**device.headers, "Accept": "application/msgpack", "Accept-Encoding": "gzip"},
    )
    assert packed.status_code == 200
    assert packed.headers["content-type"].startswith("application/msgpack")
    page = msgspec.msgpack.decode(packed.content, type=wire.ChangesPage)
    assert sum(isinstance(c, wire.TicketChange) for c in page.changes) == 20
    raw = await client.get(
        "/v1/sync/changes", headers={**device.headers, "Accept-Encoding": "gzip"}
    )
    assert raw.headers.get("content-encoding") == "gzip"
    assert msgspec.json.decode(raw.content, type=wire.ChangesPage).changes
    bad = await client.get("/v1/sync/changes", params={"cursor": "zzz"}, headers=device.headers)
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_cursor"


async def test_only_devices_read_the_feed(client: Client, tenant: TenantHandle) -> None:
    response = await client.get("/v1/sync/changes", headers=tenant.token())
    assert response.status_code == 403


async def test_a_device_can_ask_whether_its_scan_arrived(
    client: Client, tenant: TenantHandle
) -> None:
    event_id, tickets = await _event_with_tickets(client, tenant, count=1)
    device = await enrolled_device(client, tenant, event_id)
    other = await enrolled_device(client, tenant, event_id, gate="South 2")
    scan_id = str(new_id())
    validated = await client.post(
        "/v1/validate",
        json={"code": tickets[0]["code"], "scan_id": scan_id},
        headers=device.headers,
    )
    assert validated.status_code == 200, validated.text

    mine = await client.get(f"/v1/sync/scans/{scan_id}", headers=device.headers)
    assert mine.status_code == 200, mine.text
    assert mine.json()["result"] == "admitted"
    assert mine.json()["ticket_id"] == tickets[0]["ticket"]["id"]
    assert mine.json()["scan_id"] == scan_id

    # Another device's scan is not this device's to read (its id is taken); a scan the server
    # never got is not there.
    theirs = await client.get(f"/v1/sync/scans/{scan_id}", headers=other.headers)
    assert theirs.status_code == 409
    assert theirs.json()["code"] == "scan_id_taken"
    assert "Ada Guest" not in theirs.text
    never = await client.get(f"/v1/sync/scans/{new_id()}", headers=device.headers)
    assert never.status_code == 404
    assert never.json()["code"] == "not_found"


async def test_a_clock_offset_beyond_the_column_is_a_400_not_a_500(
    client: Client, tenant: TenantHandle
) -> None:
    """Found by the fuzz test: an offset past 32 bits reached the database (500)."""
    event_id, tickets = await _event_with_tickets(client, tenant, count=1)
    device = await enrolled_device(client, tenant, event_id)
    for offset in (2**31, -(2**31) - 1, 10**12):
        scan = _scan(tickets[0]["code"], T, offset_ms=offset)
        response = await client.post(
            "/v1/sync/scans", json={"scans": [scan]}, headers=device.headers
        )
        assert_problem(response, 400, "validation_failed")
    await _upload(client, device, [_scan(tickets[0]["code"], T, offset_ms=2**31 - 1)])


async def test_a_scan_time_pushed_past_the_calendar_is_a_400_not_a_500(
    client: Client, tenant: TenantHandle
) -> None:
    """Found with the fuzz test: the device's time plus its clock offset left the calendar. No
    clock reads such a time, so the upload's schema refuses it, naming the scan."""
    event_id, tickets = await _event_with_tickets(client, tenant, count=1)
    device = await enrolled_device(client, tenant, event_id)
    late = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    early = datetime(1, 1, 1, 0, 1, tzinfo=UTC)
    for at, offset in ((late, 2**31 - 1), (early, -(2**31))):
        response = await client.post(
            "/v1/sync/scans",
            json={"scans": [_scan(tickets[0]["code"], at, offset_ms=offset)]},
            headers=device.headers,
        )
        assert_problem(response, 400, "validation_failed")


async def test_an_uploads_answer_is_what_its_repeat_reads_back(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    """The upload answers the scans it stores from what it wrote (it does not read them back);
    a repeat reads them from the table. Both must say the same of every scan: conflicts, time
    adjustments either way and none, a scan id twice in one batch, and a batch mixing new and
    already stored scans."""
    event_id, tickets = await _event_with_tickets(client, tenant, count=3)
    device = await enrolled_device(client, tenant, event_id)
    first = _scan(tickets[0]["code"], T)
    stored_before = await _upload(client, device, [first])
    # Placed between the device's enrollment (today) and the upload's arrival (EVENT_NIGHT).
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    batch = [
        first,  # already stored
        _scan(tickets[0]["code"], T + timedelta(seconds=5)),  # its conflict
        _scan(tickets[1]["code"], T, offset_ms=40 * 60_000),  # claims after arrival: ahead
        twice := _scan(tickets[2]["code"], long_ago),  # claims before enrollment: behind
        twice,  # the same scan id again in the same batch
    ]
    answer = await _upload(client, device, batch)
    again = await _upload(client, device, batch)

    def said(outcome: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in outcome.items() if k != "duplicate_upload"}

    assert [said(o) for o in answer["outcomes"]] == [said(o) for o in again["outcomes"]]
    assert said(answer["outcomes"][0]) == said(stored_before["outcomes"][0])
    assert [o["duplicate_upload"] for o in answer["outcomes"]] == [
        True,
        False,
        False,
        False,
        False,
    ]
    assert all(o["duplicate_upload"] for o in again["outcomes"])
    by_scan = [(o["conflict_of"], o["time_adjusted"]) for o in answer["outcomes"]]
    assert by_scan == [
        (None, None),
        (first["scan_id"], None),
        (None, "clock_ahead"),
        (None, "clock_behind"),
        (None, "clock_behind"),
    ]
    ids = list({s["scan_id"] for s in batch})
    count_sql = "SELECT count(*) FROM ticket_scans WHERE id::text = ANY(:ids)"
    assert (await _rows(settings, count_sql, ids=ids))[0][0] == len(ids)
