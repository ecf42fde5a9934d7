"""Operations endpoints and request observation against the real Postgres, Redis and RabbitMQ:
``/ready`` per dependency (a dependency made unreachable by pointing its setting at a closed
port, never by stopping the shared service), ``/metrics``, request ids and JSON log lines."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from benchmarks.server_harness import Server, free_port, gatehouse_serve_command, request
from sync_server.app import create_app, services
from sync_server.observability.logs import formatter
from sync_server.redis.breakers import BreakerPolicy, Breakers
from sync_server.redis.link import RedisLink
from sync_server.settings import Settings
from tests.sync_server.conftest import METRICS_HEADERS, METRICS_TOKEN, TenantHandle
from tests.sync_server.helpers import (
    assert_problem,
    buy,
    create_event,
    create_ticket_type,
    enrolled_device,
    sample_value,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every log record of the test, rendered by the production JSON formatter, one a line."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter("json"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


# --- /health and /ready ------------------------------------------------------------------------


async def test_health_needs_no_dependency(settings: Settings, closed_port: int) -> None:
    nowhere = replace(
        settings.database, url=f"postgresql+asyncpg://gatehouse_app@127.0.0.1:{closed_port}/x"
    )
    async with serving(replace(settings, database=nowhere)) as client:
        answer = await client.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


async def test_ready_reports_each_dependency(client: AsyncTestClient[Litestar]) -> None:
    # The services are shared: a fault test elsewhere may be restarting one right now, so give
    # them a while to be all up (each answer is cached for 2 s).
    for _ in range(40):
        answer = await client.get("/ready")
        if answer.json()["status"] == "ready":
            break
        await asyncio.sleep(0.5)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["status"] == "ready", report
    assert set(report["checks"]) == {"postgres", "redis", "rabbitmq"}
    for name, check in report["checks"].items():
        assert check["status"] == "up", (name, check)
        assert check["required"] is (name == "postgres")
        assert 0 <= check["latency_ms"] < 2000
        assert "error" not in check or check["error"] is None


async def test_without_postgres_the_instance_is_not_ready(
    settings: Settings, closed_port: int
) -> None:
    nowhere = replace(
        settings.database, url=f"postgresql+asyncpg://gatehouse_app@127.0.0.1:{closed_port}/x"
    )
    async with serving(replace(settings, database=nowhere)) as client:
        answer = await client.get("/ready")
    assert answer.status_code == 503, answer.text
    report = answer.json()
    assert report["status"] == "not_ready"
    postgres = report["checks"]["postgres"]
    assert postgres == {**postgres, "status": "down", "required": True}
    assert postgres["error"] == "connection refused"
    assert str(closed_port) not in answer.text  # no addresses for whoever asks
    assert {report["checks"][name]["required"] for name in ("redis", "rabbitmq")} == {False}


async def test_without_redis_and_rabbitmq_the_instance_is_degraded_but_ready(
    settings: Settings, closed_port: int
) -> None:
    degraded = replace(
        settings,
        redis=replace(settings.redis, url=f"redis://127.0.0.1:{closed_port}/0"),
        amqp=replace(settings.amqp, url=f"amqp://guest:guest@127.0.0.1:{closed_port}/"),
    )
    async with serving(degraded) as client:
        answer = await client.get("/ready")
        metrics = (await client.get("/metrics", headers=METRICS_HEADERS)).content
    # Check-in works without them, so a load balancer should keep sending traffic.
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["status"] == "degraded"
    assert report["checks"]["postgres"]["status"] == "up"
    for name in ("redis", "rabbitmq"):
        check = report["checks"][name]
        assert check["status"] == "down", (name, check)
        assert check["required"] is False
    # Redis is asked through the server's shared link, which keeps the reason to its own log.
    assert report["checks"]["redis"]["error"] == "did not answer"
    assert report["checks"]["rabbitmq"]["error"] == "connection refused"
    # The same verdicts, for alerting.
    assert sample_value(metrics, "gatehouse_dependency_up", dependency="postgres") == 1
    assert sample_value(metrics, "gatehouse_dependency_up", dependency="redis") == 0
    assert sample_value(metrics, "gatehouse_dependency_up", dependency="rabbitmq") == 0


# --- /metrics ----------------------------------------------------------------------------------


async def test_metrics_count_requests_and_verdicts(
    client: AsyncTestClient[Litestar], tenant: TenantHandle
) -> None:
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    purchase = await buy(client, tenant, ticket_type["id"])
    assert purchase.status_code == 201, purchase.text
    code = purchase.json()["tickets"][0]["code"]
    device = await enrolled_device(client, tenant, event["id"])

    def counts(body: bytes) -> tuple[float, float, float]:
        requests = sample_value(
            body,
            "gatehouse_http_request_duration_seconds_count",
            method="POST",
            route="/v1/validate",
            status="200",
        )
        admitted = sample_value(
            body, "gatehouse_verdicts_total", source="online", result="admitted", reason="none"
        )
        refused = sample_value(
            body,
            "gatehouse_verdicts_total",
            source="online",
            result="rejected",
            reason="already_checked_in",
        )
        return requests or 0.0, admitted or 0.0, refused or 0.0

    before = counts((await client.get("/metrics", headers=METRICS_HEADERS)).content)
    assert (
        await client.post("/v1/validate", json={"code": code}, headers=device.headers)
    ).is_success
    again = await client.post("/v1/validate", json={"code": code}, headers=device.headers)
    assert again.status_code == 409
    scrape = await client.get("/metrics", headers=METRICS_HEADERS)
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    assert counts(scrape.content) == (before[0] + 1, before[1] + 1, before[2] + 1)
    # Route templates, never raw paths with ids in them.
    assert b'route="/v1/events/{event_id}/ticket-types"' in scrape.content
    assert event["id"].encode() not in scrape.content
    # The purchase queued a ticket event; whether or not a relay has sent it yet, the backlog
    # is reported (read across tenants through the definer function).
    assert sample_value(scrape.content, "gatehouse_outbox_unsent") is not None
    lag = sample_value(scrape.content, "gatehouse_outbox_lag_seconds")
    assert lag is not None
    assert lag >= 0


async def test_metrics_show_circuit_breaker_state(app: Litestar, settings: Settings) -> None:
    policy = BreakerPolicy(failure_threshold=1, open_seconds=30)
    # Another process's breakers (own Redis link, same Redis): the state is shared.
    elsewhere = RedisLink(settings.redis)
    other_process = Breakers(elsewhere, settings.breakers)
    other_process.configure("test_chain_rpc", policy)

    async def failing() -> None:
        raise ConnectionError("node unreachable")

    try:
        async with AsyncTestClient(app=app) as client:
            services(app).breakers.configure("test_chain_rpc", policy)
            closed = sample_value(
                (await client.get("/metrics", headers=METRICS_HEADERS)).content,
                "gatehouse_circuit_breaker_state",
                service="test_chain_rpc",
            )
            with pytest.raises(ConnectionError):
                await other_process.call("test_chain_rpc", failing)
            opened = sample_value(
                (await client.get("/metrics", headers=METRICS_HEADERS)).content,
                "gatehouse_circuit_breaker_state",
                service="test_chain_rpc",
            )
    finally:
        await elsewhere.close()
    assert (closed, opened) == (0, 2)


# --- request ids and logs ----------------------------------------------------------------------


async def test_a_request_id_from_the_load_balancer_comes_back_and_is_in_every_log_line(
    settings: Settings, closed_port: int, tenant: TenantHandle, json_log: io.StringIO
) -> None:
    # With the database away the request logs a warning of its own on the way to its 503.
    nowhere = replace(
        settings.database, url=f"postgresql+asyncpg://gatehouse_app@127.0.0.1:{closed_port}/x"
    )
    headers = {**tenant.token(), "X-Request-ID": "lb-7f3a9c"}
    async with serving(replace(settings, database=nowhere)) as client:
        json_log.truncate(0)
        json_log.seek(0)
        answer = await client.get("/v1/events", headers=headers)
    assert_problem(answer, 503, "dependency_unavailable")
    assert answer.headers["x-request-id"] == "lb-7f3a9c"
    assert answer.json()["request_id"] == "lb-7f3a9c"

    lines = _lines(json_log)
    warning = next(line for line in lines if line["logger"] == "sync_server.http.problems")
    assert warning["request_id"] == "lb-7f3a9c"
    assert warning["level"] == "warning"
    assert warning["tenant_id"] == str(tenant.id)
    access = next(line for line in lines if line["logger"] == "gatehouse.access")
    assert access == {
        **access,
        "message": "request",
        "request_id": "lb-7f3a9c",
        "method": "GET",
        "route": "/v1/events",
        "status": 503,
        "tenant_id": str(tenant.id),
        "level": "info",
    }
    assert access["duration_ms"] >= 0
    assert access["time"].endswith("Z")
    token = headers["Authorization"].removeprefix("Bearer ")
    assert token not in json_log.getvalue()


async def test_an_unusable_request_id_is_replaced_and_errors_outside_routes_get_one(
    client: AsyncTestClient[Litestar], json_log: io.StringIO
) -> None:
    forged = await client.get("/health", headers={"X-Request-ID": 'x" injected=1'})
    made = forged.headers["x-request-id"]
    assert made != 'x" injected=1'
    assert len(made) == 36  # a UUID of our own

    # No token: refused by the auth middleware, answered by the app's exception handler.
    refused = await client.get("/v1/events")
    assert_problem(refused, 401, "missing_token")
    assert refused.json()["request_id"] == refused.headers["x-request-id"]

    # No route at all: refused before any middleware runs.
    lost = await client.get("/no/such/place/4711")
    assert_problem(lost, 404, "not_found")
    assert lost.json()["request_id"] == lost.headers["x-request-id"]

    access = [line for line in _lines(json_log) if line["logger"] == "gatehouse.access"]
    by_id = {line["request_id"]: line for line in access}
    assert by_id[refused.headers["x-request-id"]]["status"] == 401
    assert by_id[refused.headers["x-request-id"]]["route"] == "/v1/events"
    assert by_id[lost.headers["x-request-id"]]["route"] == "<unmatched>"
    assert "4711" not in json.dumps(access)  # the raw path is not ours to log


# --- the real command: several uvicorn workers -------------------------------------------------


@pytest.mark.slow
def test_serve_with_two_workers_sums_metrics_and_logs_json(settings: Settings) -> None:
    """``gatehouse-server serve --workers 2``: whichever worker answers ``/metrics`` reports the
    requests of both (multiprocess mode), both workers log JSON lines with request ids, and
    SIGTERM stops it cleanly and removes the metrics directory it made."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEHOUSE_", "PROMETHEUS"))}
    env.update(
        GATEHOUSE_ENV="test",
        GATEHOUSE_DATABASE_URL=settings.database.url,
        GATEHOUSE_DATABASE_ADMIN_URL=settings.database.admin_url,
        GATEHOUSE_DATABASE_POOL_SIZE="2",
        GATEHOUSE_JWT_SECRET=settings.auth.jwt_secret,
        GATEHOUSE_MASTER_KEY=base64.urlsafe_b64encode(settings.master_key).decode(),
        GATEHOUSE_LOG_FORMAT="json",
        GATEHOUSE_METRICS_TOKEN=METRICS_TOKEN,
    )
    metrics_dirs = set(Path(tempfile.gettempdir()).glob("gatehouse-metrics-*"))
    port = free_port()
    with Server(gatehouse_serve_command(port, workers=2), port, env) as server:
        # Other servers on this machine may come and go meanwhile: look only at the new ones.
        made = set(Path(tempfile.gettempdir()).glob("gatehouse-metrics-*")) - metrics_dirs
        assert made
        ids = [f"probe-{n}" for n in range(12)]
        for request_id in ids:
            status, _ = request(port, "GET", "/health", headers={"X-Request-ID": request_id})
            assert status == 200
        # New connections land on either worker; each must report all twelve.
        for _ in range(6):
            status, body = request(port, "GET", "/metrics", headers=METRICS_HEADERS)
            assert status == 200
            count = sample_value(
                body,
                "gatehouse_http_request_duration_seconds_count",
                method="GET",
                route="/health",
                status="200",
            )
            assert count is not None
            assert count >= len(ids)  # the harness's own /health polls come on top
        assert sample_value(body, "gatehouse_dependency_up", dependency="postgres") == 1
        server.stop()
        log = server.log_tail(lines=400).splitlines()
    lines = [json.loads(line) for line in log if line.startswith("{")]
    assert lines, log
    access = {line["request_id"]: line for line in lines if line["logger"] == "gatehouse.access"}
    assert set(ids) <= set(access)
    assert {line["message"] for line in lines} >= {"Application startup complete.", "request"}
    # Both workers logged through our formatter (each says it started, in JSON).
    started = [line for line in lines if line["message"].startswith("Started server process")]
    assert len(started) == 2
    assert not [line for line in log if line.strip() and not line.startswith(("{", "---"))]
    assert not [folder for folder in made if folder.exists()]


