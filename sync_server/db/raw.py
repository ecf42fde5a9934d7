"""The request transaction's own asyncpg connection, for hot paths.

A statement through SQLAlchemy's async session costs about 0.9 ms of CPU here, a prepared
asyncpg statement about 0.13 ms (measured in benchmarks/validate.py's profile). The check-in
path therefore runs its few fixed statements straight on the driver connection — inside the
same transaction the session opened, so row locks, RLS tenant and commit are shared.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


async def driver(session: AsyncSession) -> Any:
    """The asyncpg connection under ``session``'s transaction.

    Raises ``RuntimeError`` when the session has not begun a transaction on the database yet:
    statements sent then would run outside it (without the tenant and the locks).
    """
    connection = await session.connection()
    raw = (await connection.get_raw_connection()).driver_connection
    if raw is None or not raw.is_in_transaction():
        raise RuntimeError("the session's transaction has not started on the database")
    return raw
