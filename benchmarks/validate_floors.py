"""The floors of the online check-in: what Postgres alone, and asyncpg alone, do per second when
each admission is one statement — measured in the same run as ``validate`` so that its rows can
be read as a fraction of them.

One statement per admission is ``SELECT gatehouse_bench_admit(ticket)``: a PL/pgSQL function
made for the benchmark (in the benchmark's throw-away database only) that does what the
server's check-in does in Postgres for one verdict — lock the ticket and read its facts and
admitted scans (``gatehouse_checkin_ticket``, the server's own function), then for an active
ticket write the admitted scan, the outbox event, the new status and the history row, and for
one already checked in write the refused scan. It runs as the application role with the
tenant set, so row-level security applies as it does to the server; each call is its own
transaction (autocommit). What it leaves out is everything outside Postgres: HTTP, the token,
the rate limit, reading the code, the decision in Python, the access log and the metrics.

* *Postgres alone*: ``pgbench`` (C, prepared statements) with 64 clients on 2 threads.
* *asyncpg alone*: 64 asyncpg connections driven by one Python process on uvloop, each calling
  the function in a loop: the cost of the driver and the event loop, without the web app.

Latencies are per call; both are measured over a window inside the run, after every
connection is open, with the CPU of the Postgres backends over the same window.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import uvloop
from sqlalchemy.engine import make_url

from benchmarks.server_harness import (
    APP_ROLE,
    BenchDatabase,
    CpuMeter,
    CpuUse,
    EventHandle,
    postgres_backends,
)

_FUNCTION = """
CREATE TABLE bench_ids (n integer PRIMARY KEY, id uuid NOT NULL);
CREATE SEQUENCE bench_next;
CREATE FUNCTION gatehouse_bench_admit(ticket uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    t record;
    now timestamptz := clock_timestamp();
    scan uuid := gen_random_uuid();
BEGIN
    SELECT * INTO t FROM gatehouse_checkin_ticket(ticket);
    IF t.id IS NULL THEN
        RAISE EXCEPTION 'the floor ran out of fresh tickets (raise floor_pool)';
    END IF;
    IF t.status = 'active' THEN
        INSERT INTO ticket_scans (id, tenant_id, ticket_id, event_id, scanned_by, gate,
                                  direction, result, scanned_at, received_at,
                                  code_secret_version)
        VALUES (scan, t.tenant_id, t.id, t.event_id, 'bench', 'A', 'entry', 'admitted', now,
                now, t.secret_version);
        UPDATE tickets SET status = 'checked_in', updated_at = now WHERE id = t.id;
        INSERT INTO ticket_state_transitions (id, tenant_id, ticket_id, kind, from_status,
                                              to_status, secret_version, actor, details,
                                              occurred_at)
        VALUES (gen_random_uuid(), t.tenant_id, t.id, 'checked_in', 'active', 'checked_in',
                t.secret_version, 'bench', jsonb_build_object('scan_id', scan), now);
        INSERT INTO outbox (id, tenant_id, routing_key, ticket_id, payload, created_at)
        VALUES (gen_random_uuid(), t.tenant_id, 'ticket.checked_in', t.id,
                jsonb_build_object('ticket_id', t.id, 'scan_id', scan), now);
        RETURN true;
    END IF;
    INSERT INTO ticket_scans (id, tenant_id, ticket_id, event_id, scanned_by, gate, direction,
                              result, reason, scanned_at, received_at, code_secret_version)
    VALUES (scan, t.tenant_id, t.id, t.event_id, 'bench', 'A', 'entry', 'rejected',
            'already_checked_in', now, now, t.secret_version);
    RETURN false;
END $$;
GRANT SELECT ON bench_ids TO {role};
GRANT USAGE ON SEQUENCE bench_next TO {role};
GRANT EXECUTE ON FUNCTION gatehouse_bench_admit(uuid) TO {role};
"""

# pgbench: the next fresh ticket (a sequence hands each call its own: in a scalar subquery, so
# it is drawn once, not per row looked at), or a random used one.
_FRESH_SCRIPT = (
    "SELECT gatehouse_bench_admit(id) FROM bench_ids WHERE n = (SELECT nextval('bench_next'));\n"
)
_USED_SCRIPT = (
    "\\set n random(1, :used)\nSELECT gatehouse_bench_admit(id) FROM bench_ids WHERE n = :n;\n"
)


@dataclass(frozen=True, slots=True)
class FloorResult:
    """One floor row: calls answered in the measured window and their latencies."""

    connections: int
    duration_s: float
    calls: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    cpu: CpuUse

    @property
    def per_s(self) -> float:
        return self.calls / self.duration_s if self.duration_s else 0.0


def pgbench_binary() -> str | None:
    return shutil.which("pgbench")


async def _install(db: BenchDatabase, ticket_ids: Sequence[uuid.UUID]) -> None:
    connection = await asyncpg.connect(db.owner_dsn)
    try:
        await connection.execute(_FUNCTION.replace("{role}", APP_ROLE))
        await connection.copy_records_to_table(
            "bench_ids", records=list(enumerate(ticket_ids, start=1)), columns=["n", "id"]
        )
        await connection.execute("ANALYZE bench_ids")
    finally:
        await connection.close()


def install(db: BenchDatabase, ticket_ids: Sequence[uuid.UUID]) -> None:
    """The benchmark's function and the numbered fresh tickets it admits (as the owner)."""
    asyncio.run(_install(db, ticket_ids))


async def _handed_out(db: BenchDatabase) -> int:
    connection = await asyncpg.connect(db.owner_dsn)
    try:
        return int(await connection.fetchval("SELECT last_value FROM bench_next"))
    finally:
        await connection.close()


def handed_out(db: BenchDatabase) -> int:
    """How many fresh tickets pgbench's fresh run took (each admitted): the used ones."""
    return asyncio.run(_handed_out(db))


def _percentiles(latencies_ms: list[float]) -> tuple[float, float, float]:
    if len(latencies_ms) < 2:
        only = latencies_ms[0] if latencies_ms else 0.0
        return only, only, only
    cuts = statistics.quantiles(latencies_ms, n=100, method="inclusive")
    return cuts[49], cuts[89], cuts[98]


def _app_connection_env(
    db: BenchDatabase, tenant_id: uuid.UUID
) -> tuple[list[str], dict[str, str]]:
    """pgbench's connection arguments as the application role, the tenant set for the session
    (each call is its own transaction, so a per-session setting is what SET LOCAL would be)."""
    url = make_url(db.app_url)
    args = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", APP_ROLE]
    env = {**os.environ, "PGOPTIONS": f"-c gatehouse.tenant_id={tenant_id}"}
    if url.password:
        env["PGPASSWORD"] = url.password
    return args, env


def pgbench_floor(
    db: BenchDatabase,
    event: EventHandle,
    *,
    fresh: bool,
    used: int,
    connections: int,
    duration_s: float,
    settle_s: float = 1.0,
) -> FloorResult:
    """``pgbench`` at ``connections`` clients calling the function; measured from ``settle_s``
    after the start (every connection open) for ``duration_s``."""
    binary = pgbench_binary()
    assert binary is not None
    args, env = _app_connection_env(db, event.tenant_id)
    with tempfile.TemporaryDirectory(prefix="gatehouse-pgbench-") as tmp:
        script = Path(tmp) / "admit.sql"
        script.write_text(_FRESH_SCRIPT if fresh else _USED_SCRIPT)
        command = [
            binary,
            *args,
            "-n",  # no vacuum of pgbench's own tables (there are none)
            "-M",
            "prepared",
            "-c",
            str(connections),
            "-j",
            "2",
            "-T",
            str(int(settle_s + duration_s + 1)),
            "-D",
            f"used={max(used, 1)}",
            "-f",
            str(script),
            "-l",
            "--log-prefix",
            str(Path(tmp) / "tx"),
            db.name,
        ]
        process = subprocess.Popen(  # noqa: S603 - pgbench found on PATH, fixed arguments
            command, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        time.sleep(settle_s)
        meter = CpuMeter({"postgres": lambda: postgres_backends(db)})
        window_start = time.time()
        meter.start()
        time.sleep(duration_s)
        cpu = meter.stop()
        window_end = time.time()
        out, err = process.communicate(timeout=duration_s + 60)
        if process.returncode != 0:
            raise RuntimeError(f"pgbench failed ({process.returncode}): {err.strip() or out}")
        latencies = []
        for log in Path(tmp).glob("tx*"):
            for line in log.read_text().splitlines():
                # client_id transaction_no time_us script_no epoch_s epoch_us
                fields = line.split()
                if len(fields) < 6:
                    continue
                done = int(fields[4]) + int(fields[5]) / 1e6
                if window_start <= done < window_end:
                    latencies.append(int(fields[2]) / 1000)
    p50, p90, p99 = _percentiles(latencies)
    return FloorResult(connections, window_end - window_start, len(latencies), p50, p90, p99, cpu)


async def _asyncpg_floor(
    db: BenchDatabase,
    event: EventHandle,
    tickets: Sequence[uuid.UUID],
    connections: int,
    duration_s: float,
) -> FloorResult:
    url = make_url(db.app_url)
    dsn = f"postgresql://{APP_ROLE}@{url.host or '127.0.0.1'}:{url.port or 5432}/{db.name}"
    settings = {"gatehouse.tenant_id": str(event.tenant_id)}
    pool = [
        await asyncpg.connect(dsn, server_settings=settings, password=url.password)
        for _ in range(connections)
    ]
    statement = "SELECT gatehouse_bench_admit($1)"
    backends = []
    for connection in pool:
        await connection.prepare(statement)  # asyncpg caches it: as pgbench's -M prepared
        backends.append(int(await connection.fetchval("SELECT pg_backend_pid()")))
    queue = iter(tickets)
    latencies: list[float] = []
    stop_at = 0.0

    async def client(connection: asyncpg.Connection) -> None:
        for ticket in queue:
            started = time.perf_counter()
            if started >= stop_at:
                return
            await connection.fetchval(statement, ticket)
            latencies.append((time.perf_counter() - started) * 1000)

    # The backends are known (no query from inside the loop); the client is this process.
    meter = CpuMeter({"postgres": lambda: backends, "client": lambda: [os.getpid()]})
    meter.start()
    started = time.perf_counter()
    stop_at = started + duration_s
    try:
        await asyncio.gather(*(client(c) for c in pool))
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
    finally:
        for connection in pool:
            await connection.close()
    p50, p90, p99 = _percentiles(latencies)
    return FloorResult(connections, elapsed, len(latencies), p50, p90, p99, cpu)


def asyncpg_floor(
    db: BenchDatabase,
    event: EventHandle,
    tickets: Sequence[uuid.UUID],
    *,
    connections: int,
    duration_s: float,
) -> FloorResult:
    """64 asyncpg connections of this process calling the function for ``tickets`` in turn
    (fresh ones: each admitted), for ``duration_s`` or until the tickets run out."""
    return uvloop.run(_asyncpg_floor(db, event, tickets, connections, duration_s))
