"""Circuit breakers shared through the real Redis by two app instances (as two server
processes would), and their process-local fallback when Redis cannot be reached."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest
from litestar import Litestar, get
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from sync_server.app import create_app, services
from sync_server.domain.chain.ownership import GuardedOwnership
from sync_server.domain.checkin.ownership import OwnershipResult
from sync_server.http.problems import circuit_open_problem, exception_handlers
from sync_server.redis.breakers import BreakerPolicy, Breakers, BreakerState, CircuitOpen
from sync_server.redis.link import RedisLink
from sync_server.settings import BreakerSettings, RedisSettings, Settings
from tests.sync_server import redis_service
from tests.sync_server.helpers import assert_problem

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

OPEN_SECONDS = 0.4
THRESHOLD = 3


class Down(ConnectionError):
    """The remote service failing."""


@dataclass
class Service:
    """A stand-in for a remote service that counts the calls that reach it."""

    failing: bool = True
    calls: int = 0
    delay: float = 0.0

    async def __call__(self) -> str:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.failing:
            raise Down("no answer")
        return "ok"


@pytest.fixture
async def two_instances(settings: Settings) -> AsyncIterator[tuple[Breakers, Breakers]]:
    """The breakers of two app instances on the same Redis, started in the test's loop."""
    tuned = replace(settings, breakers=BreakerSettings(THRESHOLD, OPEN_SECONDS))
    first, second = create_app(tuned), create_app(tuned)
    async with first.lifespan(), second.lifespan():
        yield services(first).breakers, services(second).breakers


async def _fail(breakers: Breakers, name: str, service: Service) -> None:
    with pytest.raises(Down):
        await breakers.call(name, service)


async def test_a_circuit_opened_by_one_instance_is_open_in_the_other_and_half_opens_once(
    two_instances: tuple[Breakers, Breakers], settings: Settings
) -> None:
    one, other = two_instances
    name = f"rpc-{uuid.uuid4().hex[:8]}"
    service = Service()
    for _ in range(THRESHOLD):
        assert await other.state(name) is BreakerState.CLOSED
        await _fail(one, name, service)
    assert await other.state(name) is BreakerState.OPEN

    with pytest.raises(CircuitOpen) as refused:
        await other.call(name, service)
    assert service.calls == THRESHOLD  # refused without calling
    problem = circuit_open_problem(refused.value)  # what a client would hear of it
    assert problem.status == 503
    assert problem.code == "dependency_unavailable"
    assert problem.headers["Retry-After"] == "1"
    assert 0 < refused.value.retry_after <= OPEN_SECONDS

    async with redis_service.client(settings.redis) as redis:
        key = f"{settings.redis.key_prefix}circuit:{name}"
        assert 0 < await redis.ttl(key) <= 30

        # Half-open: of twelve callers in both instances at once, one trial reaches the
        # service; its failure opens the circuit again.
        await asyncio.sleep(OPEN_SECONDS + 0.05)
        assert await one.state(name) is BreakerState.HALF_OPEN
        service = Service(delay=0.05)
        outcomes = await asyncio.gather(
            *(b.call(name, service) for b in (one, other) * 6), return_exceptions=True
        )
        assert service.calls == 1
        assert sorted(type(o).__name__ for o in outcomes) == ["CircuitOpen"] * 11 + ["Down"]
        assert await other.state(name) is BreakerState.OPEN

        # The next trial succeeds: closed everywhere, state forgotten.
        await asyncio.sleep(OPEN_SECONDS + 0.05)
        service.failing = False
        assert await other.call(name, service) == "ok"
        assert await one.state(name) is BreakerState.CLOSED
        assert await redis.exists(key) == 0
        assert await one.call(name, service) == "ok"


