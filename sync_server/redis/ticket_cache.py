"""Read-through cache of ``GET /v1/tickets/{id}`` answers: ``ticket:{id}`` in Redis, 5 minutes.
What an answer is (a msgspec type) is the app's to say when it builds the cache.

The rule: a cached ticket never outlives a committed change to it, and a change that rolled
back never reaches the cache. How:

* Writers do not touch Redis themselves. They note the tickets they change on their session
  (``ticket_written``); the database announces them only after the transaction has committed
  (``Database.on_tickets_written``), and the announcement is awaited before the writer's
  response is sent. A rollback announces nothing.
* The announcement overwrites ``ticket:{id}`` with a *tombstone* (``~`` and a random token,
  same lifetime as a cached value) instead of deleting it. That closes the classic race — a
  reader misses, reads the old row, the writer commits and invalidates, the reader stores the
  old row — because a reader stores its row only if the key still holds exactly what the
  reader saw before reading the database (nothing, or the same tombstone): one Lua
  compare-and-set. A tombstone written in between makes the store a no-op. A reader that took
  longer than ``FILL_DEADLINE_SECONDS`` does not store at all, so no tombstone can expire
  under a slow reader.
* Tenant isolation: the cached value carries its tenant. A hit for another tenant is treated
  as a miss and read from Postgres, where row-level security answers 404; such a read never
  stores anything.
* Redis down: reads go to Postgres and nothing is stored. Invalidations that could not be
  written are kept in this process and written as soon as Redis answers again; until then this
  process does not read from the cache at all. (Another process that still reaches Redis could
  serve such a ticket until its TTL ends: the one case where a stale answer can outlive a
  change, for at most the TTL. A process that dies holding invalidations leaves the same.)
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from typing import Any, Final, Generic, TypeVar

import msgspec
from redis.asyncio import Redis

from sync_server.db.engine import Database
from sync_server.redis.link import UNAVAILABLE, RedisLink
from sync_server.settings import RedisSettings

log = logging.getLogger(__name__)

#: What the cache holds per ticket: the API's answer, a msgspec-encodable type.
_T = TypeVar("_T")

TOMBSTONE_PREFIX: Final = "~"
#: A reader slower than this between its Redis read and its database read stores nothing.
FILL_DEADLINE_SECONDS: Final = 10.0
#: Tombstones outlive any reader allowed to store (see above) by a wide margin.
MIN_TOMBSTONE_SECONDS: Final = 60
#: Invalidations kept while Redis is down; past this, the whole cache is dropped on return.
MAX_PENDING: Final = 100_000

# Store the row only if the key still holds what the reader saw before reading the database
# (ARGV[1]: a tombstone, or '' for nothing).
_FILL = """
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
    return 1
end
return 0
"""

# Every key of KEYS tombstoned with ARGV[1] for ARGV[2] seconds.
_TOMBSTONES = """
for _, key in ipairs(KEYS) do
    redis.call('SET', key, ARGV[1], 'EX', ARGV[2])
end
return #KEYS
"""


class CachedTicket(msgspec.Struct, Generic[_T], kw_only=True):
    """What ``ticket:{id}`` holds: the API's answer and the tenant it belongs to."""

    tenant_id: uuid.UUID
    ticket: _T


_encoder = msgspec.json.Encoder()


