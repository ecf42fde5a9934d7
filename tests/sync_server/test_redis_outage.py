"""Fault test: the local Redis is really stopped (and always started again). Check-in and
purchases keep working, readiness says Redis is down, the failure is logged once, limits fall
back to this process; when Redis is back, the cache and the shared limits work again without
restarting the app."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest
from redis.asyncio import Redis

from shared.clock import ManualClock
from sync_server.app import create_app, services
from sync_server.http.auth import Role
from sync_server.redis.ticket_cache import TOMBSTONE_PREFIX
from sync_server.settings import RateLimitSettings, Settings
from tests.sync_server import redis_service
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import (
    HOLDER,
    bought,
    buy,
    concurrent_client,
    enrolled_device,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.slow]

LIMIT = 8
MINUTE = int(time.time() // 60)
NOW = MINUTE * 60 + 20.25  # the rate-limit clock stands still mid-minute


async def test_without_redis_the_gates_and_the_shop_keep_working_and_it_all_comes_back(
    settings: Settings, make_tenant: object, caplog: pytest.LogCaptureFixture
) -> None:
    limits = RateLimitSettings(scanner=1000, manager=LIMIT, service=1000)
    # The app's clock (the rate limits' too) stands still mid-minute.
    clock = ManualClock(datetime.fromtimestamp(NOW, UTC))
    app = create_app(replace(settings, rate_limits=limits), clock=clock)
    redis_service.start()  # a previous run may have died with it stopped
    async with concurrent_client(app) as api:
        app_services = services(app)
        tenant: TenantHandle = await make_tenant("Outage venue")  # type: ignore[operator]
        shop = tenant.token(Role.SERVICE, subject="shop")
        purchase = await bought(api, tenant, quantity=3)
        cached_id = purchase["tickets"][0]["ticket"]["id"]
        ticket_type_id = purchase["tickets"][0]["ticket"]["ticket_type_id"]
        event_id = purchase["tickets"][0]["ticket"]["event_id"]
        device = await enrolled_device(api, tenant, event_id)
        assert (await api.get(f"/v1/tickets/{cached_id}", headers=shop)).status_code == 200
        cache_key = f"{settings.redis.key_prefix}ticket:{cached_id}"
        async with redis_service.client(settings.redis) as redis:
            assert await redis.exists(cache_key) == 1
        assert await app_services.redis.ping()  # what /ready asks
        caplog.set_level(logging.INFO, logger="sync_server.redis.link")

        with redis_service.stopped():
            admitted = await api.post(
                "/v1/validate",
                json={"code": purchase["tickets"][1]["code"]},
                headers=device.headers,
            )
            assert admitted.status_code == 200, admitted.text
            assert admitted.json()["result"] == "admitted"
            bought_now = await buy(api, tenant, ticket_type_id)
            assert bought_now.status_code == 201, bought_now.text
            transferred = await api.post(
                f"/v1/tickets/{cached_id}/transfer",
                json={"holder": {**HOLDER, "name": "New Holder"}},
                headers={**shop, "Idempotency-Key": str(uuid.uuid4())},
            )
            assert transferred.status_code == 200, transferred.text
            read = await api.get(f"/v1/tickets/{cached_id}", headers=shop)
            assert read.json()["secret_version"] == 1  # from Postgres: the cache is skipped
            assert not await app_services.redis.ping()

            # Limits still hold, counted in this process.
            spammer = tenant.token(Role.MANAGER, subject="spammer")
            for _ in range(LIMIT):
                assert (await api.get("/v1/events", headers=spammer)).status_code == 200
            assert (await api.get("/v1/events", headers=spammer)).status_code == 429

            down = [r for r in caplog.records if "is not answering" in r.getMessage()]
            assert len(down) == 1, "the outage is logged once, not per request"

        # Redis is back (empty: it keeps nothing on disk). No restart of the app: the link
        # notices by itself within a second or so.
        deadline = time.monotonic() + 5
        while not app_services.redis.up and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert app_services.redis.up
        assert await app_services.redis.ping()
        assert any("answers again" in r.getMessage() for r in caplog.records)

        # The invalidation kept during the outage was written; then the cache fills again.
        async with redis_service.client(settings.redis) as redis:
            await _after_the_outage(api, redis, tenant, cache_key, cached_id)
        # Connections from before the outage were dropped, not tripped over one by one.
        assert len([r for r in caplog.records if "is not answering" in r.getMessage()]) == 1


async def _after_the_outage(
    api: httpx.AsyncClient, redis: Redis, tenant: TenantHandle, cache_key: str, cached_id: str
) -> None:
    shop = tenant.token(Role.SERVICE, subject="shop")
    assert (await redis_service.text(redis, cache_key) or "").startswith(TOMBSTONE_PREFIX)
    read = await api.get(f"/v1/tickets/{cached_id}", headers=shop)
    assert read.json()["secret_version"] == 1
    assert '"secret_version":1' in (await redis_service.text(redis, cache_key) or "")

    # The shared counts are back in Redis.
    fresh = tenant.token(Role.MANAGER, subject="after-the-outage")
    for _ in range(LIMIT):
        assert (await api.get("/v1/events", headers=fresh)).status_code == 200
    assert (await api.get("/v1/events", headers=fresh)).status_code == 429
    prefix = cache_key.removesuffix(f"ticket:{cached_id}")
    rate_key = f"{prefix}rate:{tenant.id}:manager:after-the-outage:{MINUTE}"
    assert await redis_service.text(redis, rate_key) == str(LIMIT + 1)
