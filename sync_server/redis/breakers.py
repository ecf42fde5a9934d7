"""Circuit breakers whose state every server process shares: ``circuit:{service}`` in Redis.

Use them around anything that calls out (the chain's RPC, later payment or mail services)::

    async with breakers.guard("solana-rpc"):
        owner = await rpc.get_owner(mint)
    # or: owner = await breakers.call("solana-rpc", lambda: rpc.get_owner(mint))

Both raise ``CircuitOpen`` without calling when the service's circuit is open (should it reach
a client, the HTTP edge answers 503 ``dependency_unavailable`` with ``Retry-After``: see
``sync_server.http.problems``). The states:

* **closed**: calls go through; ``failure_threshold`` failures in a row (counted across all
  processes; a success resets the count) open the circuit.
* **open** for ``open_seconds``: every call is refused at once, in every process.
* **half-open** after that: exactly one call in the whole deployment is let through as a trial
  (another may try after ``PROBE_SECONDS`` if the trial never reports back). Its success closes
  the circuit, its failure opens it again.

The state is one Redis hash per service, changed only by Lua scripts (so two processes never
interleave a read and a write) that use Redis's own clock (so app hosts' clocks need not
agree): one round trip before a call, and one after it only when something changed (a
failure, or a success after failures). The hash expires 30 s after its last change: a
service nobody has seen fail for 30 s is closed with a clean count.

Why not a library: pybreaker's and aiobreaker's Redis storages use the blocking Redis client
(each call would stall the event loop); purgatory is async but its Redis repository creates its
own client, raises when Redis is down instead of falling back, has no expiry, reads and writes
state non-atomically, and lets every caller through once the open time has passed — measured
here with two factories on one Redis: 20 of 20 concurrent callers reached a dead service at
half-open. asyncbreaker has the same trial stampede and no fallback. The state machine is small;
the shared-state details are what matter, and they are what those libraries get wrong for us.

When Redis is down each process keeps the same state machine in memory (``LocalCircuit``), so a
failing dependency is still cut off, per process, until Redis is back.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, TypeVar

from redis.asyncio import Redis

from sync_server.redis.link import UNAVAILABLE, RedisLink
from sync_server.settings import BreakerSettings

_T = TypeVar("_T")

#: How long the shared state of a circuit lives after its last change.
STATE_TTL_SECONDS: Final = 30
#: How long a half-open circuit waits for its trial call before allowing another.
PROBE_SECONDS: Final = 5.0

# Redis's clock in milliseconds, for every script.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# May a call go? {'closed', failures} | {'open', ms until it may try} | {'probe', 0}
# ARGV: probe ms, TTL s.
_BEFORE = (
    _NOW
    + """
local opened_until = tonumber(redis.call('HGET', KEYS[1], 'opened_until'))
if not opened_until then
    return {'closed', tonumber(redis.call('HGET', KEYS[1], 'failures')) or 0}
end
if now < opened_until then return {'open', opened_until - now} end
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until'))
if probe_until and now < probe_until then return {'open', probe_until - now} end
redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[1]))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {'probe', 0}
"""
)

# A call failed. ARGV: threshold, open ms, TTL s, '1' if it was the trial call.
_FAILED = (
    _NOW
    + """
local function open()
    redis.call('HSET', KEYS[1], 'opened_until', now + tonumber(ARGV[2]))
    redis.call('HDEL', KEYS[1], 'probe_until', 'failures')
    redis.call('EXPIRE', KEYS[1], ARGV[3])
    return 'open'
end
if ARGV[4] == '1' then return open() end
local opened_until = tonumber(redis.call('HGET', KEYS[1], 'opened_until'))
if opened_until and now < opened_until then return 'open' end
if redis.call('HINCRBY', KEYS[1], 'failures', 1) >= tonumber(ARGV[1]) then return open() end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 'closed'
"""
)

# A call succeeded. ARGV: '1' if it was the trial call.
_SUCCEEDED = """
if ARGV[1] == '1' then
    redis.call('DEL', KEYS[1])
    return 'closed'
end
-- a call that started before the circuit opened does not close it
if redis.call('HEXISTS', KEYS[1], 'opened_until') == 1 then return 'open' end
redis.call('HDEL', KEYS[1], 'failures')
return 'closed'
"""

# {'closed'|'open'|'half_open', failures}
_STATE = (
    _NOW
    + """
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures')) or 0
local opened_until = tonumber(redis.call('HGET', KEYS[1], 'opened_until'))
if not opened_until then return {'closed', failures} end
if now < opened_until then return {'open', failures} end
return {'half_open', failures}
"""
)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(Exception):
    """The service's circuit is open: the call was not made. ``retry_after``: seconds until
    a trial call may go; ``wait_seconds``: the same, in whole seconds (at least 1)."""

    def __init__(self, service: str, retry_after: float) -> None:
        self.service = service
        self.retry_after = retry_after
        self.wait_seconds = max(1, math.ceil(retry_after))
        super().__init__(
            f"{service} is failing; calls to it are paused. Retry in {self.wait_seconds} s."
        )


def _always(_: BaseException) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 5
    open_seconds: float = 10.0
    #: Which exceptions count as the service failing. Others (say, "no such account") show
    #: that it answers and count as successes.
    counts: Callable[[BaseException], bool] = _always


@dataclass(slots=True)
class LocalCircuit:
    """One circuit's state in this process, for while Redis is down (times: monotonic)."""

    failures: int = 0
    opened_until: float | None = None
    probe_until: float | None = None
    touched: float = field(default_factory=time.monotonic)

    def expire(self, now: float) -> None:
        if now - self.touched > STATE_TTL_SECONDS:
            self.failures, self.opened_until, self.probe_until = 0, None, None

    def state(self, now: float) -> BreakerState:
        if self.opened_until is None:
            return BreakerState.CLOSED
        return BreakerState.OPEN if now < self.opened_until else BreakerState.HALF_OPEN


