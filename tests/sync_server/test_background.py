"""The background-loop base: how errors are named, and how a loop's state follows its attempts
(outages waited out with backoff, ``stop()`` ending ``run``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from shared.backoff import Backoff
from sync_server.background import BackgroundLoop, LoopState, LoopStats, describe

pytestmark = pytest.mark.anyio


def test_describe_names_the_type_and_the_first_line() -> None:
    assert describe(ValueError("bad\nsecond line")) == "ValueError: bad"
    assert describe(TimeoutError()) == "TimeoutError"


def test_describe_masks_credentials_in_urls() -> None:
    error = ConnectionError(
        "cannot reach amqp://gatehouse:s3cret@broker:5672/ nor "
        "https://rpc.example/?api-key=abc123&cluster=main nor redis://:hunter2@cache:6379/0"
    )
    described = describe(error)
    assert "s3cret" not in described
    assert "abc123" not in described
    assert "hunter2" not in described
    assert "amqp://gatehouse:***@broker:5672/" in described
    assert "?api-key=***&cluster=main" in described


def test_describe_masks_an_api_key_in_a_url_path_and_a_lone_token() -> None:
    error = OSError(
        "for url 'https://solana-mainnet.example.com/v2/Zq8pXv3LmN0rT5yW2aB7cD9e' and "
        "https://tok3nSecretValue99@node.example.pro/"
    )
    described = describe(error)
    assert "Zq8pXv3LmN0rT5yW2aB7cD9e" not in described
    assert "tok3nSecretValue99" not in described
    assert "https://solana-mainnet.example.com/v2/***'" in described
    assert "https://***@node.example.pro/" in described


@dataclass(frozen=True, slots=True)
class _Stats(LoopStats):
    attempts: int = 0
    failures: int = 0
    outages: int = 0


class _Flaky(BackgroundLoop[_Stats]):
    """Fails its first ``failures`` attempts, then works until stopped."""

    def __init__(self, failures: int) -> None:
        super().__init__("flaky", _Stats(), Backoff(0.001, 0.002))
        self._left = failures
        self.states: list[LoopState] = []

    async def _attempt(self) -> None:
        self._set(attempts=self._stats.attempts + 1)
        if self._left:
            self._left -= 1
            raise ConnectionError("down at postgresql://app:pw@db/x")
        self._mark_up()
        self.states.append(self._stats.state)
        await self._stopping.wait()

    async def _failed(self, error: Exception) -> None:
        first = self._mark_down(error)
        self.states.append(self._stats.state)
        self._set(failures=self._stats.failures + 1, outages=self._stats.outages + first)


async def test_a_loop_waits_out_failures_then_stops() -> None:
    loop = _Flaky(failures=3)
    assert loop.stats().state is LoopState.STARTING
    task = asyncio.create_task(loop.run())
    for _ in range(200):
        if loop.stats().state is LoopState.RUNNING:
            break
        await asyncio.sleep(0.005)
    stats = loop.stats()
    assert (stats.attempts, stats.failures, stats.outages) == (4, 3, 1)  # one outage
    assert stats.last_error == "ConnectionError: down at postgresql://app:***@db/x"
    assert loop.states == [LoopState.BACKING_OFF] * 3 + [LoopState.RUNNING]
    loop.stop()
    await asyncio.wait_for(task, 1)
    assert loop.stats().state is LoopState.STOPPED
