"""Tokens from a gateway's key set (JWKS), and what callers get while the database is away."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from sync_server.app import create_app
from sync_server.http.auth import Role, mint_token
from sync_server.settings import AuthSettings, DatabaseSettings, Settings
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import assert_problem

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
def gateway_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def jwks_url(gateway_key: Ed25519PrivateKey) -> Iterator[str]:
    """A real HTTP endpoint on 127.0.0.1 serving the gateway's public key set."""
    jwk: dict[str, Any] = json.loads(OKPAlgorithm.to_jwk(gateway_key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "gw-1", "use": "sig", "alg": "EdDSA"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()


async def test_tokens_signed_by_a_gateway_key_set_are_accepted(
    settings: Settings, jwks_url: str, gateway_key: Ed25519PrivateKey, tenant: TenantHandle
) -> None:
    gateway = Settings(
        database=settings.database,
        auth=AuthSettings(
            jwt_secret=settings.auth.jwt_secret, jwks_url=jwks_url, issuer="gw", audience="gh"
        ),
        master_key=settings.master_key,
    )
    claims = {
        "sub": "svc-shop",
        "tenant_id": str(tenant.id),
        "role": "service",
        "iss": "gw",
        "aud": "gh",
        "exp": datetime.now(UTC) + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
    }
    signed = jwt.encode(claims, gateway_key, algorithm="EdDSA", headers={"kid": "gw-1"})
    hs256 = mint_token(
        settings.auth.jwt_secret,
        tenant_id=tenant.id,
        role=Role.SERVICE,
        subject="x",
        ttl_seconds=60,
    )
    other_issuer = jwt.encode(
        {**claims, "iss": "someone-else"}, gateway_key, algorithm="EdDSA", headers={"kid": "gw-1"}
    )
    async with AsyncTestClient(app=create_app(gateway)) as client:
        ok = await client.get("/v1/events", headers={"Authorization": f"Bearer {signed}"})
        assert ok.status_code == 200, ok.text
        for refused in (hs256, other_issuer):
            response = await client.get(
                "/v1/events", headers={"Authorization": f"Bearer {refused}"}
            )
            assert_problem(response, 401, "invalid_token")


async def test_a_database_outage_is_a_503_with_retry_after(settings: Settings) -> None:
    # A port nothing listens on: the pool cannot connect.
    down = Settings(
        database=DatabaseSettings(
            url="postgresql+asyncpg://gatehouse_app@127.0.0.1:9/gatehouse", pool_size=1
        ),
        auth=settings.auth,
        master_key=settings.master_key,
    )
    token = mint_token(
        settings.auth.jwt_secret,
        tenant_id=uuid.uuid4(),
        role=Role.MANAGER,
        subject="m",
        ttl_seconds=60,
    )
    async with AsyncTestClient(app=create_app(down)) as client:
        response = await client.get("/v1/events", headers={"Authorization": f"Bearer {token}"})
        assert_problem(response, 503, "dependency_unavailable")
        assert response.headers["retry-after"] == "5"
        assert (await client.get("/health")).status_code == 200


async def test_options_needs_a_token_like_every_other_method(
    client: AsyncTestClient[Any], tenant: TenantHandle
) -> None:
    """Found by the fuzz test: OPTIONS skipped authentication, and a controller's role guard on
    its OPTIONS route then asked for a caller there was none of (500)."""
    for path in ("/v1/events", "/v1/tickets", "/v1/sync/changes", "/v1/validate"):
        assert_problem(await client.options(path), 401, "missing_token")
    for role in (Role.MANAGER, Role.SERVICE):
        allowed = await client.options("/v1/events", headers=tenant.token(role))
        assert allowed.status_code == 204, allowed.text


async def test_pooled_connections_the_database_closed_are_replaced_unseen(
    client: AsyncTestClient[Any], settings: Settings, tenant: TenantHandle
) -> None:
    """A Postgres restart (here: every connection of the app's role ended by an administrator)
    leaves the pool holding dead connections; the next requests get new ones, not an error."""
    for _ in range(3):
        assert (await client.get("/v1/events", headers=tenant.token())).status_code == 200
    admin = create_async_engine(settings.database.admin_url)
    try:
        async with admin.connect() as connection:
            ended = await connection.scalar(
                text(
                    "WITH app AS MATERIALIZED (SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND usename = :role) "
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM app"
                ),
                {"role": settings.database.app_role},
            )
    finally:
        await admin.dispose()
    assert ended
    for _ in range(3):
        assert (await client.get("/v1/events", headers=tenant.token())).status_code == 200
