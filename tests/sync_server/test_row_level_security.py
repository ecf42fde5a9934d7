"""Tenant isolation at the SQL level: connected as the application role, with tenant A set for
the transaction, nothing of tenant B can be read or written, whatever the query."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import Client, bought, connect

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

TENANT_TABLES = (
    "events",
    "ticket_types",
    "tickets",
    "ticket_state_transitions",
    "devices",
    "device_enrollments",
    "ticket_scans",
    "keys",
    "idempotency_keys",
    "outbox",
    "pending_transactions",
    "blockchain_sync",
    "users",
    "console_sessions",
)


@pytest.fixture
async def two_tenants(client: Client, make_tenant: Any) -> tuple[TenantHandle, TenantHandle]:
    a, b = await make_tenant("A"), await make_tenant("B")
    await bought(client, a, quantity=2)
    await bought(client, b, quantity=2)
    return a, b


@pytest.fixture
async def app_connection(settings: Settings) -> AsyncIterator[AsyncConnection]:
    async with connect(settings.database.url) as connection:
        yield connection


async def _as_tenant(connection: AsyncConnection, tenant_id: uuid.UUID) -> None:
    await connection.execute(
        text("SELECT set_config('gatehouse.tenant_id', :t, true)"), {"t": str(tenant_id)}
    )


async def test_the_application_role_cannot_bypass_rls(app_connection: AsyncConnection) -> None:
    row = (
        await app_connection.execute(
            text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        )
    ).one()
    assert row == (False, False)
    owners = await app_connection.execute(
        text(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
            "AND tableowner = current_user"
        )
    )
    assert owners.scalar() == 0
    forced = await app_connection.execute(
        text(
            "SELECT relname FROM pg_class WHERE relname = ANY(:t) "
            "AND relrowsecurity AND relforcerowsecurity"
        ),
        {"t": list(TENANT_TABLES)},
    )
    assert sorted(r[0] for r in forced) == sorted(TENANT_TABLES)


async def test_a_tenant_reads_only_its_own_rows(
    two_tenants: tuple[TenantHandle, TenantHandle], app_connection: AsyncConnection
) -> None:
    a, _ = two_tenants
    async with app_connection.begin():
        await _as_tenant(app_connection, a.id)
        for table in TENANT_TABLES:
            foreign = await app_connection.execute(
                text(f"SELECT count(*) FROM {table} WHERE tenant_id <> :a"), {"a": a.id}
            )
            assert foreign.scalar() == 0, table
        own = (await app_connection.execute(text("SELECT count(*) FROM tickets"))).scalar()
        assert own is not None
        assert own >= 2
        tenants = await app_connection.execute(text("SELECT id FROM tenants"))
        assert [r[0] for r in tenants] == [a.id]


async def test_a_tenant_cannot_change_another_tenants_rows(
    two_tenants: tuple[TenantHandle, TenantHandle], app_connection: AsyncConnection
) -> None:
    a, b = two_tenants
    async with app_connection.begin():
        await _as_tenant(app_connection, a.id)
        for sql in (
            "UPDATE tickets SET holder_name = 'changed' WHERE tenant_id = :b",
            "UPDATE ticket_types SET capacity = 0 WHERE tenant_id = :b",
            "UPDATE keys SET active = false WHERE tenant_id = :b",
            "UPDATE outbox SET sent_at = now() WHERE tenant_id = :b",
        ):
            assert (await app_connection.execute(text(sql), {"b": b.id})).rowcount == 0, sql


async def test_moving_rows_to_another_tenant_is_refused(
    two_tenants: tuple[TenantHandle, TenantHandle], app_connection: AsyncConnection
) -> None:
    a, b = two_tenants
    with pytest.raises(DBAPIError, match="row-level security"):
        async with app_connection.begin():
            await _as_tenant(app_connection, a.id)
            await app_connection.execute(
                text("UPDATE tickets SET tenant_id = :b WHERE tenant_id = :a"),
                {"a": a.id, "b": b.id},
            )


async def test_inserting_for_another_tenant_is_refused(
    two_tenants: tuple[TenantHandle, TenantHandle], app_connection: AsyncConnection
) -> None:
    a, b = two_tenants
    with pytest.raises(DBAPIError, match="row-level security"):
        async with app_connection.begin():
            await _as_tenant(app_connection, a.id)
            await app_connection.execute(
                text(
                    "INSERT INTO events (id, tenant_id, name, venue, starts_at, ends_at) "
                    "VALUES (:id, :b, 'x', 'y', now(), now() + interval '1 hour')"
                ),
                {"id": uuid.uuid4(), "b": b.id},
            )


async def test_history_cannot_be_rewritten_by_the_application(
    two_tenants: tuple[TenantHandle, TenantHandle], app_connection: AsyncConnection
) -> None:
    a, _ = two_tenants
    with pytest.raises(DBAPIError, match="permission denied"):
        async with app_connection.begin():
            await _as_tenant(app_connection, a.id)
            await app_connection.execute(text("DELETE FROM ticket_state_transitions"))


async def test_without_a_tenant_nothing_is_visible_and_it_does_not_leak_across_transactions(
    two_tenants: tuple[TenantHandle, TenantHandle], settings: Settings
) -> None:
    a, _ = two_tenants
    # One pooled connection, reused: the tenant of one transaction must not survive it.
    engine = create_async_engine(settings.database.url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            async with connection.begin():
                await _as_tenant(connection, a.id)
                assert (await connection.execute(text("SELECT count(*) FROM tickets"))).scalar()
            async with connection.begin():
                for table in (*TENANT_TABLES, "tenants"):
                    count = await connection.execute(text(f"SELECT count(*) FROM {table}"))
                    assert count.scalar() == 0, table
    finally:
        await engine.dispose()
