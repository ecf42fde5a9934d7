"""Idempotency keys: a client may retry a write and get the first answer again.

The key is claimed inside the request's own transaction: ``INSERT ... ON CONFLICT DO NOTHING``.
A concurrent request with the same key waits on that row until the first commits, then replays
its stored response; if the first rolls back (an error), its claim vanishes with it and the
retry runs afresh. Only successful responses are stored. The same key with a different body is
refused (422), as it almost always means a client bug.

What is kept is what a replay needs, never a secret: an answer that carries one (a ticket code
is an entry pass) is kept with it blanked and refilled on replay (``Redaction``). A key is
answered for ``KEY_TTL``; then the worker deletes its row (``sync_server.db.pruning``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Generic, TypeVar

import msgspec
from litestar import Response
from litestar.datastructures import ResponseHeader
from litestar.params import HeaderParameter
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from sync_server.db.models import IdempotencyKey
from sync_server.http.auth import Principal
from sync_server.http.problems import BadRequest, Unprocessable

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"
_R = TypeVar("_R", bound=msgspec.Struct)
IdempotencyHeader = Annotated[str | None, HeaderParameter(name=HEADER, required=False)]
#: How long a key is answered; the worker deletes its row after that (a retry comes within
#: minutes, a client's queue replays within a day or two).
KEY_TTL = timedelta(hours=48)


@dataclass(frozen=True, slots=True)
class Redaction(Generic[_R]):
    """How an answer with a secret in it is kept: ``blank`` takes the secret out before the
    answer is stored, ``refill`` makes it again for a replay."""

    blank: Callable[[_R], _R]
    refill: Callable[[_R], Awaitable[_R]]


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: Any


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    tenant_id: uuid.UUID
    principal: str
    scope: str
    key: str
    request_hash: bytes

    @classmethod
    def of(
        cls, principal: Principal, scope: str, key: str | None, body: msgspec.Struct
    ) -> IdempotentRequest:
        """Raises ``BadRequest`` when the header is missing or unusable."""
        if key is None or not key.strip():
            raise BadRequest(
                "idempotency_key_required",
                f"This request changes state: send an {HEADER} header (for example a UUID) "
                "so that retrying it is safe.",
            )
        key = key.strip()
        if len(key) > 255:
            raise BadRequest("idempotency_key_invalid", f"{HEADER} is longer than 255 characters.")
        digest = hashlib.sha256(scope.encode() + b"\0" + msgspec.json.encode(body)).digest()
        return cls(principal.tenant_id, principal.actor, scope, key, digest)

    def _match(self) -> Any:
        return (
            (IdempotencyKey.tenant_id == self.tenant_id)
            & (IdempotencyKey.principal == self.principal)
            & (IdempotencyKey.scope == self.scope)
            & (IdempotencyKey.key == self.key)
        )

    async def claim(self, session: AsyncSession) -> StoredResponse | None:
        """None when this request is new (go ahead); the stored response when it is a replay."""
        claimed = await session.scalar(
            insert(IdempotencyKey)
            .values(
                tenant_id=self.tenant_id,
                principal=self.principal,
                scope=self.scope,
                key=self.key,
                request_hash=self.request_hash,
                expires_at=func.now() + KEY_TTL,
            )
            .on_conflict_do_nothing()
            .returning(IdempotencyKey.key)
        )
        if claimed is not None:
            return None
        stored = (
            await session.execute(
                select(
                    IdempotencyKey.request_hash,
                    IdempotencyKey.response_status,
                    IdempotencyKey.response_body,
                ).where(self._match())
            )
        ).one()
        if stored.request_hash != self.request_hash:
            raise Unprocessable(
                "idempotency_key_reused",
                f"This {HEADER} was already used for a different request; use a new key.",
            )
        return StoredResponse(stored.response_status, stored.response_body)

    async def complete(self, session: AsyncSession, status: int, body: msgspec.Struct) -> None:
        await session.execute(
            update(IdempotencyKey)
            .where(self._match())
            .values(response_status=status, response_body=msgspec.to_builtins(body))
        )


async def run_idempotent(
    session: AsyncSession,
    request: IdempotentRequest,
    status: int,
    result_type: type[_R],
    work: Callable[[], Awaitable[_R]],
    *,
    redaction: Redaction[_R] | None = None,
) -> Response[_R]:
    """Do ``work`` once per key: the first call runs it and stores its result (blanked by
    ``redaction`` when it carries a secret), a retry gets the stored result back (refilled)
    with ``Idempotent-Replayed: true``."""
    stored = await request.claim(session)
    if stored is not None:
        replayed = msgspec.convert(stored.body, result_type)
        if redaction is not None:
            replayed = await redaction.refill(replayed)
        return Response(replayed, status_code=stored.status, headers={REPLAY_HEADER: "true"})
    result = await work()
    await request.complete(
        session, status, redaction.blank(result) if redaction is not None else result
    )
    return Response(result, status_code=status)


#: The OpenAPI document's word for ``Idempotent-Replayed`` on an idempotent route's success
#: (``response_headers=[REPLAYED]``).
REPLAYED = ResponseHeader(
    name=REPLAY_HEADER,
    value="true",
    documentation_only=True,
    description="`true` when this is the stored answer to an earlier request with the same "
    f"{HEADER}; absent on the first answer.",
)
