"""Fixtures for server tests against the real Postgres on localhost.

One database per test session, with a random name, built by running the migrations (never
``create_all``) and dropped at the end. The application connects as the non-superuser role the
migrations create, so row-level security is really enforced.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from sync_server.app import create_app
from sync_server.db.migrate import ensure_database, upgrade
from sync_server.domain.tenants.services import create_tenant
from sync_server.http.auth import Role, mint_token
from sync_server.settings import (
    AuthSettings,
    DatabaseSettings,
    ObservabilitySettings,
    RateLimitSettings,
    RedisSettings,
    Settings,
)

#: The operators' token the test servers' ``/metrics`` asks for.
METRICS_TOKEN = secrets.token_urlsafe(32)
METRICS_HEADERS = {"Authorization": f"Bearer {METRICS_TOKEN}"}

PG_HOST = os.environ.get("GATEHOUSE_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")
APP_ROLE = "gatehouse_app"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


async def _drop(name: str) -> None:
    engine = create_async_engine(f"{PG_HOST}/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def database_settings() -> Iterator[DatabaseSettings]:
    name = f"gatehouse_test_{secrets.token_hex(4)}"
    admin_url = f"{PG_HOST}/{name}"
    app_url = str(make_url(admin_url).set(username=APP_ROLE).render_as_string(hide_password=False))
    asyncio.run(ensure_database(admin_url))
    try:
        upgrade(admin_url, APP_ROLE)
        yield DatabaseSettings(url=app_url, admin_url=admin_url, app_role=APP_ROLE, pool_size=20)
    finally:
        asyncio.run(_drop(name))


@pytest.fixture(scope="session")
def redis_settings() -> RedisSettings:
    """The local Redis, with this run's own key prefix: runs in parallel never share a rate
    count, a cached ticket or a circuit. Every key has a TTL, so nothing needs cleaning up."""
    return RedisSettings(key_prefix=f"gatehouse-test-{secrets.token_hex(4)}:")


@pytest.fixture(scope="session")
def settings(database_settings: DatabaseSettings, redis_settings: RedisSettings) -> Settings:
    return Settings(
        database=database_settings,
        redis=redis_settings,
        auth=AuthSettings(jwt_secret=secrets.token_urlsafe(32)),
        master_key=secrets.token_bytes(32),
        environment="test",
        observability=ObservabilitySettings(metrics_token=METRICS_TOKEN),
        # The suite enrolls many devices from one client address within a minute; the limit on
        # requests without a token is tested on its own (test_cost_control.py).
        rate_limits=RateLimitSettings(anonymous=0),
    )


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


@dataclass(frozen=True)
class TenantHandle:
    id: uuid.UUID
    token: Callable[..., dict[str, str]]

    def at(self, now: datetime) -> TenantHandle:
        """The tenant with its tokens minted at ``now``: for an app on a ``ManualClock``, which
        checks a token's expiry by its own time."""
        return TenantHandle(self.id, functools.partial(self.token, now=now))


async def new_tenant(settings: Settings, name: str = "Venue") -> TenantHandle:
    """A new tenant, with ``token(role)`` giving Authorization headers."""
    tenant_id = await create_tenant(settings.database.admin_url, name)

    def token(role: Role = Role.MANAGER, **claims: object) -> dict[str, str]:
        minted = mint_token(
            settings.auth.jwt_secret,
            tenant_id=tenant_id,
            role=role,
            subject=str(claims.pop("subject", f"{role}-user")),
            ttl_seconds=int(claims.pop("ttl_seconds", 600)),  # type: ignore[call-overload]
            **claims,  # type: ignore[arg-type]
        )
        return {"Authorization": f"Bearer {minted}"}

    return TenantHandle(tenant_id, token)


@pytest.fixture
async def make_tenant(settings: Settings) -> Callable[..., object]:
    """Create tenants (``new_tenant``)."""

    async def make(name: str = "Venue") -> TenantHandle:
        return await new_tenant(settings, name)

    return make


@pytest.fixture
async def tenant(make_tenant: Callable[..., object]) -> TenantHandle:
    return await make_tenant("Main venue")  # type: ignore[misc, no-any-return]
