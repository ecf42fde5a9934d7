"""Fixtures for the messaging tests: the real RabbitMQ (started if it does not answer) and the
relay's database URL (the ``gatehouse_relay`` role of the session's test database)."""

from __future__ import annotations

import asyncio
import fcntl
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

import pytest

from sync_server.settings import Settings
from tests.sync_server.messaging.rabbit import AMQP_URL, ensure_broker


class Runnable(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


# Tests of several sessions (engineers, CI) share one broker on this machine. A test that stops
# it holds this lock exclusively; every other test that needs it holds it shared, so an outage
# of one session never lands in the middle of another session's test.
BROKER_LOCK = Path(tempfile.gettempdir()) / "gatehouse-test-rabbitmq.lock"


@asynccontextmanager
async def _broker_lock(mode: int) -> AsyncIterator[None]:
    with BROKER_LOCK.open("a") as handle:
        await asyncio.to_thread(fcntl.flock, handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture
async def amqp_url() -> AsyncIterator[str]:
    """The broker, running, and not stopped by another test session meanwhile."""
    async with _broker_lock(fcntl.LOCK_SH):
        await ensure_broker(AMQP_URL)
        yield AMQP_URL


@pytest.fixture
async def broker_to_stop() -> AsyncIterator[str]:
    """The broker, for a test that stops it: no other session's test uses it meanwhile."""
    async with _broker_lock(fcntl.LOCK_EX):
        await ensure_broker(AMQP_URL)
        yield AMQP_URL


@pytest.fixture
def relay_url(settings: Settings) -> str:
    return settings.database.relay_connection_url()


@asynccontextmanager
async def running(*parts: Runnable, timeout: float = 20.0) -> AsyncIterator[None]:
    """``parts`` running in the background for the body; then stopped (gracefully, as SIGTERM
    would) and awaited, so their errors fail the test."""
    tasks = [asyncio.create_task(part.run()) for part in parts]
    try:
        yield
    finally:
        for part in parts:
            part.stop()
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        assert not pending, "did not stop in time"
        for task in done:
            task.result()
