"""The RPC provider's API key never reaches a log line or a loop's stats.

The chain client is pointed at a local HTTP server started here that answers 500 or 429, as a
provider does when it is down or rate-limits; the URL carries a key in its path and another in
its query, as providers hand them out. httpx names that URL in its ``HTTPStatusError``, which
solana-py passes on. Real Postgres and Redis.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from solders.keypair import Keypair
from sqlalchemy import text

from sync_server.background import LoopState
from sync_server.chain.client import ChainKeys
from sync_server.db.engine import Database
from sync_server.db.models import Ticket
from sync_server.domain.chain.minting import reconcile
from sync_server.domain.chain.ownership import ChainOwnership, GuardedOwnership
from sync_server.domain.chain.tracker import ChainTracker, TrackerStats
from sync_server.observability.logs import formatter, logging_config
from sync_server.redis.breakers import Breakers
from sync_server.redis.link import RedisLink
from sync_server.settings import ChainSettings, Settings
from tests.sync_server.chain.onchain_tickets import eventually
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import buy, connect, create_event, create_ticket_type

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@dataclasses.dataclass
class LeakyRpc:
    """A node behind a provider that fails every request with ``status``."""

    url: str
    keys: tuple[str, str]
    status: int = 500
    requests: int = 0


@pytest.fixture
async def leaky_rpc() -> AsyncIterator[LeakyRpc]:
    path_key, query_key = secrets.token_urlsafe(24), secrets.token_hex(16)
    rpc = LeakyRpc(url="", keys=(path_key, query_key))

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        rpc.requests += 1
        reason = {500: "Internal Server Error", 429: "Too Many Requests"}[rpc.status]
        head = f"HTTP/1.1 {rpc.status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n"
        writer.write(f"{head}\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    rpc.url = f"http://127.0.0.1:{port}/v2/{path_key}?api-key={query_key}"
    try:
        yield rpc
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def server_logging(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record the server would log even at DEBUG: the loggers at the levels its logging
    configuration gives them (``logging_config``), captured by ``caplog``."""
    saved: dict[str, int] = {}
    for name, config in logging_config("json", "DEBUG")["loggers"].items():
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.setLevel(config["level"])
    try:
        yield caplog
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _chain(rpc: LeakyRpc, keys: ChainKeys) -> ChainSettings:
    return ChainSettings(
        rpc_url=rpc.url,
        issuer_keypair=keys.issuer.to_json(),
        custody_keypair=keys.custody.to_json(),
        commitment="confirmed",
        poll_seconds=0.05,
        rpc_timeout_seconds=2.0,
    )


def _assert_nowhere(rpc: LeakyRpc, records: list[logging.LogRecord], *texts: str) -> None:
    """Neither key in ``texts``, in the captured records, nor in them as the server renders
    its log (JSON and console, tracebacks included)."""
    rendered = [
        formatter(kind).format(record) for record in records for kind in ("json", "console")
    ]
    everything = "\n".join([*texts, *(record.getMessage() for record in records), *rendered])
    for key in rpc.keys:
        assert key not in everything


@pytest.mark.parametrize("status", [500, 429])
async def test_the_gate_ownership_check_logs_no_api_key(
    settings: Settings, leaky_rpc: LeakyRpc, server_logging: pytest.LogCaptureFixture, status: int
) -> None:
    leaky_rpc.status = status
    keys = ChainKeys(issuer=Keypair(), custody=Keypair())
    redis = RedisLink(settings.redis)
    ownership = ChainOwnership.from_settings(_chain(leaky_rpc, keys), keys)
    guarded = GuardedOwnership(ownership, Breakers(redis, settings.breakers), timeout_seconds=5)
    try:
        result = await guarded.check(
            ticket_id=uuid.uuid4(), nft_mint=str(Keypair().pubkey()), holder_wallet=None
        )
    finally:
        await ownership.close()
        await redis.close()
    assert result.verified is None  # admitted without the chain's word
    assert leaky_rpc.requests >= 1
    assert any("not checked" in r.getMessage() for r in server_logging.records)
    _assert_nowhere(leaky_rpc, server_logging.records)


@pytest.fixture
async def queued_mint(
    settings: Settings, tenant: TenantHandle, client: AsyncTestClient[Litestar]
) -> AsyncIterator[tuple[Database, ChainKeys]]:
    """A ticket whose mint waits for the tracker; closed when the test ends so that no other
    test's tracker picks it up."""
    keys = ChainKeys(issuer=Keypair(), custody=Keypair())
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    bought = await buy(client, tenant, ticket_type["id"])
    assert bought.status_code == 201, bought.text
    ticket_id = uuid.UUID(bought.json()["tickets"][0]["ticket"]["id"])
    database = Database(settings.database)
    try:
        async with database.tenant(tenant.id) as session:
            ticket = await session.get(Ticket, ticket_id, with_for_update=True)
            assert ticket is not None
            assert await reconcile(session, ticket, keys, datetime.now(UTC)) is not None
        yield database, keys
    finally:
        async with connect(settings.database.admin_url) as connection:
            await connection.execute(
                text(
                    "UPDATE pending_transactions SET status = 'failed', error = 'test over' "
                    "WHERE ticket_id = :ticket AND status IN ('queued', 'submitted', 'confirmed')"
                ),
                {"ticket": ticket_id},
            )
            await connection.commit()
        await database.close()


@pytest.mark.parametrize("status", [500, 429])
async def test_the_tracker_logs_and_keeps_no_api_key(
    settings: Settings,
    leaky_rpc: LeakyRpc,
    queued_mint: tuple[Database, ChainKeys],
    server_logging: pytest.LogCaptureFixture,
    status: int,
) -> None:
    leaky_rpc.status = status
    database, keys = queued_mint
    tracker = ChainTracker(
        database, dataclasses.replace(settings, chain=_chain(leaky_rpc, keys)), keys=keys
    )
    task = asyncio.create_task(tracker.run())
    try:
        stats = await eventually(lambda: _backing_off(tracker), "the tracker met the failing node")
    finally:
        tracker.stop()
        await asyncio.wait_for(task, 30)
    assert leaky_rpc.requests >= 1
    assert stats.last_error is not None
    assert str(status) in stats.last_error
    _assert_nowhere(leaky_rpc, server_logging.records, repr(stats))


async def _backing_off(tracker: ChainTracker) -> TrackerStats | None:
    stats = tracker.stats()
    return stats if stats.state is LoopState.BACKING_OFF and stats.last_error else None


def test_a_traceback_of_an_rpc_failure_is_rendered_without_the_key() -> None:
    key = secrets.token_urlsafe(24)
    try:
        try:
            raise OSError(f"Server error '500' for url 'https://rpc.example/v2/{key}'")
        except OSError as cause:
            raise RuntimeError("getLatestBlockhash failed") from cause
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "tracker", (), None)
        record.exc_info = sys.exc_info()
    for kind in ("json", "console"):
        rendered = formatter(kind).format(record)
        assert "RuntimeError: getLatestBlockhash failed" in rendered
        assert "https://rpc.example/v2/***" in rendered
        assert key not in rendered
