"""Connections and tenant-scoped transactions.

Every unit of work runs in one transaction with the tenant set *for that transaction only*
(``set_config(..., true)``, the same as ``SET LOCAL``), so a pooled connection never carries a
tenant from one request into the next. Row-level security does the rest.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from sync_server.settings import DatabaseSettings

_SET_TENANT = text("SELECT set_config('gatehouse.tenant_id', :tenant, true)")
_ENTER_SQL = "SELECT gatehouse_enter($1, $2, $3)"
_SET_ENROLLMENT = text("SELECT set_config('gatehouse.enrollment_code_hash', :hash, true)")
_WRITTEN_TICKETS = "gatehouse.written_tickets"
_SCANNED_EVENTS = "gatehouse.scanned_events"

#: A pooled connection idle longer than this is pinged before it is handed out (see
#: ``Database._check_alive``); one back sooner is only checked for a closed socket.
PING_AFTER_IDLE_SECONDS: Final = 1.0
_IDLE_SINCE = "gatehouse.idle_since"

#: Told, after a transaction commits, which tickets it changed (the ticket cache listens).
TicketsWritten = Callable[[frozenset[uuid.UUID]], Awaitable[None]]
#: Told, after a transaction commits, which events' scans it wrote or changed (the console's
#: live dashboard listens: ``sync_server.db.scan_signals``). Called without awaiting: it must
#: only take note.
ScansWritten = Callable[[frozenset[uuid.UUID]], None]


def ticket_written(session: AsyncSession, *ticket_ids: uuid.UUID) -> None:
    """Note that the session's transaction changes these tickets. Once it has committed, the
    database's ``on_tickets_written`` hears of them (the ticket cache drops its copies); a
    transaction that rolls back is never heard of. Every write to a ticket row must say so
    (``change_ticket`` does for the lifecycle steps)."""
    session.info.setdefault(_WRITTEN_TICKETS, set()).update(ticket_ids)


def scans_written(session: AsyncSession, *event_ids: uuid.UUID) -> None:
    """Note that the session's transaction writes or changes scans of these events. Once it has
    committed, the database's ``on_scans_written`` hears of them; a transaction that rolls back
    is never heard of. Check-in's writes (``domain.checkin``) say so."""
    session.info.setdefault(_SCANNED_EVENTS, set()).update(event_ids)


class Database:
    """The application's pool (the non-superuser role) and its transactions."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self.engine: AsyncEngine = create_async_engine(
            settings.url,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
        )
        pool_events = self.engine.sync_engine.pool
        event.listen(pool_events, "checkin", _returned)
        event.listen(pool_events, "checkout", self._check_alive)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        #: Hears which tickets each committed transaction changed (see ``ticket_written``).
        self.on_tickets_written: TicketsWritten | None = None
        #: Hears which events' scans each committed transaction wrote (``scans_written``).
        self.on_scans_written: ScansWritten | None = None

    def _check_alive(self, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        """SQLAlchemy's ``pool_pre_ping``, paid only when it can find something: a connection
        whose socket the server closed (a restart, ``pg_terminate_backend``, an idle timeout)
        is refused at once, with no round trip (asyncpg saw the close), and one that sat in
        the pool longer than ``PING_AFTER_IDLE_SECONDS`` is pinged first, as ``pool_pre_ping``
        would (it pings every checkout: three round trips, BEGIN, ``;`` and ROLLBACK, on
        every request). Either way a dead connection is replaced before a request sees it:
        ``InvalidatePoolError``, as the pre-ping raises, makes the pool drop every connection
        opened before it and hand out a new one."""
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None:  # just connected: nothing to check, as with the pre-ping
            return
        if record.driver_connection.is_closed():
            raise exc.InvalidatePoolError("the server closed the connection")
        if time.monotonic() - idle_since <= PING_AFTER_IDLE_SECONDS:
            return
        dialect = self.engine.dialect
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                raise exc.InvalidatePoolError("the connection did not answer a ping") from error
            raise

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction that commits on success; then, and only then, the
        tickets it wrote are announced (awaited, so before a response is sent), and the events
        whose scans it wrote (noted, not awaited: no round trip is added)."""
        async with self._sessions() as session:
            async with session.begin():
                yield session
            written = session.info.pop(_WRITTEN_TICKETS, None)
            if written and self.on_tickets_written is not None:
                await self.on_tickets_written(frozenset(written))
            scanned = session.info.pop(_SCANNED_EVENTS, None)
            if scanned and self.on_scans_written is not None:
                self.on_scans_written(frozenset(scanned))

    @asynccontextmanager
    async def tenant(self, tenant_id: uuid.UUID) -> AsyncIterator[AsyncSession]:
        """A transaction that sees only ``tenant_id``'s rows. Commits on success."""
        async with self._transaction() as session:
            await session.execute(_SET_TENANT, {"tenant": str(tenant_id)})
            yield session

    @asynccontextmanager
    async def request(
        self, tenant_id: uuid.UUID, device_id: uuid.UUID | None, token_id: str | None
    ) -> AsyncIterator[tuple[AsyncSession, str | None]]:
        """Like ``tenant``, and in the same round trip checks that ``device_id`` (when given) is
        an enrolled, unrevoked device of the tenant and that the token ``token_id`` (its
        ``jti``) has not been revoked: yields the session and why the caller is refused
        (``device_revoked``, ``token_revoked``), or None."""
        async with self._transaction() as session:
            # Straight to the driver (no statement compilation): this runs on every request.
            connection = await session.connection()
            result = await connection.exec_driver_sql(_ENTER_SQL, (tenant_id, device_id, token_id))
            yield session, result.scalar()

    @asynccontextmanager
    async def enrollment(self, code_hash: bytes) -> AsyncIterator[AsyncSession]:
        """A transaction with no tenant that may see the one enrollment with ``code_hash``."""
        async with self._transaction() as session:
            await session.execute(_SET_ENROLLMENT, {"hash": code_hash.hex()})
            yield session

    @asynccontextmanager
    async def untenanted(self) -> AsyncIterator[AsyncSession]:
        """A transaction with no tenant: tenant tables look empty. For cross-tenant functions."""
        async with self._transaction() as session:
            yield session

    async def set_tenant(self, session: AsyncSession, tenant_id: uuid.UUID) -> None:
        """Switch the current transaction to ``tenant_id`` (after an enrollment lookup)."""
        await session.execute(_SET_TENANT, {"tenant": str(tenant_id)})

    async def close(self) -> None:
        await self.engine.dispose()


def _returned(_dbapi_connection: Any, record: Any) -> None:
    """When a connection went back to the pool (``Database._check_alive`` reads it)."""
    record.info[_IDLE_SINCE] = time.monotonic()
