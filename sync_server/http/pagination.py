"""Cursor pagination over UUIDv7 primary keys: ``WHERE id > :after ORDER BY id``. Ids sort by
creation, so pages are stable while rows are added, and every page costs the same."""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Annotated, Any, Protocol, TypeVar

import msgspec
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from sync_server.http.problems import BadRequest

Limit = Annotated[int, msgspec.Meta(ge=1, le=500)]
DEFAULT_LIMIT = 100


def encode_cursor(last_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(last_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> uuid.UUID | None:
    """The id after which the page starts. Raises ``BadRequest`` for a cursor we did not make."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except (binascii.Error, ValueError) as error:
        raise BadRequest(
            "invalid_cursor", "The cursor is not one this API returned; start without one."
        ) from error


class _Model(Protocol):
    id: Any  # a mapped UUIDv7 primary-key column


_Row = TypeVar("_Row", bound=_Model)


async def fetch_page(
    session: AsyncSession,
    model: type[_Row],
    cursor: str | None,
    limit: int,
    *where: ColumnElement[bool],
) -> tuple[list[_Row], str | None]:
    """One page of ``model`` rows matching ``where``, after ``cursor``, and the cursor of the
    next page (None on the last). Raises ``BadRequest`` for a cursor we did not make."""
    after = decode_cursor(cursor)
    query = select(model).where(*where)
    if after is not None:
        query = query.where(model.id > after)
    rows = list(await session.scalars(query.order_by(model.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].id) if more else None
