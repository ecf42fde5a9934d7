from __future__ import annotations

import base64
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import jwt
import pytest
from click.testing import CliRunner, Result
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from sync_server.cli import main
from sync_server.settings import Settings
from tests.sync_server.conftest import APP_ROLE, PG_HOST, TenantHandle, _drop

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

EVENT = {
    "name": "Autumn Fair",
    "venue": "Park",
    "starts_at": "2027-09-01T10:00:00Z",
    "ends_at": "2027-09-01T18:00:00Z",
}


def _env(settings: Settings, config_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment the CLI would see on a server configured like ``settings``."""
    return {
        "GATEHOUSE_ENV": "test",
        "GATEHOUSE_CONFIG_DIR": str(config_dir),
        "GATEHOUSE_DATABASE_URL": settings.database.url,
        "GATEHOUSE_DATABASE_ADMIN_URL": settings.database.admin_url,
        "GATEHOUSE_DATABASE_APP_ROLE": settings.database.app_role,
        "GATEHOUSE_JWT_SECRET": settings.auth.jwt_secret,
        "GATEHOUSE_MASTER_KEY": base64.urlsafe_b64encode(settings.master_key).decode(),
        **overrides,
    }


async def _invoke(args: list[str], env: dict[str, str]) -> Result:
    # In a worker thread: the commands run their own event loops (asyncio.run).
    def run() -> Result:
        return CliRunner().invoke(main, args, env=env)

    return await anyio.to_thread.run_sync(run)


def _ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def _one_sentence_error(result: Result) -> str:
    """A failure reported as one line on stderr, without a traceback."""
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert lines[0].endswith(".")
    return lines[0]


async def test_migrate_creates_a_database_and_is_idempotent(
    settings: Settings, tmp_path: Path
) -> None:
    name = f"gatehouse_cli_{secrets.token_hex(4)}"
    admin_url = f"{PG_HOST}/{name}"
    app_url = make_url(admin_url).set(username=APP_ROLE).render_as_string(hide_password=False)
    env = _env(
        settings, tmp_path, GATEHOUSE_DATABASE_ADMIN_URL=admin_url, GATEHOUSE_DATABASE_URL=app_url
    )
    try:
        first = _ok(await _invoke(["migrate"], env))
        assert f"Created database {name}." in first
        assert "The schema is at head" in first
        again = _ok(await _invoke(["migrate"], env))
        assert f"Database {name} exists." in again
        assert "The schema is at head" in again
        # The application role can use the schema, and row-level security hides every tenant.
        engine = create_async_engine(app_url)
        try:
            async with engine.connect() as connection:
                assert await connection.scalar(text("SELECT count(*) FROM tenants")) == 0
        finally:
            await engine.dispose()
    finally:
        await _drop(name)


async def test_tenant_and_token_commands_make_tokens_the_api_accepts(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    make_tenant: Callable[..., Any],
    tmp_path: Path,
) -> None:
    env = _env(settings, tmp_path)
    tenant_id = uuid.UUID(_ok(await _invoke(["tenant", "create", "CLI Venue"], env)).strip())

    manager = _ok(await _invoke(["token", "--tenant", str(tenant_id), "--role", "manager"], env))
    manager_headers = {"Authorization": f"Bearer {manager.strip()}"}
    created = await client.post("/v1/events", json=EVENT, headers=manager_headers)
    assert created.status_code == 201, created.text
    event_id = created.json()["id"]

    service = _ok(
        await _invoke(
            [
                "token",
                *("--tenant", str(tenant_id), "--role", "service"),
                *("--subject", "box-office", "--ttl", "120"),
            ],
            env,
        )
    ).strip()
    claims = jwt.decode(service, settings.auth.jwt_secret, algorithms=["HS256"])
    assert (claims["tenant_id"], claims["role"], claims["sub"]) == (
        str(tenant_id),
        "service",
        "box-office",
    )
    assert claims["exp"] - claims["iat"] == 120
    service_headers = {"Authorization": f"Bearer {service}"}
    # Same tenant: the service sees the manager's event; the role still counts.
    listed = await client.get("/v1/events", headers=service_headers)
    assert [e["id"] for e in listed.json()["items"]] == [event_id]
    rotate = await client.post(f"/v1/events/{event_id}/keys/rotate", headers=service_headers)
    assert rotate.status_code == 403, rotate.text
    other: TenantHandle = await make_tenant("Elsewhere")
    assert (await client.get("/v1/events", headers=other.token())).json()["items"] == []


async def test_token_refuses_scanner_tokens_and_unknown_tenants(
    settings: Settings, tmp_path: Path
) -> None:
    env = _env(settings, tmp_path)
    scanner = await _invoke(["token", "--tenant", str(uuid.uuid4()), "--role", "scanner"], env)
    assert "enrolling a device" in _one_sentence_error(scanner)
    unknown = await _invoke(["token", "--tenant", str(uuid.uuid4()), "--role", "manager"], env)
    assert "no tenant" in _one_sentence_error(unknown)


BAD_URLS = [
    ("postgresql+asyncpg://postgres@127.0.0.1:1/gatehouse", "Cannot use the database"),
    ("postgresql+asyncpg://postgres@127.0.0.1:5432/gatehouse_missing", "does not exist"),
    ("not a url", "is not a database URL like"),
    ("postgresql://postgres@127.0.0.1:5432/gatehouse", "use postgresql+asyncpg://"),
]
URL_USERS = [
    (["expire"], "GATEHOUSE_DATABASE_URL"),
    (["tenant", "create", "Venue"], "GATEHOUSE_DATABASE_ADMIN_URL"),
    (["migrate"], "GATEHOUSE_DATABASE_ADMIN_URL"),
]


@pytest.mark.parametrize(
    ("args", "variable", "url", "says"),
    [
        (args, variable, url, says)
        for args, variable in URL_USERS
        for url, says in BAD_URLS
        # migrate creates a missing database rather than complaining about it
        if not (args == ["migrate"] and "gatehouse_missing" in url)
    ],
)
async def test_a_bad_database_url_gives_one_sentence(
    settings: Settings, tmp_path: Path, args: list[str], variable: str, url: str, says: str
) -> None:
    result = await _invoke(args, _env(settings, tmp_path, **{variable: url}))
    assert says in _one_sentence_error(result)


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("GATEHOUSE_PORT", "eighty", "GATEHOUSE_PORT must be a whole number"),
        ("GATEHOUSE_MASTER_KEY", "c2hvcnQ", "GATEHOUSE_MASTER_KEY must be 32 bytes"),
        ("GATEHOUSE_EXPIRY_GRACE", "-60", "GATEHOUSE_EXPIRY_GRACE must be 0 or more"),
        ("GATEHOUSE_JOBS_PRUNE_EVERY", "hourly", "GATEHOUSE_JOBS_PRUNE_EVERY must be seconds"),
    ],
)
@pytest.mark.parametrize("args", [["serve"], ["migrate"], ["tenant", "create", "V"], ["expire"]])
async def test_bad_settings_give_one_sentence(
    settings: Settings, tmp_path: Path, variable: str, value: str, says: str, args: list[str]
) -> None:
    result = await _invoke(args, _env(settings, tmp_path, **{variable: value}))
    assert says in _one_sentence_error(result)


async def test_expire_says_how_many_tickets_it_expired(settings: Settings, tmp_path: Path) -> None:
    out = _ok(await _invoke(["expire"], _env(settings, tmp_path)))
    assert re.fullmatch(r"Expired \d+ tickets?\.\n", out), out


async def test_expire_by_hand_waits_out_the_grace_period_unless_told_otherwise(
    settings: Settings, tmp_path: Path, client: AsyncTestClient[Litestar], tenant: TenantHandle
) -> None:
    """The worker expires tickets by itself; ``gatehouse-server expire`` stays for running it
    by hand, with the same grace period (``GATEHOUSE_EXPIRY_GRACE``) or ``--grace``."""
    headers = tenant.token()
    event = (await client.post("/v1/events", json=EVENT, headers=headers)).json()
    ticket_type = (
        await client.post(
            f"/v1/events/{event['id']}/ticket-types",
            json={"name": "General", "capacity": 10},
            headers=headers,
        )
    ).json()
    bought = await client.post(
        "/v1/purchases",
        json={
            "ticket_type_id": ticket_type["id"],
            "quantity": 1,
            "holder": {"user_id": "u", "name": "Ada"},
        },
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert bought.status_code == 201, bought.text
    ticket_id = bought.json()["tickets"][0]["ticket"]["id"]
    engine = create_async_engine(settings.database.admin_url)
    try:
        async with engine.begin() as db:  # the event ended two hours ago
            await db.execute(
                text(
                    "UPDATE events SET starts_at = now() - interval '5 hours', "
                    "ends_at = now() - interval '2 hours' WHERE id = :e"
                ),
                {"e": event["id"]},
            )
    finally:
        await engine.dispose()

    async def status() -> str:
        response = await client.get(f"/v1/tickets/{ticket_id}", headers=headers)
        found: str = response.json()["status"]
        return found

    # The API's Redis, so that the command's invalidations reach the cached ticket.
    env = _env(settings, tmp_path, GATEHOUSE_REDIS_KEY_PREFIX=settings.redis.key_prefix)
    _ok(await _invoke(["expire"], {**env, "GATEHOUSE_EXPIRY_GRACE": "10800"}))
    assert await status() == "active"  # within three hours of the end
    out = _ok(await _invoke(["expire", "--grace", "3600"], env))
    assert re.fullmatch(r"Expired [1-9]\d* tickets?\.\n", out), out
    assert await status() == "expired"


async def test_demo_prints_a_working_token_and_codes(
    settings: Settings, tmp_path: Path, client: AsyncTestClient[Litestar]
) -> None:
    out = _ok(await _invoke(["demo"], _env(settings, tmp_path)))
    lines = out.splitlines()
    token = lines[lines.index("Manager token (valid 12 h):") + 1]
    codes = [line.strip() for line in lines if line.strip().startswith("GH2")]
    assert len(codes) == 6
    checked = await client.post(
        "/v1/codes/check", json={"code": codes[0]}, headers={"Authorization": f"Bearer {token}"}
    )
    assert checked.status_code == 200, checked.text
    assert checked.json()["verdict"]["result"] == "admitted"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.slow
async def test_serve_runs_the_app_under_uvicorn(
    settings: Settings, tenant: TenantHandle, tmp_path: Path
) -> None:
    script = Path(sys.executable).parent / "gatehouse-server"
    assert script.exists(), "install the project (pip install -e .) for its console scripts"
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [str(script), "serve", "--port", str(port)],
        env={"PATH": str(script.parent), **_env(settings, tmp_path)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=2) as http:
            deadline = time.monotonic() + 20
            health = None
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    health = await http.get("/health")
                    break
                except httpx.TransportError:
                    await anyio.sleep(0.1)
            assert health is not None, (tmp_path / "serve.log").read_text()
            assert (health.status_code, health.json()) == (200, {"status": "ok"})
            # A real request: token check, a tenant transaction as the application role.
            events = await http.get("/v1/events", headers=tenant.token())
            assert events.status_code == 200, events.text
            refused = await http.get("/v1/events")
            assert refused.status_code == 401
            assert refused.headers["content-type"].startswith("application/problem+json")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


async def test_a_managers_password_link_names_the_public_address_when_one_is_set(
    settings: Settings, tmp_path: Path
) -> None:
    env = _env(settings, tmp_path, GATEHOUSE_PUBLIC_URL="https://gates.example.org/")
    tenant_id = _ok(await _invoke(["tenant", "create", "Linked Venue"], env)).strip()
    email = f"linked-{tenant_id[:8]}@example.org"
    out = _ok(await _invoke(["user", "create", "--tenant", tenant_id, "--email", email], env))
    assert "https://gates.example.org/console/set-password?token=" in out
    told = _ok(
        await _invoke(
            ["user", "link", "--email", email, "--url", "https://office.example.org"], env
        )
    )
    assert "https://office.example.org/console/set-password?token=" in told