@pytest.mark.slow
async def test_worker_serves_its_metrics_and_logs_json(
    settings: Settings, closed_port: int, tmp_path: Path
) -> None:
    """``gatehouse-server worker`` with GATEHOUSE_WORKER_METRICS_PORT: its relay's counters are
    scraped from the worker itself. RabbitMQ is pointed at a closed port, so the relay's
    connection errors are what it counts (and no shared outbox row is published)."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "GATEHOUSE_ENV": "test",
        "GATEHOUSE_CONFIG_DIR": str(tmp_path),
        "GATEHOUSE_DATABASE_URL": settings.database.url,
        "GATEHOUSE_DATABASE_ADMIN_URL": settings.database.admin_url,
        "GATEHOUSE_JWT_SECRET": settings.auth.jwt_secret,
        "GATEHOUSE_MASTER_KEY": base64.urlsafe_b64encode(settings.master_key).decode(),
        "GATEHOUSE_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{closed_port}/",
        "GATEHOUSE_LOG_FORMAT": "json",
        "GATEHOUSE_WORKER_METRICS_PORT": str(port),
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "gatehouse-server"),
        "worker",
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        errors = None
        for _ in range(100):
            await asyncio.sleep(0.1)
            try:
                status, body = await asyncio.to_thread(request, port, "GET", "/metrics")
            except OSError:
                continue
            assert status == 200
            errors = sample_value(body, "gatehouse_relay_errors_total", stage="connect")
            if errors:
                break
        assert errors is not None
        assert errors >= 1
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stderr is not None
    log = (await process.stderr.read()).decode().splitlines()
    assert process.returncode == 0, log
    assert log
    assert all(line.startswith("{") for line in log if line.strip()), log
