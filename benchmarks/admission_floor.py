"""The database's floor under online check-in: Postgres alone doing what a verdict writes.

    ./dev bench admission_floor     (or: python -m benchmarks.admission_floor [--quick])

No HTTP and no server code: asyncpg connections as the application role (row-level security
on, the tenant set in each transaction) send the statements of ``sync_server.domain.checkin.
queries`` that a verdict sends today, and the same work set-based for a group of verdicts in one
transaction (what group commit / micro-batching would send). Each row reports admissions (or
refusals) a second and the CPU of the Postgres backends per verdict, the column to compare with
``validate``'s "Postgres CPU ms/verdict":

* *one transaction per verdict*: BEGIN, tenant, ``gatehouse_checkin_ticket`` (lock and facts),
  ``ADMIT`` (or ``INSERT_SCAN`` for a refusal), COMMIT — the request's own ``gatehouse_enter``
  and the pool's ping aside;
* *k verdicts per transaction*: BEGIN, tenant, ``LOCK_TICKETS`` for the k tickets in id order,
  ``ADMITTED_SCANS`` (refusals: their history), ``INSERT_SCANS`` and, for admissions,
  ``SET_STATUS``, ``HISTORY`` and ``EVENTS`` for all k, COMMIT.

Fresh tickets are admitted; the refusal rows present the tickets admitted by the first row.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from benchmarks.environment import header
from benchmarks.server_harness import (
    BenchDatabase,
    CpuMeter,
    Secrets,
    Seeder,
    Server,
    free_port,
    fresh_database,
    gatehouse_serve_command,
    quiet_note,
    server_env,
    wait_for_quiet,
)
from sync_server.domain.checkin import queries as q


@dataclass(frozen=True, slots=True)
class Plan:
    duration_s: float
    connections: tuple[int, ...]
    groups: tuple[int, ...]  # verdicts per transaction (1: one transaction per verdict)
    tickets: int


FULL = Plan(duration_s=8, connections=(1, 64), groups=(1, 8, 32), tickets=120_000)
QUICK = Plan(duration_s=3, connections=(1, 64), groups=(1, 8, 32), tickets=40_000)


@dataclass(frozen=True, slots=True)
class Ids:
    tenant: uuid.UUID
    event: uuid.UUID
    device: uuid.UUID


@dataclass(frozen=True, slots=True)
class Row:
    kind: str
    group: int
    connections: int
    verdicts: int
    wall_s: float
    postgres_cpu_s: float
    machine_busy: float

    @property
    def per_s(self) -> float:
        return self.verdicts / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_ms(self) -> float:
        """Postgres CPU per verdict, ms."""
        return 1000 * self.postgres_cpu_s / self.verdicts if self.verdicts else 0.0


def _scan(ids: Ids, ticket: uuid.UUID, admit: bool, now: datetime) -> tuple[Any, ...]:
    """An online scan's columns in ``NewScan.online_columns`` order."""
    return (
        uuid.uuid4(),
        ids.tenant,
        ticket,
        ids.event,
        ids.device,
        "bench-scanner",
        "A",
        "entry",
        "admitted" if admit else "rejected",
        None if admit else "already_checked_in",
        now,
        0,
    )


async def _one(db: Any, ids: Ids, tickets: Sequence[uuid.UUID], admit: bool) -> None:
    now = datetime.now(UTC)
    (ticket,) = tickets
    async with db.transaction():
        await db.execute("SELECT set_config('gatehouse.tenant_id', $1, true)", str(ids.tenant))
        await db.fetchrow(q.CHECKIN_TICKET, ticket)
        if admit:
            await db.fetchval(
                q.ADMIT,
                *_scan(ids, ticket, True, now),
                uuid.uuid4(),
                "ticket.checked_in",
                True,
                uuid.uuid4(),
                "{}",
                "{}",
            )
        else:
            await db.fetchval(q.INSERT_SCAN, *_scan(ids, ticket, False, now))


async def _group(db: Any, ids: Ids, tickets: Sequence[uuid.UUID], admit: bool) -> None:
    now = datetime.now(UTC)
    k = len(tickets)
    async with db.transaction():
        await db.execute("SELECT set_config('gatehouse.tenant_id', $1, true)", str(ids.tenant))
        await db.fetch(q.LOCK_TICKETS, sorted(tickets))
        if not admit:
            await db.fetch(q.ADMITTED_SCANS, list(tickets))
        online = [_scan(ids, t, admit, now) for t in tickets]
        extra = {
            "device_scanned_at": None,
            "clock_offset_ms": 0,
            "offline": False,
            "device_result": None,
            "device_reason": None,
            "server_reason": None,
            "received_at": now,
        }
        order = (*(c for c in q.NewScan.__dataclass_fields__ if c not in extra),)
        columns = {c: [row[i] for row in online] for i, c in enumerate(order)}
        columns.update({c: [v] * k for c, v in extra.items()})
        await db.fetch(q.INSERT_SCANS, *(columns[c] for c in q.NewScan.__dataclass_fields__))
        if admit:
            await db.execute(q.SET_STATUS, list(tickets), "checked_in", now)
            await db.execute(
                q.HISTORY,
                [uuid.uuid4() for _ in tickets],
                [ids.tenant] * k,
                list(tickets),
                ["checked_in"] * k,
                ["active"] * k,
                ["checked_in"] * k,
                [0] * k,
                ["bench-scanner"] * k,
                ["{}"] * k,
                [now] * k,
            )
            await db.execute(
                q.EVENTS,
                [uuid.uuid4() for _ in tickets],
                [ids.tenant] * k,
                ["ticket.checked_in"] * k,
                list(tickets),
                ["{}"] * k,
                [now] * k,
            )