@dataclass(frozen=True, slots=True)
class _Pass:
    """What ``_before`` decided for one call, for ``_after``."""

    shared: bool  # decided by Redis (else by this process's LocalCircuit)
    probe: bool
    failures: int


class Breakers:
    """All circuits of this process, their state shared through Redis."""

    def __init__(self, link: RedisLink, settings: BreakerSettings | None = None) -> None:
        settings = settings or BreakerSettings()
        self._link = link
        self._default = BreakerPolicy(settings.failure_threshold, settings.open_seconds)
        self._policies: dict[str, BreakerPolicy] = {}
        self._local: dict[str, LocalCircuit] = {}
        self._used: set[str] = set()
        register = link.client.register_script
        self._before_script = register(_BEFORE)
        self._failed_script = register(_FAILED)
        self._succeeded_script = register(_SUCCEEDED)
        self._state_script = register(_STATE)

    def configure(self, service: str, policy: BreakerPolicy) -> None:
        """Give ``service`` its own threshold, open time or idea of failure."""
        self._policies[service] = policy

    def policy(self, service: str) -> BreakerPolicy:
        return self._policies.get(service, self._default)

    def key(self, service: str) -> str:
        return self._link.key(f"circuit:{service}")

    def services(self) -> list[str]:
        """The services this process configured or called through a circuit (for metrics)."""
        return sorted(self._used | set(self._policies))

    @asynccontextmanager
    async def guard(self, service: str) -> AsyncIterator[None]:
        """Run the body as a call to ``service``. Raises ``CircuitOpen`` before the body when
        the circuit is open; the body's own exceptions pass through after being counted."""
        self._used.add(service)
        decided = await self._before(service)
        try:
            yield
        except Exception as error:
            if self.policy(service).counts(error):
                await self._failed(service, decided)
            else:
                await self._succeeded(service, decided)
            raise
        await self._succeeded(service, decided)

    async def call(self, service: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """``await call()`` through ``service``'s circuit (see ``guard``)."""
        async with self.guard(service):
            return await call()

    async def state(self, service: str) -> BreakerState:
        """The circuit's state now (shared, or this process's while Redis is down)."""

        async def read(client: Redis) -> Any:
            return await self._state_script(keys=[self.key(service)])

        answer = await self._link.run(read)
        if answer is UNAVAILABLE:
            return self._circuit(service).state(time.monotonic())
        return BreakerState(_text(answer[0]))

    # --- the two halves of a call -----------------------------------------------------------

    async def _before(self, service: str) -> _Pass:
        async def ask(client: Redis) -> Any:
            return await self._before_script(
                keys=[self.key(service)], args=[int(PROBE_SECONDS * 1000), STATE_TTL_SECONDS]
            )

        answer = await self._link.run(ask)
        if answer is UNAVAILABLE:
            return self._before_local(service)
        verdict, number = _text(answer[0]), int(answer[1])
        if verdict == "open":
            raise CircuitOpen(service, number / 1000)
        return _Pass(shared=True, probe=verdict == "probe", failures=number)

    async def _failed(self, service: str, decided: _Pass) -> None:
        policy = self.policy(service)
        if decided.shared:

            async def record(client: Redis) -> Any:
                return await self._failed_script(
                    keys=[self.key(service)],
                    args=[
                        policy.failure_threshold,
                        int(policy.open_seconds * 1000),
                        STATE_TTL_SECONDS,
                        "1" if decided.probe else "0",
                    ],
                )

            if await self._link.run(record) is not UNAVAILABLE:
                return
        self._failed_local(service, decided.probe and not decided.shared)

    async def _succeeded(self, service: str, decided: _Pass) -> None:
        if decided.shared:
            if not decided.probe and decided.failures == 0:
                return  # nothing to reset: no round trip
            probe = "1" if decided.probe else "0"

            async def record(client: Redis) -> Any:
                return await self._succeeded_script(keys=[self.key(service)], args=[probe])

            if await self._link.run(record) is not UNAVAILABLE:
                return
        self._succeeded_local(service, decided.probe and not decided.shared)

    # --- this process's state, while Redis is down ------------------------------------------

    def _circuit(self, service: str) -> LocalCircuit:
        circuit = self._local.get(service)
        if circuit is None:
            circuit = self._local[service] = LocalCircuit()
        circuit.expire(time.monotonic())
        return circuit

    def _before_local(self, service: str) -> _Pass:
        now = time.monotonic()
        circuit = self._circuit(service)
        if circuit.opened_until is None:
            return _Pass(shared=False, probe=False, failures=circuit.failures)
        if now < circuit.opened_until:
            raise CircuitOpen(service, circuit.opened_until - now)
        if circuit.probe_until is not None and now < circuit.probe_until:
            raise CircuitOpen(service, circuit.probe_until - now)
        circuit.probe_until = now + PROBE_SECONDS
        circuit.touched = now
        return _Pass(shared=False, probe=True, failures=circuit.failures)

    def _failed_local(self, service: str, probe: bool) -> None:
        now = time.monotonic()
        circuit = self._circuit(service)
        circuit.touched = now
        if circuit.opened_until is not None and now < circuit.opened_until:
            return
        circuit.failures += 1
        if probe or circuit.failures >= self.policy(service).failure_threshold:
            circuit.opened_until = now + self.policy(service).open_seconds
            circuit.failures, circuit.probe_until = 0, None

    def _succeeded_local(self, service: str, probe: bool) -> None:
        circuit = self._circuit(service)
        if probe:
            self._local[service] = LocalCircuit()
        elif circuit.opened_until is None:
            circuit.failures = 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
