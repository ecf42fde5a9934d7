"""Apply the Alembic revisions, creating the database first when it does not exist; tell
whether a database's schema is behind the models this server runs with."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

import sync_server
from sync_server.db.models import Base

#: What the server says, at start-up and on /ready, of a database it cannot work with.
MIGRATE_FIRST = (
    "The database schema is behind this version of the server: "
    "run `gatehouse-server migrate` (with GATEHOUSE_DATABASE_ADMIN_URL), then start it again."
)

# Every column of every ordinary table in the current schema. The catalog is readable by any
# role; alembic_version is not readable by the application's role, so the models' tables and
# columns stand in for the revision.
_COLUMNS = text(
    """
    SELECT c.relname, a.attname
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
    WHERE c.relnamespace = current_schema()::regnamespace
      AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
    """
)


def migrations_dir() -> Path:
    """Where the revisions are: inside the installed package, or beside it in a checkout."""
    packaged = Path(sync_server.__file__).resolve().parent / "_migrations"
    if packaged.is_dir():
        return packaged
    return Path(sync_server.__file__).resolve().parent.parent / "migrations"


def alembic_config(admin_url: str, app_role: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", admin_url.replace("%", "%%"))
    config.attributes["app_role"] = app_role
    return config


async def ensure_database(admin_url: str) -> bool:
    """Create the database named in ``admin_url`` if it is missing. True when created."""
    url = make_url(admin_url)
    name = url.database
    if not name:
        raise ValueError("the admin database URL names no database")
    engine = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            exists = await connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if exists:
                return False
            quoted = name.replace('"', '""')
            await connection.execute(text(f'CREATE DATABASE "{quoted}"'))
            return True
    finally:
        await engine.dispose()


def upgrade(admin_url: str, app_role: str, revision: str = "head") -> None:
    """Bring the schema to ``revision``. Runs its own event loop: call it from sync code."""
    command.upgrade(alembic_config(admin_url, app_role), revision)


def downgrade(admin_url: str, app_role: str, revision: str) -> None:
    command.downgrade(alembic_config(admin_url, app_role), revision)


def migrate(admin_url: str, app_role: str) -> bool:
    """Create the database if needed and upgrade it to the newest revision."""
    created = asyncio.run(ensure_database(admin_url))
    upgrade(admin_url, app_role)
    return created


async def schema_problem(connection: AsyncConnection) -> str | None:
    """``MIGRATE_FIRST`` when a table or column of the models is missing from the database
    (an empty database, or one the newest revisions have not reached), else None."""
    present = {(table, column) for table, column in await connection.execute(_COLUMNS)}
    needed = {
        (table.name, column.name)
        for table in Base.metadata.sorted_tables
        for column in table.columns
    }
    return MIGRATE_FIRST if needed - present else None
