"""Pruning: what the server keeps only for a while is deleted once it is old — the worker's
``prune`` job (``sync_server.scheduler``, every ``GATEHOUSE_JOBS_PRUNE_EVERY``).

* idempotency keys past their ``expires_at`` (``sync_server.http.idempotency.KEY_TTL``);
* revocations of tokens that have expired anyway (``sync_server.domain.tokens``);
* outbox rows RabbitMQ confirmed more than ``OUTBOX_RETENTION`` ago (nothing reads a sent row;
  they are kept a while for someone looking into a delivery);
* consumer records (``processed_events``) older than ``PROCESSED_RETENTION``: a message
  redelivered after that would be handled again, and the broker does not keep one that long;
* counts of junk uploads (``junk_scans``, per device and minute) older than ``JUNK_RETENTION``:
  the device listing's ``junk_scans_not_stored`` covers that many days;
* console sessions past their ``expires_at`` (migration 0018).

Nothing in Redis needs it: rate-limit windows, breaker states and cached tickets are written
with a TTL (``sync_server.redis``). One call of ``gatehouse_prune`` (migrations 0007, 0009,
0018, an owner-side function) does it across tenants.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import text

from sync_server.db.engine import Database

OUTBOX_RETENTION = timedelta(days=7)
PROCESSED_RETENTION = timedelta(days=7)
JUNK_RETENTION = timedelta(days=30)

_PRUNE = text(
    "SELECT idempotency_keys, token_revocations, outbox, processed_events, junk_scans, "
    "console_sessions "
    "FROM gatehouse_prune(:outbox, :processed, :junk)"
)


@dataclass(frozen=True, slots=True)
class Pruned:
    idempotency_keys: int = 0
    token_revocations: int = 0
    outbox: int = 0
    processed_events: int = 0
    junk_scans: int = 0
    console_sessions: int = 0


async def prune(database: Database, now: datetime) -> Pruned:
    """Delete what has expired, in every tenant; how many rows of each kind went."""
    async with database.untenanted() as session:
        row = (
            await session.execute(
                _PRUNE,
                {
                    "outbox": now - OUTBOX_RETENTION,
                    "processed": now - PROCESSED_RETENTION,
                    "junk": now - JUNK_RETENTION,
                },
            )
        ).one()
    return Pruned(*(int(count) for count in row))


async def prune_job(database: Database, now: datetime) -> dict[str, int]:
    """The ``prune`` job: ``prune`` at ``now``, its counts by kind of row."""
    return asdict(await prune(database, now))
