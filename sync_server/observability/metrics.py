"""Prometheus metrics of the API and the worker.

The metric objects are module globals, created at import, so any module records into them
without wiring: request latency (``requests.py``), verdicts (the check-in controllers), the
relay's and consumers' counters (``sync_server.messaging``), circuit-breaker state (the
breakers). Gauges that describe the world rather than this process — outbox lag, dependency
status — are computed when Prometheus scrapes (``render``), not kept here.

Several uvicorn workers: each is its own process with its own memory, so without help a scrape
would see only the worker that happened to answer, and counters would jump between scrapes.
prometheus_client's multiprocess mode fixes that: when ``PROMETHEUS_MULTIPROC_DIR`` is set (by
``gatehouse-server serve`` before it starts workers, see ``prepare_multiprocess_dir``) every
process writes its samples to memory-mapped files there, and whichever worker answers
``/metrics`` adds them all up. Its limits shape the choices below: no ``Info``/``Enum``, no
``set_function``, and gauges need a ``multiprocess_mode``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from enum import IntEnum
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from shared import wire

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Every metric's name starts so; the dashboards and alerts in docs/operations.md rely on it.
PREFIX = "gatehouse"

# Latency buckets around the check-in target (p99 ≤ 50 ms) with room on both sides: a verdict
# takes milliseconds, an upload of 1000 scans or a feed page may take a second or more.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUEST_DURATION = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template "
    "(never the raw path: ids would explode the series), method and status.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)

VERDICTS = Counter(
    f"{PREFIX}_verdicts_total",
    "Check-in verdicts: source online (POST /v1/validate, one per answer) or offline (uploaded "
    "scans, counted on their first upload); reason is 'none' for admissions.",
    ["source", "result", "reason"],
)

SCAN_CONFLICTS = Counter(
    f"{PREFIX}_scan_conflicts_total",
    "Uploaded admissions found to be second entries of a ticket (double entry).",
)

JUNK_NOT_STORED = Counter(
    f"{PREFIX}_junk_scans_not_stored_total",
    "Uploaded scans whose code did not read, counted but not stored: the device had sent more "
    "such scans that minute than the server stores (GATEHOUSE_JUNK_SCANS_PER_MINUTE).",
)

#: For the outbox relay: one per event the broker confirmed.
RELAY_PUBLISHED = Counter(
    f"{PREFIX}_relay_published_total",
    "Outbox events published to RabbitMQ and confirmed by the broker.",
    ["routing_key"],
)

#: For the outbox relay: ``stage`` is one of ``connect`` (broker unreachable), ``publish``
#: (publish raised or timed out), ``nack`` (the broker refused), ``database`` (claiming or
#: marking rows failed).
RELAY_ERRORS = Counter(
    f"{PREFIX}_relay_errors_total",
    "Failures of the outbox relay, by stage: connect, publish, nack, database.",
    ["stage"],
)

#: For our consumers: ``outcome`` is ``ack`` (handled), ``duplicate`` (seen before, skipped),
#: ``retry`` (requeued for another attempt) or ``dead_letter`` (gave up).
CONSUMER_MESSAGES = Counter(
    f"{PREFIX}_consumer_messages_total",
    "Messages our consumers finished with, by queue and outcome: ack, duplicate, retry, "
    "dead_letter.",
    ["queue", "outcome"],
)

#: For the chain tracker: ``kind`` is ``mint``, ``transfer`` or ``freeze``; ``outcome`` is
#: ``submitted`` (signed and sent), ``retried`` (did not land; queued again), ``finalized``
#: (applied to the ticket) or ``failed`` (given up after its attempts: look at the ticket).
CHAIN_TRANSACTIONS = Counter(
    f"{PREFIX}_chain_transactions_total",
    "Our Solana transactions by kind (mint, transfer, freeze) and outcome: submitted, "
    "retried, finalized, failed.",
    ["kind", "outcome"],
)


#: The worker's scheduled jobs (``sync_server.scheduler``): ``job`` is ``expire``, ``prune`` or
#: ``key-rotation``; ``outcome`` is ``succeeded``, ``failed`` or ``lost`` (its lease was taken
#: over mid-run: it ran longer than the lease and could not renew it).
JOB_RUNS = Counter(
    f"{PREFIX}_job_runs_total",
    "Scheduled job runs by job and outcome: succeeded, failed, lost.",
    ["job", "outcome"],
)
JOB_DURATION = Histogram(
    f"{PREFIX}_job_duration_seconds",
    "How long scheduled job runs took, by job.",
    ["job"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0),
)
# "max": whichever worker ran it last has the latest time.
JOB_LAST_SUCCESS = Gauge(
    f"{PREFIX}_job_last_success_timestamp_seconds",
    "When each scheduled job last succeeded (Unix time; only on the worker that ran it).",
    ["job"],
    multiprocess_mode="max",
)
#: Events whose active ticket-code key is older than ``GATEHOUSE_KEY_MAX_AGE`` at the last
#: key-rotation run (each one is also a log line).
KEYS_ROTATION_DUE = Gauge(
    f"{PREFIX}_keys_rotation_due_events",
    "Events (not yet ended) whose active ticket-code key is older than the configured age.",
    multiprocess_mode="mostrecent",
)


class BreakerState(IntEnum):
    """The values of ``gatehouse_circuit_breaker_state``."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


