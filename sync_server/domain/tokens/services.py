"""Revoking tokens: a token's id (``jti``) on the tenant's deny-list is refused from the next
request on, in every process — ``Database.request`` checks it in the round trip that starts
each request's transaction (``gatehouse_enter``, migration 0007). A revocation is kept until the
token would have expired anyway; then the worker's pruner deletes it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from sync_server.db.models import TokenRevocation
from sync_server.domain.tokens.schemas import RevocationOut
from sync_server.http.auth import MAX_TOKEN_TTL


async def revoke_token(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    jti: str,
    *,
    expires_at: datetime | None,
    actor: str,
    now: datetime,
) -> RevocationOut:
    """Put ``jti`` on the tenant's deny-list (in ``session``'s transaction, scoped to the
    tenant). Revoking it again changes nothing and answers the first revocation."""
    await session.execute(
        insert(TokenRevocation)
        .values(
            tenant_id=tenant_id,
            jti=jti,
            expires_at=expires_at or now + max(MAX_TOKEN_TTL.values()),
            revoked_at=now,
            revoked_by=actor,
        )
        .on_conflict_do_nothing()
    )
    row = (
        await session.execute(select(TokenRevocation).where(TokenRevocation.jti == jti))
    ).scalar_one()
    return RevocationOut(
        jti=row.jti, expires_at=row.expires_at, revoked_at=row.revoked_at, revoked_by=row.revoked_by
    )
