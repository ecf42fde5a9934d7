"""Console accounts against the real Postgres, as the application role: what a look-up before
the tenant is known may see, what the database keeps of passwords, links and sessions, and
when a session or a link stops working."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from sync_server.console.accounts import (
    PASSWORD_LINK_TTL,
    SESSION_TTL,
    EmailTaken,
    create_user,
    link_email,
    new_password_link,
    session_manager,
    set_password,
    sign_in,
    sign_out,
    token_hash,
)
from sync_server.db.engine import Database
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

NOW = datetime(2027, 5, 1, 12, 0, tzinfo=UTC)
PASSWORD = "a long enough password"  # noqa: S105 - a test account's


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database)
    try:
        yield database
    finally:
        await database.close()


def _email(tenant: TenantHandle, who: str = "manager") -> str:
    return f"{who}-{tenant.id.hex[:12]}@example.org"


async def test_the_database_keeps_no_password_link_or_session_in_clear(
    database: Database, tenant: TenantHandle
) -> None:
    email = _email(tenant)
    _, link = await create_user(database, tenant.id, email.upper(), NOW)
    assert await link_email(database, link, NOW) == email  # stored lower-case
    assert await set_password(database, link, PASSWORD, NOW)
    token = await sign_in(database, email, PASSWORD, NOW)
    assert token is not None
    async with database.tenant(tenant.id) as session:
        user = (await session.execute(text("SELECT * FROM users"))).one()
        stored = (await session.execute(text("SELECT token_hash FROM console_sessions"))).one()
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert user.password_link_hash is None  # spent
    assert stored.token_hash == token_hash(token)
    assert token.encode() not in stored.token_hash


async def test_a_look_up_before_the_tenant_sees_only_its_one_row(
    database: Database, make_tenant: object
) -> None:
    a, b = await make_tenant("A"), await make_tenant("B")  # type: ignore[operator]
    await create_user(database, a.id, _email(a), NOW)
    await create_user(database, b.id, _email(b), NOW)
    async with database.untenanted() as session:
        await session.execute(
            text("SELECT set_config('gatehouse.console_email', :e, true)"), {"e": _email(a)}
        )
        seen = (await session.execute(text("SELECT email, tenant_id FROM users"))).all()
        assert [(row.email, row.tenant_id) for row in seen] == [(_email(a), a.id)]
        assert (await session.execute(text("SELECT count(*) FROM console_sessions"))).scalar() == 0
        assert (await session.execute(text("SELECT count(*) FROM events"))).scalar() == 0
        # It may read that row, never change it (the policy is SELECT only).
        changed = await session.execute(
            text("UPDATE users SET password_hash = 'x' WHERE email = :e"), {"e": _email(a)}
        )
        assert changed.rowcount == 0  # type: ignore[attr-defined]


async def test_sign_in_refuses_the_same_way_for_every_wrong_answer(
    database: Database, tenant: TenantHandle
) -> None:
    email, unset = _email(tenant), _email(tenant, "newcomer")
    _, link = await create_user(database, tenant.id, email, NOW)
    await create_user(database, tenant.id, unset, NOW)
    assert await set_password(database, link, PASSWORD, NOW)
    assert await sign_in(database, email, "not the password", NOW) is None
    assert await sign_in(database, "nobody@example.org", PASSWORD, NOW) is None
    assert await sign_in(database, unset, "", NOW) is None  # no password set yet
    assert await sign_in(database, "not an email", PASSWORD, NOW) is None
    assert await sign_in(database, email, PASSWORD, NOW) is not None
    with pytest.raises(EmailTaken):
        await create_user(database, tenant.id, email, NOW)


async def test_sessions_end_at_sign_out_at_expiry_and_when_the_account_is_disabled(
    database: Database, tenant: TenantHandle
) -> None:
    email = _email(tenant)
    user_id, link = await create_user(database, tenant.id, email, NOW)
    assert await set_password(database, link, PASSWORD, NOW)
    first, second = (
        await sign_in(database, email, PASSWORD, NOW),
        await sign_in(database, email, PASSWORD, NOW),
    )
    assert first is not None
    assert second is not None
    manager = await session_manager(database, first, NOW)
    assert manager is not None
    assert (manager.tenant_id, manager.email, manager.tenant_name) == (
        tenant.id,
        email,
        "Main venue",
    )
    await sign_out(database, manager)
    assert await session_manager(database, first, NOW) is None
    assert await session_manager(database, second, NOW) is not None  # another browser's
    assert await session_manager(database, second, NOW + SESSION_TTL) is None
    assert await sign_in(database, email, PASSWORD, NOW + SESSION_TTL) is not None
    async with database.tenant(tenant.id) as session:
        left = await session.execute(text("SELECT expires_at FROM console_sessions"))
        assert [row.expires_at for row in left] == [NOW + 2 * SESSION_TTL]  # the expired one went
    async with database.tenant(tenant.id) as session:
        await session.execute(
            text("UPDATE users SET disabled_at = :now WHERE id = :id"), {"now": NOW, "id": user_id}
        )
    assert await session_manager(database, second, NOW) is None
    assert await sign_in(database, email, PASSWORD, NOW) is None


async def test_a_password_link_expires_and_a_new_one_replaces_it(
    database: Database, tenant: TenantHandle
) -> None:
    email = _email(tenant)
    _, link = await create_user(database, tenant.id, email, NOW)
    later = NOW + PASSWORD_LINK_TTL
    assert await link_email(database, link, later) is None
    assert not await set_password(database, link, PASSWORD, later)
    fresh = await new_password_link(database, email, later)
    assert fresh is not None
    assert await link_email(database, link, NOW) is None  # the old one is gone
    assert await set_password(database, fresh, PASSWORD, later + timedelta(minutes=1))
    assert not await set_password(database, fresh, PASSWORD, later + timedelta(minutes=2))
    assert await new_password_link(database, "nobody@example.org", NOW) is None
