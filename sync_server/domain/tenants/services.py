"""Tenants are created by operators with the owner's connection (the application role may only
read its own tenant row)."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.ids import new_id


async def create_tenant(admin_url: str, name: str) -> uuid.UUID:
    """Create a tenant and return its id. Raises ``ValueError`` for an empty name."""
    name = name.strip()
    if not name:
        raise ValueError("a tenant needs a name")
    tenant_id = new_id()
    engine = create_async_engine(admin_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO tenants (id, name) VALUES (:id, :name)"),
                {"id": tenant_id, "name": name},
            )
    finally:
        await engine.dispose()
    return tenant_id


async def tenant_name(admin_url: str, tenant_id: uuid.UUID) -> str | None:
    """The tenant's name, or None when there is no tenant with that id."""
    engine = create_async_engine(admin_url)
    try:
        async with engine.connect() as connection:
            name: str | None = await connection.scalar(
                text("SELECT name FROM tenants WHERE id = :id"), {"id": tenant_id}
            )
    finally:
        await engine.dispose()
    return name
