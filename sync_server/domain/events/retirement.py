"""Retiring an event's key after a loss (a stolen scanner, a leaked key): the key is retired,
the scanners learn it through the changes feed, and every live ticket of the event gets a new
code, in bounded batches of one transaction each, with its ``ticket.reissued`` event.

The server keeps no codes, so it cannot tell which tickets' codes were made with the retired
key: every live ticket sold before the retirement counts as affected, unless it has had a new
secret version since (a transfer, or this retirement's new code). A retirement is safe to
repeat: the key stays retired as it was, and the tickets already given a new code since are not
taken again — a retirement cut short (a timeout, a crash) is finished by running it again."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import Clock
from sync_server.db.models import Event
from sync_server.domain.events.schemas import KeyRetirement
from sync_server.domain.keys.services import KeyStore
from sync_server.domain.tickets.services import REISSUE_BATCH, awaiting_new_code, reissue_codes
from sync_server.http.problems import NotFound

log = logging.getLogger(__name__)

#: Opens one transaction of the tenant (the request's caller's, or the command line's).
OpenTransaction = Callable[[], AbstractAsyncContextManager[AsyncSession]]


async def retire_key(
    transaction: OpenTransaction,
    keys: KeyStore,
    clock: Clock,
    *,
    tenant_id: uuid.UUID,
    event_id: uuid.UUID,
    key_id: int,
    actor: str,
    max_batches: int | None = None,
    batch_size: int = REISSUE_BATCH,
) -> KeyRetirement:
    """Retire ``key_id`` of ``event_id`` and give the event's tickets new codes, at most
    ``max_batches`` transactions of ``batch_size`` tickets (None: until done). Raises
    ``NotFound`` for an unknown event or key."""
    async with transaction() as session:
        if await session.get(Event, event_id) is None:
            raise NotFound("event")
        try:
            retired_at = await keys.retire(
                session, tenant_id=tenant_id, event_id=event_id, key_id=key_id, now=clock.now()
            )
        except LookupError as error:
            raise NotFound("key of this event") from error
        ring = await keys.issuer_ring(session, event_id, tenant_id=tenant_id)
    log.info(
        "ticket key retired",
        extra={"event_id": str(event_id), "key_id": key_id, "actor": actor},
    )
    reissued = batches = 0
    while max_batches is None or batches < max_batches:
        async with transaction() as session:
            done = await reissue_codes(
                session,
                event_id=event_id,
                since=retired_at,
                actor=actor,
                now=clock.now(),
                details={"retired_key_id": key_id},
                limit=batch_size,
            )
        reissued += done
        batches += 1
        if done < batch_size:
            break
    async with transaction() as session:
        remaining = await awaiting_new_code(session, event_id=event_id, since=retired_at)
    return KeyRetirement(
        event_id=event_id,
        key_id=key_id,
        retired_at=retired_at,
        signing_key_id=ring.active_signing_key.key_id,
        encryption_key_id=ring.active_encryption_key.key_id,
        tickets_reissued=reissued,
        tickets_remaining=remaining,
    )
