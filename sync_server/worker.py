"""``gatehouse-server worker``: the outbox relay and our consumers in one process — and, with the
chain on, the chain tracker (our mints, transfers and freezes until finalized) and the chain
listener (transfers made on-chain) — and the scheduler (:mod:`sync_server.scheduler`), which
runs the scheduled jobs (``expire``: tickets of events ended more than the grace period ago;
``prune``: old rows, :mod:`sync_server.db.pruning`; ``key-rotation``: reminders for old ticket
keys) until SIGTERM or SIGINT; then each finishes what it holds and the process exits 0.

This is the worker's composition root, as ``app.py`` is the API's: it is the one module that
puts the messaging framework (:mod:`sync_server.messaging`) and its users (the chain's consumer,
tracker and listener, :mod:`sync_server.chain`) together; ``messaging`` never imports ``chain``.

Run as many workers as you like (one per machine or container is plenty): relays share the
outbox through ``SKIP LOCKED`` without publishing a row twice or a ticket's events out of order,
and consumers of the same name share their queue, and each scheduled job runs on one worker at a
time, at most once per its interval (a lease in ``job_leases``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from shared.clock import Clock
from sync_server.chain.client import ChainKeys
from sync_server.db.engine import Database
from sync_server.db.pruning import prune_job
from sync_server.domain.chain.listener import ChainListener
from sync_server.domain.chain.minting import chain_consumers
from sync_server.domain.chain.tracker import ChainTracker
from sync_server.domain.keys.rotation import keys_due_for_rotation
from sync_server.domain.tickets.services import expire_ended_events
from sync_server.messaging.consumers import Consumer
from sync_server.messaging.relay import OutboxRelay, RelayConfig, RelayHooks
from sync_server.observability import metrics
from sync_server.redis.ticket_cache import invalidating
from sync_server.scheduler import Job, Scheduler
from sync_server.settings import Settings

log = logging.getLogger(__name__)

#: How long the parts get, after SIGTERM, to finish their batch or messages before being
#: cancelled (what is cancelled is redone later: rows stay unsent, messages are redelivered).
SHUTDOWN_GRACE_S = 20.0

ConsumerFactory = Callable[[Database, Settings], Sequence[Consumer]]


def _relay_metrics() -> RelayHooks:
    return RelayHooks(
        published=lambda key: metrics.RELAY_PUBLISHED.labels(routing_key=key).inc(),
        failed=lambda stage: metrics.RELAY_ERRORS.labels(stage=stage).inc(),
    )


def our_consumers(database: Database, settings: Settings) -> Sequence[Consumer]:
    """The consumers this release runs: with the chain on, ``chain`` (queues each ticket's next
    chain action: mint, move out of custody, freeze); none otherwise."""
    return chain_consumers(database, settings)


def scheduled_jobs(database: Database, settings: Settings) -> list[Job]:
    """The jobs the worker's scheduler runs (docs/operations.md "Scheduled jobs")."""
    jobs = settings.jobs
    grace = timedelta(seconds=jobs.expiry_grace)
    max_age = timedelta(seconds=jobs.key_max_age)

    async def expire(now: datetime) -> Mapping[str, int]:
        return {"tickets_expired": await expire_ended_events(database, now, grace=grace)}

    async def prune(now: datetime) -> Mapping[str, int]:
        return await prune_job(database, now)

    async def key_rotation(now: datetime) -> Mapping[str, int]:
        due = await keys_due_for_rotation(database, now, max_age)
        metrics.KEYS_ROTATION_DUE.set(len(due))
        return {"events_due": len(due)}

    return [
        Job("expire", timedelta(seconds=jobs.expire_every), expire),
        Job("prune", timedelta(seconds=jobs.prune_every), prune),
        Job("key-rotation", timedelta(seconds=jobs.key_rotation_every), key_rotation),
    ]


class Part(Protocol):
    """Something the worker runs until asked to stop."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


def chain_parts(database: Database, settings: Settings) -> list[tuple[str, Part]]:
    """With the chain on: the tracker and the listener (named, for logs)."""
    if not settings.chain.enabled:
        return []
    keys = ChainKeys.from_settings(settings.chain)
    return [
        ("chain-tracker", ChainTracker(database, settings, keys=keys)),
        ("chain-listener", ChainListener(database, settings.chain, keys=keys)),
    ]


class Worker:
    """The relay, the consumers, the chain parts and the scheduler, started together, stopped
    together. ``clock`` is the scheduler's (tests pass a ``ManualClock``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        consumers: ConsumerFactory = our_consumers,
        relay_config: RelayConfig | None = None,
        relay_hooks: RelayHooks | None = None,
        shutdown_grace: float = SHUTDOWN_GRACE_S,
        clock: Clock | None = None,
    ) -> None:
        self._settings = settings
        self._shutdown_grace = shutdown_grace
        # The consumers' handlers run as the application role, tenant by tenant; the relay
        # has its own role and connections.
        self.database = Database(settings.database)
        self.relay = OutboxRelay(
            settings.database.relay_connection_url(),
            settings.amqp.url,
            relay_config,
            hooks=relay_hooks or _relay_metrics(),
        )
        self.consumers = list(consumers(self.database, settings))
        self.chain = chain_parts(self.database, settings)
        self.scheduler = Scheduler(
            self.database,
            scheduled_jobs(self.database, settings),
            clock=clock,
            tick=settings.jobs.tick,
            lease=timedelta(seconds=settings.jobs.lease),
        )
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM and SIGINT do)."""
        self._stopping.set()

    async def run(self) -> None:
        """Run until ``stop()``. Raises only if a part fails in a way it does not handle itself
        (a bug): then the others are stopped first, and the error ends the process."""
        # The consumers and the chain parts change tickets: the API's Redis copies must go.
        async with invalidating(self.database, self._settings.redis):
            await self._run_parts()

    async def _run_parts(self) -> None:
        parts = (
            [asyncio.create_task(self.relay.run(), name="relay")]
            + [
                asyncio.create_task(consumer.run(), name=f"consumer-{consumer.name}")
                for consumer in self.consumers
            ]
            + [asyncio.create_task(chain.run(), name=name) for name, chain in self.chain]
            + [asyncio.create_task(self.scheduler.run(), name="scheduler")]
        )
        stopping = asyncio.create_task(self._stopping.wait())
        log.info(
            "worker started: relay, %d consumer%s%s, scheduler (%s)",
            len(self.consumers),
            "" if len(self.consumers) == 1 else "s",
            ", chain tracker and listener" if self.chain else "",
            ", ".join(job.name for job in self.scheduler.jobs),
        )
        try:
            done, _ = await asyncio.wait([stopping, *parts], return_when=asyncio.FIRST_COMPLETED)
            crashed = [part for part in parts if part in done]
            log.info("worker stopping")
            self.relay.stop()
            for consumer in self.consumers:
                consumer.stop()
            for _, chain_part in self.chain:
                chain_part.stop()
            self.scheduler.stop()
            _, late = await asyncio.wait(parts, timeout=self._shutdown_grace)
            for part in late:
                log.warning(
                    "%s did not stop in %.0f s; cancelled", part.get_name(), self._shutdown_grace
                )
                part.cancel()
            for part in late:
                with contextlib.suppress(asyncio.CancelledError):
                    await part
            for part in crashed:
                part.result()  # re-raise what ended a part early
        finally:
            stopping.cancel()
            await self.database.close()
        log.info("worker stopped")


async def run_worker(settings: Settings) -> None:
    """Run a ``Worker`` until SIGTERM or SIGINT (the CLI's ``worker`` command)."""
    worker = Worker(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    try:
        await worker.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
