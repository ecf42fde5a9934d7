"""Cost control (issue 14, item 12): what one device or one anonymous client can make the
server do and store in a minute, against the real Postgres and Redis."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from shared.clock import ManualClock
from shared.ids import new_id
from shared.wire import MAX_SCAN_BATCH
from sync_server.app import create_app
from sync_server.console.accounts import create_user, set_password, sign_in
from sync_server.console.security import SESSION_COOKIE
from sync_server.db.engine import Database
from sync_server.settings import ObservabilitySettings, RateLimitSettings, Settings
from tests.sync_server.conftest import METRICS_HEADERS, TenantHandle
from tests.sync_server.helpers import (
    assert_problem,
    buy,
    connect,
    create_event,
    create_ticket_type,
    enrolled_device,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

#: 20.25 s into the current minute: the window cannot roll over under the test.
MINUTE = int(time.time() // 60)
NOW = MINUTE * 60 + 20.25
#: A code of the right shape that no key reads (its tag cannot verify): junk.
JUNK_BODY = 224


def _at(timestamp: float) -> ManualClock:
    return ManualClock(datetime.fromtimestamp(timestamp, UTC))


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The API with the shipped limits (anonymous requests limited too) and a clock that stands
    still 20 s into the current minute."""
    app = create_app(_fresh(settings, RateLimitSettings()), clock=_at(NOW))
    async with AsyncTestClient(app=app) as client:
        yield client


def _fresh(settings: Settings, limits: RateLimitSettings) -> Settings:
    """``settings`` with ``limits`` and Redis keys of their own: the suite's other requests
    (from the same test client address, this minute) do not count."""
    prefix = f"{settings.redis.key_prefix}{secrets.token_hex(4)}:"
    return replace(settings, rate_limits=limits, redis=replace(settings.redis, key_prefix=prefix))


def _junk_code() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return "GH1" + "".join(secrets.choice(alphabet) for _ in range(JUNK_BODY))


def _scan(code: str, *, result: str = "rejected") -> dict[str, Any]:
    return {
        "scan_id": str(new_id()),
        "code": code,
        "gate": "North 1",
        "direction": "entry",
        "scanned_at": datetime.fromtimestamp(NOW, UTC).isoformat(),
        "device_result": result,
        **({"device_reason": "invalid_code"} if result == "rejected" else {}),
    }


async def _stored(settings: Settings, device_id: str) -> int:
    async with connect(settings.database.admin_url) as connection:
        count = await connection.scalar(
            text("SELECT count(*) FROM ticket_scans WHERE device_id = :d"), {"d": device_id}
        )
    return int(count or 0)


async def test_a_batch_of_500_junk_scans_stores_the_allowance_and_counts_the_rest(
    limited: AsyncTestClient[Litestar], tenant: TenantHandle, settings: Settings
) -> None:
    allowance = RateLimitSettings().junk_per_minute
    event = await create_event(limited, tenant)
    ticket_type = await create_ticket_type(limited, tenant, event["id"])
    bought = await buy(limited, tenant, ticket_type["id"], quantity=2)
    codes = [t["code"] for t in bought.json()["tickets"]]
    device = await enrolled_device(limited, tenant, event["id"])

    junk = [_scan(_junk_code()) for _ in range(500)]
    # Two genuine codes among them (one admitted offline, one at the end): never dropped.
    genuine = [_scan(codes[0], result="admitted"), _scan(codes[1], result="admitted")]
    batch = [genuine[0], *junk, genuine[1]]
    answer = await limited.post("/v1/sync/scans", json={"scans": batch}, headers=device.headers)
    assert answer.status_code == 200, answer.text
    outcomes = answer.json()["outcomes"]
    # Every scan is acknowledged (the scanner must not send them again), in order.
    assert [o["scan_id"] for o in outcomes] == [s["scan_id"] for s in batch]
    assert [o["stored"] for o in outcomes].count(False) == 500 - allowance
    assert outcomes[0]["stored"]
    assert outcomes[-1]["stored"]
    assert outcomes[0]["result"] == outcomes[-1]["result"] == "admitted"
    assert all(o["reason"] == "invalid_code" for o in outcomes[1:-1])
    assert await _stored(settings, device.device_id) == allowance + 2

    # The same minute, more junk: none stored, all counted.
    again = [_scan(_junk_code()) for _ in range(50)]
    answer = await limited.post("/v1/sync/scans", json={"scans": again}, headers=device.headers)
    assert answer.status_code == 200, answer.text
    assert not any(o["stored"] for o in answer.json()["outcomes"])
    assert await _stored(settings, device.device_id) == allowance + 2

    # The manager sees how many were counted and not stored.
    listed = await limited.get(
        "/v1/devices", params={"event_id": event["id"]}, headers=tenant.token()
    )
    assert listed.status_code == 200, listed.text
    (shown,) = [d for d in listed.json()["items"] if d["id"] == device.device_id]
    assert shown["junk_scans_not_stored"] == 500 - allowance + 50
    scrape = await limited.get("/metrics", headers=METRICS_HEADERS)
    assert b"gatehouse_junk_scans_not_stored_total" in scrape.content


