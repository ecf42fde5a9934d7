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


async def _sql(url: str, *statements: str) -> list[object]:
    """Run each statement outside a transaction; the first column of the last one's rows."""
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            rows: list[object] = []
            for statement in statements:
                result = await connection.execute(text(statement))
                rows = [row[0] for row in result] if result.returns_rows else []
            return rows
    finally:
        await engine.dispose()


def test_an_interrupted_concurrent_index_build_is_built_again_by_the_next_migrate() -> None:
    """Migration 0024 builds its index CONCURRENTLY; an interrupted build leaves an INVALID index
    of its name, which ``IF NOT EXISTS`` alone would take for built (and then drop the old one,
    leaving tickets' scans with no usable index). Here the failed build is a unique index on a
    column with duplicates, as Postgres leaves one when such a build fails."""
    name = f"gatehouse_migrations_{secrets.token_hex(4)}"
    url = f"{PG_HOST}/{name}"
    asyncio.run(ensure_database(url))
    try:
        upgrade(url, APP_ROLE, "0023")
        tenant = "00000000-0000-0000-0000-000000000001"
        row = (
            "INSERT INTO ticket_scans (id, tenant_id, event_id, scanned_by, gate, direction, "
            f"result, scanned_at) VALUES (gen_random_uuid(), '{tenant}', gen_random_uuid(), "
            "'test', 'North', 'entry', 'rejected', now())"
        )
        failed = (
            "CREATE UNIQUE INDEX CONCURRENTLY ix_ticket_scans_tenant_id_ticket_id "
            "ON ticket_scans (tenant_id)"
        )
        with pytest.raises(Exception, match="could not create unique index"):
            asyncio.run(_sql(url, "SET session_replication_role = replica", row, row, failed))
        validity = (
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'ix_ticket_scans_tenant_id_ticket_id'"
        )
        assert asyncio.run(_sql(url, validity)) == [False]

        upgrade(url, APP_ROLE)

        assert asyncio.run(_sql(url, validity)) == [True]
        diff, _ = asyncio.run(_diff_and_tables(url))
        assert diff == []
    finally:
        asyncio.run(_drop(name))