class TicketCache(Generic[_T]):
    """The cache of answers of type ``ticket_type`` (the API's ``TicketOut``)."""

    def __init__(self, link: RedisLink, ttl_seconds: int, ticket_type: type[_T]) -> None:
        self._link = link
        self._decoder = msgspec.json.Decoder(CachedTicket[ticket_type])  # type: ignore[valid-type]
        self.ttl_seconds = ttl_seconds
        self._tombstone_seconds = max(ttl_seconds, MIN_TOMBSTONE_SECONDS)
        self._fill = link.client.register_script(_FILL)
        self._tombstones = link.client.register_script(_TOMBSTONES)
        self._pending: set[uuid.UUID] = set()
        self._pending_overflowed = False
        link.on_recovery(self.write_pending)

    def key(self, ticket_id: uuid.UUID) -> str:
        return self._link.key(f"ticket:{ticket_id}")

    @property
    def enabled(self) -> bool:
        return self.ttl_seconds > 0

    async def read(
        self,
        tenant_id: uuid.UUID,
        ticket_id: uuid.UUID,
        load: Callable[[], Awaitable[_T]],
    ) -> _T:
        """The ticket from the cache, or from ``load()`` (which reads Postgres for the caller's
        tenant and raises ``NotFound`` as usual), stored for the next reader when safe."""
        if not self.enabled or not await self.write_pending():
            return await load()
        key = self.key(ticket_id)
        found = await self._link.run(lambda client: client.get(key))
        if found is UNAVAILABLE:
            return await load()
        seen = ""
        if found is not None:
            found = found if isinstance(found, bytes) else str(found).encode()
            cached = self._decode(found)
            if cached is not None:
                if cached.tenant_id == tenant_id:
                    return cached.ticket
                return await load()  # another tenant's ticket: Postgres says 404; store nothing
            seen = found.decode(errors="replace")  # a tombstone (or junk: replace it)
        started = time.monotonic()
        ticket = await load()
        if time.monotonic() - started < FILL_DEADLINE_SECONDS:
            value = _encoder.encode(CachedTicket(tenant_id=tenant_id, ticket=ticket))

            async def fill(client: Redis) -> Any:
                return await self._fill(keys=[key], args=[seen, value, self.ttl_seconds])

            await self._link.run(fill)
        return ticket

    async def invalidate(self, ticket_ids: Collection[uuid.UUID]) -> None:
        """Tombstone these tickets' entries (after their change committed). Never raises: what
        Redis does not take now is kept and written when it is back."""
        if not self.enabled or not ticket_ids:
            return
        if not await self._tombstone(ticket_ids):
            self._keep(ticket_ids)

    async def write_pending(self) -> bool:
        """Write the invalidations kept while Redis was away. True when none are left (the
        cache may be read), False while Redis still does not take them."""
        if self._pending_overflowed:
            if not await self._drop_all():
                return False
            self._pending_overflowed = False
            self._pending.clear()
        if not self._pending:
            return True
        pending = set(self._pending)
        if not await self._tombstone(pending):
            return False
        self._pending -= pending
        log.info("wrote %d ticket cache invalidations kept while Redis was away", len(pending))
        return not self._pending

    async def _tombstone(self, ticket_ids: Collection[uuid.UUID]) -> bool:
        # One script call for the whole set (an upload invalidates a thousand tickets at once:
        # a pipeline of a thousand SETs cost about 50 µs of the server's CPU each). One fresh
        # tombstone per call is enough for ``_FILL``'s comparison, which is per key: a later
        # invalidation of any of these tickets writes another.
        tombstone = TOMBSTONE_PREFIX + secrets.token_hex(8)
        keys = [self.key(ticket_id) for ticket_id in ticket_ids]

        async def write(client: Redis) -> None:
            if len(keys) == 1:  # a verdict's one ticket: a plain SET
                await client.set(keys[0], tombstone, ex=self._tombstone_seconds)
                return
            await self._tombstones(keys=keys, args=[tombstone, self._tombstone_seconds])

        return await self._link.run(write) is not UNAVAILABLE

    def _keep(self, ticket_ids: Collection[uuid.UUID]) -> None:
        if self._pending_overflowed:
            return
        self._pending.update(ticket_ids)
        if len(self._pending) > MAX_PENDING:
            # Too many to remember one by one: forget the whole cache when Redis is back.
            self._pending_overflowed = True
            self._pending.clear()

    async def _drop_all(self) -> bool:
        async def drop(client: Redis) -> None:
            batch: list[Any] = []
            async for key in client.scan_iter(match=self._link.key("ticket:*"), count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await client.unlink(*batch)
                    batch.clear()
            if batch:
                await client.unlink(*batch)

        return await self._link.run(drop) is not UNAVAILABLE

    def _decode(self, raw: bytes) -> CachedTicket[_T] | None:
        if raw.startswith(TOMBSTONE_PREFIX.encode()):
            return None
        try:
            found: CachedTicket[_T] = self._decoder.decode(raw)
        except msgspec.DecodeError:  # written by another version of the server: a miss
            return None
        return found


@asynccontextmanager
async def invalidating(
    database: Database, settings: RedisSettings
) -> AsyncIterator[TicketCache[msgspec.Raw]]:
    """For programs other than the API that change tickets (``gatehouse-server expire``, the
    worker): connect ``database``'s commits to the ticket cache for the duration. They only
    invalidate, never read: the answers stay undecoded (``msgspec.Raw``)."""
    link = RedisLink(settings)
    cache = TicketCache(link, settings.ticket_cache_ttl_seconds, msgspec.Raw)
    database.on_tickets_written = cache.invalidate
    try:
        yield cache
    finally:
        database.on_tickets_written = None
        await link.close()
