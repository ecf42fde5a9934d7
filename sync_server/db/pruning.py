"""The worker's pruning loop: what the server keeps only for a while is deleted once it is old.

* idempotency keys past their ``expires_at`` (``sync_server.http.idempotency.KEY_TTL``);
* revocations of tokens that have expired anyway (``sync_server.domain.tokens``);
* outbox rows RabbitMQ confirmed more than ``OUTBOX_RETENTION`` ago (nothing reads a sent row;
  they are kept a while for someone looking into a delivery);
* consumer records (``processed_events``) older than ``PROCESSED_RETENTION``: a message
  redelivered after that would be handled again, and the broker does not keep one that long;
* counts of junk uploads (``junk_scans``, per device and minute) older than ``JUNK_RETENTION``:
  the device listing's ``junk_scans_not_stored`` covers that many days.

One call of ``gatehouse_prune`` (migrations 0007, 0009) does it across tenants; the loop runs it
every ``every`` seconds and waits out a database outage like the worker's other loops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from shared.backoff import Backoff
from sync_server.background import BackgroundLoop, LoopStats
from sync_server.db.engine import Database

log = logging.getLogger(__name__)

OUTBOX_RETENTION = timedelta(days=7)
PROCESSED_RETENTION = timedelta(days=7)
JUNK_RETENTION = timedelta(days=30)
PRUNE_EVERY_S = 3600.0

_PRUNE = text(
    "SELECT idempotency_keys, token_revocations, outbox, processed_events, junk_scans "
    "FROM gatehouse_prune(:outbox, :processed, :junk)"
)


@dataclass(frozen=True, slots=True)
class Pruned:
    idempotency_keys: int = 0
    token_revocations: int = 0
    outbox: int = 0
    processed_events: int = 0
    junk_scans: int = 0


@dataclass(frozen=True, slots=True)
class PrunerStats(LoopStats):
    #: Passes that succeeded, and what they deleted in all.
    passes: int = 0
    pruned: Pruned = Pruned()


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


class Pruner(BackgroundLoop[PrunerStats]):
    """Runs ``prune`` at start and then every ``every`` seconds, until stopped."""

    def __init__(self, database: Database, every: float = PRUNE_EVERY_S) -> None:
        super().__init__("pruner", PrunerStats(), Backoff(initial=1.0, maximum=300.0))
        self._database = database
        self._every = every

    async def _attempt(self) -> None:
        while not self.stopping:
            pruned = await prune(self._database, datetime.now(UTC))
            self._backoff.reset()
            if self._mark_up():
                log.info("pruner: the database answers again")
            total = self._stats.pruned
            self._set(
                passes=self._stats.passes + 1,
                pruned=Pruned(
                    total.idempotency_keys + pruned.idempotency_keys,
                    total.token_revocations + pruned.token_revocations,
                    total.outbox + pruned.outbox,
                    total.processed_events + pruned.processed_events,
                    total.junk_scans + pruned.junk_scans,
                ),
            )
            if pruned != Pruned():
                log.info(
                    "pruned %d idempotency keys, %d token revocations, %d sent outbox rows, "
                    "%d consumer records, %d junk-upload counts",
                    pruned.idempotency_keys,
                    pruned.token_revocations,
                    pruned.outbox,
                    pruned.processed_events,
                    pruned.junk_scans,
                )
            await self._sleep(self._every)