async def _load(
    db: BenchDatabase,
    ids: Ids,
    tickets: Iterator[uuid.UUID],
    *,
    admit: bool,
    group: int,
    connections: int,
    duration_s: float,
) -> Row:
    dsn = db.app_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    pool = [await asyncpg.connect(dsn) for _ in range(connections)]
    try:
        pids = [int(await c.fetchval("SELECT pg_backend_pid()")) for c in pool]
        step = _one if group == 1 else _group
        done = 0
        deadline = 0.0

        async def client(db: Any) -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                chunk = list(itertools.islice(tickets, group))
                if len(chunk) < group:
                    raise RuntimeError("ran out of tickets: raise Plan.tickets")
                await step(db, ids, chunk, admit)
                done += group

        meter = CpuMeter({"postgres": lambda: pids})
        meter.start()
        deadline = time.perf_counter() + duration_s
        await asyncio.gather(*(client(c) for c in pool))
        cpu = meter.stop()
    finally:
        for c in pool:
            await c.close()
    return Row(
        "admitted" if admit else "refused (already checked in)",
        group,
        connections,
        done,
        cpu.wall_s,
        cpu.seconds.get("postgres", 0.0),
        cpu.machine_busy,
    )


def measure(plan: Plan, quick: bool) -> tuple[list[Row], float]:
    """The plan's rows (admissions first, then refusals) and how busy the machine was."""
    keys = Secrets()
    with fresh_database("admission_floor") as db:
        seeder = Seeder(db, keys)
        seeder.create_tenant()
        port = free_port()
        with Server(gatehouse_serve_command(port, workers=1), port, server_env(db, keys)):
            event = seeder.create_event(port, "Admission floor")
            device = seeder.enroll_device(port, event, gate="A", name="floor")
        ids = Ids(event.tenant_id, event.event_id, device.device_id)
        fresh = iter(seeder.insert_tickets(event, plan.tickets))
        busy = wait_for_quiet(max_wait_s=15 if quick else 180)
        rows: list[Row] = []
        admitted: list[uuid.UUID] = []

        def taken(source: Iterator[uuid.UUID]) -> Iterator[uuid.UUID]:
            for ticket in source:
                admitted.append(ticket)
                yield ticket

        for admit in (True, False):
            for group in plan.groups:
                for connections in plan.connections:
                    if group > 1 and connections == 1:
                        continue  # a group gathers concurrent verdicts: none from one client
                    source = taken(fresh) if admit else itertools.cycle(list(admitted))
                    rows.append(
                        asyncio.run(
                            _load(
                                db,
                                ids,
                                source,
                                admit=admit,
                                group=group,
                                connections=connections,
                                duration_s=plan.duration_s,
                            )
                        )
                    )
    return rows, busy


def _table(rows: list[Row]) -> list[str]:
    lines = [
        "| verdict | verdicts per transaction | connections | verdicts/s "
        "| Postgres CPU ms/verdict | machine busy |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.kind} | {r.group} | {r.connections} | {r.per_s:,.0f} | {r.cpu_ms:.3f} "
            f"| {r.machine_busy:.0%} |"
        )
    return lines


def run(quick: bool = False) -> str:
    plan = QUICK if quick else FULL
    rows, busy = measure(plan, quick)
    return "\n".join(
        [
            "## Postgres alone under check-in (the validate floor)",
            "",
            header("./dev bench admission_floor", "asyncpg"),
            "",
            f"Everything on one machine with {os.cpu_count()} cores shared by PostgreSQL and "
            "the load generator (this process); over 127.0.0.1. asyncpg connections as the "
            "application role (row-level security on), no HTTP and no server code, "
            f"{plan.duration_s:g} s per row: one transaction per verdict sends what "
            "`POST /v1/validate` sends after its `gatehouse_enter` (BEGIN, tenant, "
            "`gatehouse_checkin_ticket`, `ADMIT` or `INSERT_SCAN`, COMMIT); k verdicts per "
            "transaction send the same work set-based (lock in id order, `unnest` inserts). "
            "Refusals present the tickets the admission rows admitted." + quiet_note(busy),
            "",
            *_table(rows),
        ]
    )


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