# "mostrecent": the breaker's state is shared through Redis, so whichever process saw it change
# last is right; a sum or a per-process series would be wrong or noisy. (Not a "live" mode, so
# a worker that dies leaves nothing that needs cleaning up.)
BREAKER_STATE = Gauge(
    f"{PREFIX}_circuit_breaker_state",
    "Circuit breaker per called service: 0 closed, 1 half-open, 2 open.",
    ["service"],
    multiprocess_mode="mostrecent",
)


def set_breaker_state(service: str, state: BreakerState | str) -> None:
    """Record a breaker's state, e.g. ``set_breaker_state("solana_rpc", BreakerState.OPEN)``
    or with the state's name (``"open"``, ``"half_open"``/``"half-open"``, ``"closed"``).
    Raises ``KeyError`` for an unknown name."""
    if isinstance(state, str):
        state = BreakerState[state.replace("-", "_").upper()]
    BREAKER_STATE.labels(service=service).set(int(state))


def observe_verdict(verdict: wire.Verdict) -> None:
    """Count one online verdict."""
    reason = verdict.reason.value if verdict.reason is not None else "none"
    VERDICTS.labels(source="online", result=verdict.result.value, reason=reason).inc()


def observe_uploads(outcome: wire.ScanBatchOutcome) -> None:
    """Count the newly recorded scans of an upload (repeats were counted the first time)."""
    for scan in outcome.outcomes:
        if scan.duplicate_upload:
            continue
        if not scan.stored:
            JUNK_NOT_STORED.inc()
            continue
        reason = scan.reason.value if scan.reason is not None else "none"
        VERDICTS.labels(source="offline", result=scan.result.value, reason=reason).inc()
        if scan.conflict_of is not None:
            SCAN_CONFLICTS.inc()


# --- exposition -------------------------------------------------------------------------------


class _Fixed:
    """Metrics computed for this scrape only (outbox lag, dependency status)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


class _ThisProcess:
    """The default registry (this process's metrics plus process and GC statistics)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def render(scraped: Iterable[Metric] = ()) -> tuple[bytes, str]:
    """The text exposition of every metric, with ``scraped`` families (built for this scrape)
    added. Returns the body and its content type."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    registry.register(_Fixed(scraped))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def prepare_multiprocess_dir(workers: int) -> Path | None:
    """Make multiprocess mode ready before uvicorn starts its workers; call it in the parent.

    With ``PROMETHEUS_MULTIPROC_DIR`` already set (by the operator: a tmpfs, say), its old
    sample files are removed — the client's rule, or counters of a previous run would be added
    in. Without it and with more than one worker, a private temporary directory is made and
    named in the environment the workers inherit; the caller removes it with
    ``cleanup_multiprocess_dir`` when the server stops. Returns the directory made, if any.
    """
    configured = multiprocess_dir()
    if configured:
        folder = Path(configured)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink(missing_ok=True)
        return None
    if workers <= 1:
        return None
    made = Path(tempfile.mkdtemp(prefix="gatehouse-metrics-"))
    os.environ[MULTIPROC_ENV] = str(made)
    return made


def cleanup_multiprocess_dir(made: Path | None) -> None:
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
        os.environ.pop(MULTIPROC_ENV, None)


def serve_worker_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Expose this process's metrics on ``http://host:port/metrics`` from a background thread:
    for ``gatehouse-server worker``, which has no HTTP API of its own to carry them.
    Raises ``OSError`` when the port is taken."""
    start_http_server(port, addr=host)
