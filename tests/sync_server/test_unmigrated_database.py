"""A server pointed at a database nobody migrated: ``serve`` refuses to start with the sentence
that says what to do, ``/ready`` is 503 with it, and a request is a 503 problem, never a 500."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url

from sync_server.app import create_app
from sync_server.db.migrate import MIGRATE_FIRST, ensure_database
from sync_server.http.auth import Role, mint_token
from sync_server.settings import Settings
from tests.sync_server.conftest import APP_ROLE, PG_HOST, _drop
from tests.sync_server.helpers import assert_problem
from tests.sync_server.test_server_cli import _env, _invoke, _one_sentence_error

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture(scope="module")
def empty_database() -> Iterator[tuple[str, str]]:
    """A fresh database, created as conftest creates one but without running the migrations:
    (admin URL, application URL)."""
    name = f"gatehouse_unmigrated_{secrets.token_hex(4)}"
    admin_url = f"{PG_HOST}/{name}"
    app_url = make_url(admin_url).set(username=APP_ROLE).render_as_string(hide_password=False)
    asyncio.run(ensure_database(admin_url))
    try:
        yield admin_url, app_url
    finally:
        asyncio.run(_drop(name))


@pytest.fixture
def unmigrated(settings: Settings, empty_database: tuple[str, str]) -> Settings:
    admin_url, app_url = empty_database
    database = dataclasses.replace(settings.database, url=app_url, admin_url=admin_url)
    return dataclasses.replace(settings, database=database)


@pytest.fixture
async def unmigrated_client(unmigrated: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(unmigrated)) as client:
        yield client


async def test_serve_refuses_an_unmigrated_database(unmigrated: Settings, tmp_path: Path) -> None:
    env = _env(unmigrated, tmp_path)
    # An address no interface has: were the check missing, uvicorn would fail to bind and stop
    # rather than serve on.
    error = _one_sentence_error(await _invoke(["serve", "--host", "192.0.2.1"], env))
    assert error == f"Error: {MIGRATE_FIRST}"
    assert "gatehouse-server migrate" in error


async def test_ready_is_503_with_the_sentence(
    unmigrated_client: AsyncTestClient[Litestar],
) -> None:
    answer = await unmigrated_client.get("/ready")
    assert answer.status_code == 503, answer.text
    report = answer.json()
    assert report["status"] == "not_ready"
    assert report["checks"]["postgres"]["error"] == MIGRATE_FIRST


async def test_a_request_is_a_503_problem_not_a_500(
    unmigrated: Settings, unmigrated_client: AsyncTestClient[Litestar]
) -> None:
    token = mint_token(
        unmigrated.auth.jwt_secret,
        tenant_id=uuid.uuid4(),
        role=Role.MANAGER,
        subject="manager",
        ttl_seconds=600,
    )
    answer = await unmigrated_client.get("/v1/events", headers={"Authorization": f"Bearer {token}"})
    assert_problem(answer, 503, "schema_not_migrated")
    assert answer.json()["detail"] == MIGRATE_FIRST
