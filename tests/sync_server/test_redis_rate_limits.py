"""Rate limits per tenant and caller per minute, counted in the real Redis."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from shared.clock import ManualClock
from sync_server.app import create_app
from sync_server.http.auth import Principal, Role
from sync_server.redis.link import RedisLink
from sync_server.redis.rate_limits import RateLimits
from sync_server.settings import RateLimitSettings, Settings
from tests.sync_server import redis_service
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import assert_problem

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

LIMITS = RateLimitSettings(scanner=5, manager=5, service=0)
#: 20.25 s into the current minute: the window cannot roll over under the test.
MINUTE = int(time.time() // 60)
NOW = MINUTE * 60 + 20.25


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The API with low limits and a clock (the rate limits' too) that stands still."""
    app = create_app(replace(settings, rate_limits=LIMITS), clock=_clock_at(NOW))
    async with AsyncTestClient(app=app) as client:
        yield client


def _clock_at(timestamp: float) -> ManualClock:
    return ManualClock(datetime.fromtimestamp(timestamp, UTC))


async def test_a_caller_over_its_limit_gets_429_with_retry_after_and_no_one_else_does(
    limited: AsyncTestClient[Litestar], settings: Settings, make_tenant: object
) -> None:
    main: TenantHandle = await make_tenant("Main")  # type: ignore[operator]
    other: TenantHandle = await make_tenant("Other")  # type: ignore[operator]
    alice = main.token(Role.MANAGER, subject="alice")

    for _ in range(LIMITS.manager):
        assert (await limited.get("/v1/events", headers=alice)).status_code == 200
    refused = await limited.get("/v1/events", headers=alice)
    assert_problem(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"] == str(math.ceil((MINUTE + 1) * 60 - NOW)) == "40"
    assert refused.json()["limit"] == LIMITS.manager
    assert refused.json()["retry_after"] == 40

    # The key of the spec, with a one-minute life; refused requests count too.
    async with redis_service.client(settings.redis) as redis:
        key = f"{settings.redis.key_prefix}rate:{main.id}:manager:alice:{MINUTE}"
        assert await redis_service.text(redis, key) == str(LIMITS.manager + 1)
        assert 0 < await redis.ttl(key) <= 60

    # Another tenant's manager with the same name, and another person of the same tenant,
    # each have their own count.
    other_alice = other.token(Role.MANAGER, subject="alice")
    assert (await limited.get("/v1/events", headers=other_alice)).status_code == 200
    bob = main.token(Role.MANAGER, subject="bob")
    assert (await limited.get("/v1/events", headers=bob)).status_code == 200
    assert (await limited.get("/v1/events", headers=alice)).status_code == 429


async def test_operations_paths_are_never_limited_and_a_zero_limit_is_none(
    limited: AsyncTestClient[Litestar], tenant: TenantHandle
) -> None:
    carol = tenant.token(Role.MANAGER, subject="carol")
    for _ in range(LIMITS.manager + 1):
        await limited.get("/v1/events", headers=carol)
    assert (await limited.get("/v1/events", headers=carol)).status_code == 429
    assert (await limited.get("/health", headers=carol)).status_code == 200
    assert (await limited.get("/schema/openapi.json", headers=carol)).status_code == 200

    service = tenant.token(Role.SERVICE, subject="box-office")  # service limit 0: unlimited
    for _ in range(3 * LIMITS.manager):
        assert (await limited.get("/v1/events", headers=service)).status_code == 200


async def test_the_minute_window_starts_afresh(settings: Settings, tenant: TenantHandle) -> None:
    clock = _clock_at(NOW)
    app = create_app(replace(settings, rate_limits=LIMITS), clock=clock)
    async with AsyncTestClient(app=app) as client:
        dave = tenant.token(Role.MANAGER, subject="dave")
        for _ in range(LIMITS.manager):
            await client.get("/v1/events", headers=dave)
        assert (await client.get("/v1/events", headers=dave)).status_code == 429
        clock.advance(60)  # the next minute: a new key
        assert (await client.get("/v1/events", headers=dave)).status_code == 200


async def test_a_burst_is_counted_exactly_and_a_busy_pool_is_not_redis_down(
    settings: Settings,
) -> None:
    link = RedisLink(settings.redis)
    try:
        limits = RateLimits(link, RateLimitSettings(scanner=10_000), clock=lambda: NOW)
        device = Principal(
            subject="device", tenant_id=uuid.uuid4(), role=Role.SCANNER, device_id=uuid.uuid4()
        )
        await asyncio.gather(*(limits.hit(device) for _ in range(120)))
        assert link.up  # far more commands at once than pooled connections
        async with redis_service.client(settings.redis) as redis:
            assert await redis_service.text(redis, limits.key(device, MINUTE)) == "120"
    finally:
        await link.close()


async def test_requests_sharing_a_round_trip_each_get_their_own_count(settings: Settings) -> None:
    # Concurrent requests share round trips to Redis (one script call per batch); each must
    # still be counted once, in order, so exactly the limit gets through, across two processes'
    # worth of limiters sharing the key.
    links = [RedisLink(settings.redis), RedisLink(settings.redis)]
    try:
        limiters = [
            RateLimits(link, RateLimitSettings(scanner=50), clock=lambda: NOW) for link in links
        ]
        device = Principal(
            subject="device", tenant_id=uuid.uuid4(), role=Role.SCANNER, device_id=uuid.uuid4()
        )
        others = [
            Principal(
                subject="d", tenant_id=device.tenant_id, role=Role.SCANNER, device_id=uuid.uuid4()
            )
            for _ in range(3)
        ]
        decisions = await asyncio.gather(
            *(limiters[i % 2].hit(device) for i in range(80)),
            *(limiters[i % 2].hit(others[i % 3]) for i in range(30)),
        )
        assert sum(d.allowed for d in decisions[:80]) == 50
        assert all(d.allowed for d in decisions[80:])
        async with redis_service.client(settings.redis) as redis:
            assert await redis_service.text(redis, limiters[0].key(device, MINUTE)) == "80"
            for other in others:
                assert await redis_service.text(redis, limiters[0].key(other, MINUTE)) == "10"
                assert 0 < await redis.ttl(limiters[0].key(other, MINUTE)) <= 60
    finally:
        for link in links:
            await link.close()
