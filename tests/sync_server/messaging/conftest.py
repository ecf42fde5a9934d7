"""Fixtures for the messaging tests: the real RabbitMQ (started if it does not answer) and the
relay's database URL (the ``gatehouse_relay`` role of the session's test database)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import pytest

from sync_server.settings import Settings
from tests.sync_server.messaging.rabbit import AMQP_URL, ensure_broker


class Runnable(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


@pytest.fixture
async def amqp_url() -> str:
    await ensure_broker(AMQP_URL)
    return AMQP_URL


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
