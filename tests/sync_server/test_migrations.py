"""The migrations are the schema: they build a database from nothing, come down to nothing,
go up again, and agree with the models the application queries through."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from sync_server.db.migrate import downgrade, ensure_database, upgrade
from sync_server.db.models import Base
from tests.sync_server.conftest import APP_ROLE, PG_HOST, _drop

pytestmark = [pytest.mark.integration]


async def _diff_and_tables(url: str) -> tuple[list[object], set[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
            tables = await connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
            return diff, {row[0] for row in tables}
    finally:
        await engine.dispose()


def test_upgrade_downgrade_upgrade_and_no_drift() -> None:
    name = f"gatehouse_migrations_{secrets.token_hex(4)}"
    url = f"{PG_HOST}/{name}"
    assert asyncio.run(ensure_database(url)) is True
    assert asyncio.run(ensure_database(url)) is False
    try:
        upgrade(url, APP_ROLE)
        diff, tables = asyncio.run(_diff_and_tables(url))
        assert diff == []
        assert set(Base.metadata.tables) <= tables

        downgrade(url, APP_ROLE, "base")
        _, tables = asyncio.run(_diff_and_tables(url))
        assert tables == {"alembic_version"}

        upgrade(url, APP_ROLE)
        diff, _ = asyncio.run(_diff_and_tables(url))
        assert diff == []
    finally:
        asyncio.run(_drop(name))