async def test_only_failures_in_a_row_count_and_only_those_the_policy_counts(
    two_instances: tuple[Breakers, Breakers],
) -> None:
    one, other = two_instances
    name = f"rpc-{uuid.uuid4().hex[:8]}"
    service = Service()
    for _ in range(THRESHOLD - 1):
        await _fail(one, name, service)
    service.failing = False
    async with other.guard(name):  # the context-manager form
        await service()
    service.failing = True
    for _ in range(THRESHOLD - 1):
        await _fail(other, name, service)
    assert await one.state(name) is BreakerState.CLOSED  # a success reset the count

    # A policy that counts only connection failures: "no such account" shows it answers.
    picky = f"rpc-{uuid.uuid4().hex[:8]}"
    one.configure(picky, BreakerPolicy(THRESHOLD, OPEN_SECONDS, lambda e: isinstance(e, Down)))

    async def refuses() -> None:
        raise LookupError("no such account")

    for _ in range(THRESHOLD + 2):
        with pytest.raises(LookupError):
            await one.call(picky, refuses)
    assert await one.state(picky) is BreakerState.CLOSED


async def test_without_redis_each_process_keeps_its_own_circuit() -> None:
    # Nothing listens on port 1: every Redis command fails at once (connection refused).
    link = RedisLink(RedisSettings(url="redis://127.0.0.1:1/0"))
    try:
        breakers = Breakers(link, BreakerSettings(THRESHOLD, OPEN_SECONDS))
        service = Service()
        for _ in range(THRESHOLD):
            await _fail(breakers, "solana-rpc", service)
        assert not link.up
        with pytest.raises(CircuitOpen):
            await breakers.call("solana-rpc", service)
        assert service.calls == THRESHOLD
        assert await breakers.state("solana-rpc") is BreakerState.OPEN

        await asyncio.sleep(OPEN_SECONDS + 0.05)
        service.failing = False
        assert await breakers.call("solana-rpc", service) == "ok"  # the trial closes it
        assert await breakers.state("solana-rpc") is BreakerState.CLOSED
    finally:
        await link.close()


async def test_the_shared_state_is_one_hash_per_service(settings: Settings) -> None:
    link = RedisLink(settings.redis)
    try:
        breakers = Breakers(link, BreakerSettings(THRESHOLD, OPEN_SECONDS))
        name = f"mail-{uuid.uuid4().hex[:8]}"
        await _fail(breakers, name, Service())
        redis: Redis = link.client
        fields = await redis.hgetall(link.key(f"circuit:{name}"))
        assert fields == {b"failures": b"1"}
    finally:
        await link.close()


async def test_a_slow_or_failing_chain_makes_admissions_unverified_not_refused(
    settings: Settings,
) -> None:
    link = RedisLink(settings.redis)
    calls: list[str | None] = []

    class HungChain:
        async def check(
            self, *, ticket_id: uuid.UUID, nft_mint: str | None, holder_wallet: str | None
        ) -> OwnershipResult:
            calls.append(nft_mint)
            await asyncio.sleep(10)
            return OwnershipResult(verified=True)

    try:
        breakers = Breakers(link, BreakerSettings(THRESHOLD, OPEN_SECONDS))
        chain = GuardedOwnership(
            HungChain(), breakers, service=f"chain-{uuid.uuid4().hex[:8]}", timeout_seconds=0.05
        )
        ticket_id = uuid.uuid4()
        unverified = OwnershipResult(verified=None)
        assert (
            await chain.check(ticket_id=ticket_id, nft_mint=None, holder_wallet=None) == unverified
        )
        assert calls == []  # no mint: nothing asked
        for _ in range(THRESHOLD + 3):
            result = await chain.check(ticket_id=ticket_id, nft_mint="Mint1", holder_wallet=None)
            assert result == unverified
        assert len(calls) == THRESHOLD  # then the open circuit answers without asking
    finally:
        await link.close()


async def test_an_open_circuit_that_reaches_a_client_is_a_503_with_retry_after() -> None:
    @get("/calls-out", opt={"exclude_from_auth": True})
    async def calls_out() -> None:
        raise CircuitOpen("payments", 2.2)

    app = Litestar(route_handlers=[calls_out], exception_handlers=exception_handlers())
    async with AsyncTestClient(app=app) as client:
        response = await client.get("/calls-out")
    assert_problem(response, 503, "dependency_unavailable")
    assert response.headers["Retry-After"] == "3"
    body = response.json()
    assert body["service"] == "payments"
    assert body["detail"] == "payments is failing; calls to it are paused. Retry in 3 s."
    assert body["title"] == "Service unavailable"