async def test_a_device_over_its_scans_a_minute_gets_429_with_few_requests(
    settings: Settings, tenant: TenantHandle
) -> None:
    budget = RateLimitSettings(scanner_scans=MAX_SCAN_BATCH, junk_per_minute=0)
    app = create_app(_fresh(settings, budget), clock=_at(NOW))
    async with AsyncTestClient(app=app) as client:
        event = await create_event(client, tenant)
        device = await enrolled_device(client, tenant, event["id"])
        # One request: a full batch, within the budget.
        full = [_scan(_junk_code()) for _ in range(MAX_SCAN_BATCH)]
        answer = await client.post("/v1/sync/scans", json={"scans": full}, headers=device.headers)
        assert answer.status_code == 200, answer.text
        # The second request, of one scan, is over it: two requests, far below 600 a minute.
        refused = await client.post(
            "/v1/sync/scans", json={"scans": [_scan(_junk_code())]}, headers=device.headers
        )
        assert_problem(refused, 429, "rate_limited")
        assert refused.headers["Retry-After"] == str(math.ceil((MINUTE + 1) * 60 - NOW))
        assert refused.json()["limit"] == MAX_SCAN_BATCH
        assert "scans" in refused.json()["detail"]
        # Its other requests still go through (the feed is not an upload).
        assert (await client.get("/v1/sync/changes", headers=device.headers)).status_code == 200


def test_a_scan_budget_smaller_than_one_batch_is_refused_at_start() -> None:
    from sync_server.settings import SettingsError, new_master_key  # noqa: PLC0415

    env = {
        "GATEHOUSE_JWT_SECRET": secrets.token_urlsafe(32),
        "GATEHOUSE_MASTER_KEY": new_master_key(),
        "GATEHOUSE_RATE_LIMIT_SCANNER_SCANS": str(MAX_SCAN_BATCH - 1),
    }
    with pytest.raises(SettingsError, match="GATEHOUSE_RATE_LIMIT_SCANNER_SCANS"):
        Settings.from_env(env)


async def test_an_anonymous_client_hammering_enrollment_and_metadata_gets_429(
    limited: AsyncTestClient[Litestar],
) -> None:
    limit = RateLimitSettings().anonymous
    for n in range(limit):
        path = "/v1/devices/enroll" if n % 2 else f"/v1/chain/metadata/{new_id()}"
        if n % 2:
            answer = await limited.post(path, json={"code": "NOT-A-CODE", "device_name": "x"})
        else:
            answer = await limited.get(path)
        assert answer.status_code != 429, (n, answer.text)
    refused = await limited.post("/v1/devices/enroll", json={"code": "X", "device_name": "x"})
    assert_problem(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"] == str(math.ceil((MINUTE + 1) * 60 - NOW))
    assert_problem(await limited.get(f"/v1/chain/metadata/{new_id()}"), 429, "rate_limited")
    # The orchestrator's probes are never limited.
    assert (await limited.get("/health")).status_code == 200
    assert (await limited.get("/ready")).status_code in (200, 503)


async def test_a_forwarded_for_header_from_a_client_buys_no_more_requests(
    settings: Settings,
) -> None:
    """Only a proxy in uvicorn's ``FORWARDED_ALLOW_IPS`` may name the client; a client's own
    header changes nothing (here there is no proxy: the test client is the peer)."""
    app = create_app(_fresh(settings, RateLimitSettings(anonymous=1)), clock=_at(NOW))
    async with AsyncTestClient(app=app) as client:
        first = await client.get("/schema/openapi.json", headers={"X-Forwarded-For": "1.1.1.1"})
        assert first.status_code == 200
        second = await client.get("/schema/openapi.json", headers={"X-Forwarded-For": "2.2.2.2"})
        assert_problem(second, 429, "rate_limited")


async def test_metrics_on_the_api_port_answer_no_figures_without_the_token(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        answer = await client.get("/metrics", headers=headers)
        assert_problem(answer, 404, "not_found")
        assert b"gatehouse_" not in answer.content
    assert (await client.get("/metrics", headers=METRICS_HEADERS)).status_code == 200
    # Without the setting, the API serves no metrics at all.
    bare = create_app(replace(settings, observability=ObservabilitySettings()))
    async with AsyncTestClient(app=bare) as other:
        answer = await other.get("/metrics", headers=METRICS_HEADERS)
        assert_problem(answer, 404, "not_found")
        assert b"gatehouse_" not in answer.content


async def test_console_pages_count_per_signed_in_manager_not_per_address(
    settings: Settings, tenant: TenantHandle
) -> None:
    """A venue office's managers share one address: their console pages count against each
    manager's own limit (as their API calls do), not the address's anonymous one. Requests
    without a live session — a stale or forged cookie included — still count per address, and
    the console's static files are not counted."""
    limits = RateLimitSettings(anonymous=3, manager=5)
    now = datetime.fromtimestamp(NOW, UTC)
    database = Database(settings.database)
    sessions = []
    try:
        for n in range(2):
            email = f"office-{n}-{tenant.id.hex[:12]}@example.org"
            _, link = await create_user(database, tenant.id, email, now)
            assert await set_password(database, link, "a long enough password", now)
            session = await sign_in(database, email, "a long enough password", now)
            assert session is not None
            sessions.append(session)
    finally:
        await database.close()
    app = create_app(_fresh(settings, limits), clock=_at(NOW))
    async with AsyncTestClient(app=app) as client:
        # Two managers, one address: five pages each, well past the address's three.
        for session in sessions:
            client.cookies.set(SESSION_COOKIE, session)
            for _ in range(limits.manager):
                page = await client.get("/console/events")
                assert page.status_code == 200, page.text
            over = await client.get("/console/events")
            assert over.status_code == 429
            assert "Too many requests" in over.text
            assert over.headers["Retry-After"] == str(math.ceil((MINUTE + 1) * 60 - NOW))
        for _ in range(10):
            asset = await client.get("/console/static/console.css")
            assert asset.status_code == 200
        # A cookie that is no session counts per address: three requests, then 429.
        client.cookies.set(SESSION_COOKIE, "not-a-session")
        for _ in range(limits.anonymous):
            sent_away = await client.get("/console/events", follow_redirects=False)
            assert sent_away.status_code == 303  # to the sign-in page
        assert (await client.get("/console/events", follow_redirects=False)).status_code == 429
