"""The worker's scheduled jobs (docs/operations.md "Scheduled jobs"): named jobs, each run every
so often, and at most once at a time across every worker.

A job runs under a lease in Postgres (``job_leases``, migration 0018), one row per job:

* **taking it** is one ``INSERT … ON CONFLICT DO UPDATE … WHERE`` that succeeds only when the
  lease is free (no holder, or the holder's ``leased_until`` has passed) and the job is due (its
  last run started at least ``every`` ago; after a failed run, ``retry`` ago). Postgres locks the
  row while it decides, so of two workers asking at once exactly one gets it;
* **holding it**: while the run lasts the holder moves ``leased_until`` on every third of
  ``lease``. A worker that dies mid-run stops renewing, and another takes the job once the lease
  has passed. A run that cannot renew because another worker took the job over (it was stalled
  longer than its lease) is cancelled — outcome ``lost`` — so two never go on side by side;
* **giving it back** records the run's start (``last_run_at``), end and outcome and frees it.

Leases rather than advisory locks: a lock lives only as long as its connection, so it cannot
say when a job last ran (at most once per interval across workers needs that row anyway) nor
keep a transaction-per-batch job covered between its transactions; the row shows an operator
who holds which job (``SELECT * FROM job_leases``). Times come from the worker's clock
(injectable, for tests): workers' clocks must agree to well within the lease (NTP does).

Every run is one log line (``job``, ``outcome``, ``counts``, ``duration_s``) and metrics:
``gatehouse_job_runs_total{job,outcome}``, ``gatehouse_job_duration_seconds{job}``,
``gatehouse_job_last_success_timestamp_seconds{job}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from shared.backoff import Backoff
from shared.clock import Clock, SystemClock
from sync_server.background import BackgroundLoop, LoopStats, describe
from sync_server.db.engine import Database
from sync_server.observability import metrics

log = logging.getLogger(__name__)

#: What a job does: given the run's start, it works and returns what it counted (for the log).
JobRun = Callable[[datetime], Coroutine[Any, Any, Mapping[str, int]]]

#: After a failed run, the job is due again this soon (or after ``every`` if shorter).
RETRY_AFTER = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    every: timedelta
    run: JobRun


@dataclass(frozen=True, slots=True)
class Ran:
    """One run of a job by this worker."""

    job: str
    #: ``succeeded``, ``failed`` or ``lost``.
    outcome: str
    counts: Mapping[str, int] = field(default_factory=dict)
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SchedulerStats(LoopStats):
    #: Runs this worker made, by outcome.
    succeeded: int = 0
    failed: int = 0
    lost: int = 0


_TAKE = text(
    "INSERT INTO job_leases AS l (job, holder, leased_until) VALUES (:job, :holder, :until) "
    "ON CONFLICT (job) DO UPDATE "
    "SET holder = excluded.holder, leased_until = excluded.leased_until "
    "WHERE (l.leased_until IS NULL OR l.leased_until <= :now) "
    "AND (l.last_run_at IS NULL OR l.last_run_at <= :due "
    "     OR (l.last_outcome <> 'succeeded' AND l.last_run_at <= :retry)) "
    "RETURNING l.job"
)
_RENEW = text(
    "UPDATE job_leases SET leased_until = :until WHERE job = :job AND holder = :holder "
    "RETURNING job"
)
_GIVE_BACK = text(
    "UPDATE job_leases SET holder = NULL, leased_until = NULL, last_run_at = :started, "
    "last_finished_at = :now, last_outcome = :outcome WHERE job = :job AND holder = :holder"
)


def default_holder() -> str:
    """Names this worker in ``job_leases.holder``: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Scheduler(BackgroundLoop[SchedulerStats]):
    """Every ``tick`` seconds, runs each of ``jobs`` that is due and whose lease it gets."""

    def __init__(
        self,
        database: Database,
        jobs: Sequence[Job],
        *,
        clock: Clock | None = None,
        holder: str | None = None,
        tick: float = 30.0,
        lease: timedelta = timedelta(minutes=5),
    ) -> None:
        super().__init__("scheduler", SchedulerStats(), Backoff(initial=1.0, maximum=300.0))
        self._database = database
        self.jobs = list(jobs)
        self._clock = clock or SystemClock()
        self.holder = holder or default_holder()
        self._tick = tick
        self._lease = lease

    async def _attempt(self) -> None:
        while not self.stopping:
            await self.run_due()
            self._backoff.reset()
            if self._mark_up():
                log.info("scheduler: the database answers again")
            await self._sleep(self._tick)

    async def run_due(self) -> list[Ran]:
        """One pass: each job that is due and free is run, one after the other. What it ran."""
        ran: list[Ran] = []
        for job in self.jobs:
            if self.stopping:
                break
            done = await self.run_if_due(job)
            if done is not None:
                ran.append(done)
        return ran

    async def run_if_due(self, job: Job) -> Ran | None:
        """Run ``job`` if this worker gets its lease; None if it is not due or held elsewhere."""
        started = self._clock.now()
        if not await self._take(job, started):
            return None
        began = time.monotonic()
        work = asyncio.create_task(job.run(started), name=f"job-{job.name}")
        lost = asyncio.Event()
        renewing = asyncio.create_task(self._renew(job, work, lost), name=f"lease-{job.name}")
        counts: Mapping[str, int] = {}
        try:
            counts = await work
            outcome = "succeeded"
        except asyncio.CancelledError:
            if not lost.is_set():
                raise  # the worker is being cancelled: the lease runs out by itself
            outcome = "lost"
        except Exception as error:  # a job's failure is recorded, never the scheduler's end
            outcome = "failed"
            log.warning("job %s failed: %s", job.name, describe(error), exc_info=error)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            if not work.done():
                work.cancel()
        duration = time.monotonic() - began
        if outcome != "lost":
            await self._give_back(job, started, outcome)
        self._record(job, outcome, counts, duration)
        return Ran(job.name, outcome, counts, duration)

    async def _take(self, job: Job, now: datetime) -> bool:
        async with self._database.untenanted() as session:
            taken = await session.scalar(
                _TAKE,
                {
                    "job": job.name,
                    "holder": self.holder,
                    "until": now + self._lease,
                    "now": now,
                    "due": now - job.every,
                    "retry": now - min(job.every, RETRY_AFTER),
                },
            )
        return taken is not None

    async def _renew(
        self, job: Job, work: asyncio.Task[Mapping[str, int]], lost: asyncio.Event
    ) -> None:
        """Move the lease on every third of it; cancel ``work`` if another worker has it now."""
        while True:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            try:
                async with self._database.untenanted() as session:
                    kept = await session.scalar(
                        _RENEW,
                        {
                            "job": job.name,
                            "holder": self.holder,
                            "until": self._clock.now() + self._lease,
                        },
                    )
            except Exception as error:  # an outage: the run may still finish within the lease
                log.warning("job %s: lease not renewed: %s", job.name, describe(error))
                continue
            if kept is None:
                log.error("job %s: another worker took its lease over; run cancelled", job.name)
                lost.set()
                work.cancel()
                return

    async def _give_back(self, job: Job, started: datetime, outcome: str) -> None:
        async with self._database.untenanted() as session:
            await session.execute(
                _GIVE_BACK,
                {
                    "job": job.name,
                    "holder": self.holder,
                    "started": started,
                    "now": self._clock.now(),
                    "outcome": outcome,
                },
            )

    def _record(self, job: Job, outcome: str, counts: Mapping[str, int], duration: float) -> None:
        metrics.JOB_RUNS.labels(job=job.name, outcome=outcome).inc()
        metrics.JOB_DURATION.labels(job=job.name).observe(duration)
        if outcome == "succeeded":
            metrics.JOB_LAST_SUCCESS.labels(job=job.name).set(time.time())
        self._set(**{outcome: getattr(self._stats, outcome) + 1})
        log.log(
            logging.INFO if outcome == "succeeded" else logging.WARNING,
            "job %s %s in %.3f s%s",
            job.name,
            outcome,
            duration,
            "".join(f", {name} {count}" for name, count in counts.items()),
            extra={
                "job": job.name,
                "outcome": outcome,
                "counts": dict(counts),
                "duration_s": round(duration, 3),
            },
        )
