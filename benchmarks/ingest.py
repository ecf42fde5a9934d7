"""Offline batch upload: how many offline scans per second ``POST /v1/sync/scans`` records.

    ./dev bench ingest            (or: python -m benchmarks.ingest [--quick])

A fresh database and a real ``gatehouse-server serve`` with 2 workers. Every scan is an admitted
entry of a distinct fresh ticket (as after a gate ran offline), in batches of 1000 (the most the
endpoint takes), uploaded by 1, 2 and 4 enrolled scanners at once, each over its own keep-alive
connection, one batch after another. Bodies are encoded beforehand; the clock runs from the first
request to the last answer. The floor writes the same number of ``ticket_scans`` rows straight
through asyncpg as the owner: what Postgres on this machine takes without the server.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from benchmarks.environment import header
from benchmarks.server_harness import (
    HOST,
    SERVER_WORKERS,
    CpuMeter,
    DeviceHandle,
    EventHandle,
    Secrets,
    Seeder,
    Server,
    free_port,
    fresh_database,
    gatehouse_serve_command,
    machine_note,
    postgres_backends,
    quiet_note,
    server_env,
    target_verdict,
    wait_for_quiet,
)
from shared.domain import Direction, VerdictResult
from shared.ids import new_id
from shared.wire import MAX_SCAN_BATCH, ScanBatch, ScanBatchOutcome, ScanUpload

TARGET_RATE = 20_000.0  # offline scans/s (docs/benchmarks.md "Targets")
PATH = "/v1/sync/scans"


@dataclass(frozen=True, slots=True)
class Plan:
    batches: int
    batch_size: int
    uploaders: tuple[int, ...]
    #: No uploader starts a new batch after this long, so a slow server cannot stretch a run.
    time_limit_s: float

    @property
    def scans(self) -> int:
        return self.batches * self.batch_size


FULL = Plan(batches=20, batch_size=MAX_SCAN_BATCH, uploaders=(1, 2, 4), time_limit_s=40)
QUICK = Plan(batches=4, batch_size=MAX_SCAN_BATCH, uploaders=(1, 2), time_limit_s=15)
WARM_UP_SCANS = 200


@dataclass(slots=True)
class Upload:
    label: str
    scans: int
    seconds: float
    batch_ms: list[float]
    outcomes: Counter[str]
    batches_planned: int = 0
    server_cpu_s: float | None = None
    postgres_cpu_s: float | None = None

    @property
    def rate(self) -> float:
        return self.scans / self.seconds


def _log(message: str) -> None:
    print(f"    {message}", file=sys.stderr, flush=True)


def _body(codes: list[str], device: DeviceHandle, scanned_at: datetime) -> bytes:
    return msgspec.json.encode(
        ScanBatch(
            scans=[
                ScanUpload(
                    scan_id=new_id(),
                    code=code,
                    gate=device.gate,
                    direction=Direction.ENTRY,
                    scanned_at=scanned_at + timedelta(milliseconds=i),
                    clock_offset_ms=-120,
                    device_result=VerdictResult.ADMITTED,
                    offline=True,
                )
                for i, code in enumerate(codes)
            ]
        )
    )


def _upload(port: int, devices: list[DeviceHandle], codes: list[str], plan: Plan) -> Upload:
    """Upload ``codes`` in batches spread over ``len(devices)`` concurrent uploaders."""
    scanned_at = datetime.now(UTC) - timedelta(minutes=10)
    uploaders = len(devices)
    work: list[list[bytes]] = [[] for _ in devices]
    for n, start in enumerate(range(0, len(codes), plan.batch_size)):
        device = devices[n % uploaders]
        work[n % uploaders].append(
            _body(codes[start : start + plan.batch_size], device, scanned_at)
        )
    answers: list[list[tuple[int, bytes, float]]] = [[] for _ in devices]
    barrier = threading.Barrier(uploaders + 1)

    def uploader(index: int) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=300)
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {devices[index].token}",
        }
        connection.connect()
        barrier.wait()
        deadline = time.perf_counter() + plan.time_limit_s
        for body in work[index]:
            if time.perf_counter() > deadline:
                break
            started = time.perf_counter()
            connection.request("POST", PATH, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            answers[index].append((response.status, payload, time.perf_counter() - started))
        connection.close()

    threads = [threading.Thread(target=uploader, args=(i,)) for i in range(uploaders)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started

    outcomes: Counter[str] = Counter()
    batch_ms = []
    for status, payload, elapsed in (a for per in answers for a in per):
        batch_ms.append(elapsed * 1000)
        if status != 200:
            outcomes[f"HTTP {status}"] += 1
            _log(f"upload answered {status}: {payload[:300]!r}")
            continue
        for outcome in msgspec.json.decode(payload, type=ScanBatchOutcome).outcomes:
            if outcome.conflict_of is not None:
                outcomes["conflict"] += 1
            elif outcome.server_reason is not None:
                outcomes[f"admitted, server: {outcome.server_reason}"] += 1
            else:
                outcomes[str(outcome.result)] += 1
    label = f"{uploaders} uploader{'s' if uploaders > 1 else ''}"
    done = sum(len(per) for per in answers)
    scans = sum(min(plan.batch_size, len(codes) - n * plan.batch_size) for n in range(done))
    planned = -(-len(codes) // plan.batch_size)
    return Upload(label, scans, seconds, batch_ms, outcomes, batches_planned=planned)


def _rows(
    event: EventHandle, device: DeviceHandle, tickets: list[uuid.UUID]
) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC)
    scanned = now - timedelta(minutes=10)
    actor = f"device:{device.device_id}"
    return [
        (
            new_id(),
            event.tenant_id,
            ticket_id,
            event.event_id,
            device.device_id,
            actor,
            device.gate,
            "entry",
            "admitted",
            scanned + timedelta(milliseconds=i),
            now,
            scanned + timedelta(milliseconds=i - 120),
            -120,
            True,
            "admitted",
            0,
        )
        for i, ticket_id in enumerate(tickets)
    ]


SCAN_COLUMNS = [
    "id",
    "tenant_id",
    "ticket_id",
    "event_id",
    "device_id",
    "scanned_by",
    "gate",
    "direction",
    "result",
    "scanned_at",
    "received_at",
    "device_scanned_at",
    "clock_offset_ms",
    "offline",
    "device_result",
    "code_secret_version",
]


HISTORY_COLUMNS = [
    "id",
    "tenant_id",
    "ticket_id",
    "kind",
    "from_status",
    "to_status",
    "secret_version",
    "actor",
    "details",
    "occurred_at",
]
OUTBOX_COLUMNS = ["id", "tenant_id", "routing_key", "ticket_id", "payload"]
FLOOR_KINDS = (
    ("floor: asyncpg executemany INSERT (scan rows)", "insert"),
    ("floor: asyncpg COPY (scan rows)", "copy"),
    ("floor: asyncpg, all a first admission writes (scan, history, outbox, ticket)", "all"),
)


async def _write_batch(
    connection: Any, kind: str, batch: list[tuple[Any, ...]], insert: str, actor: str
) -> None:
    if kind == "insert":
        await connection.executemany(insert, batch)
        return
    await connection.copy_records_to_table("ticket_scans", records=batch, columns=SCAN_COLUMNS)
    if kind != "all":
        return
    # What the server adds for each first admission: the ticket's new status, a history row
    # and a CloudEvents outbox row (as sync_server.domain.tickets.services.change_ticket).
    tenant_id, ticket_ids, now = batch[0][1], [row[2] for row in batch], batch[0][10]
    await connection.execute(
        "UPDATE tickets SET status = 'checked_in', updated_at = $2 WHERE id = ANY($1::uuid[])",
        ticket_ids,
        now,
    )
    details = json.dumps({"gate": batch[0][6], "offline": True})
    await connection.copy_records_to_table(
        "ticket_state_transitions",
        records=[
            (new_id(), tenant_id, t, "checked_in", "active", "checked_in", 0, actor, details, now)
            for t in ticket_ids
        ],
        columns=HISTORY_COLUMNS,
    )
    outbox = []
    for ticket_id in ticket_ids:
        event_id = new_id()
        payload = {
            "specversion": "1.0",
            "id": str(event_id),
            "source": f"/gatehouse/tenants/{tenant_id}",
            "type": "dev.gatehouse.ticket.checked_in",
            "time": now.isoformat(),
            "subject": f"tickets/{ticket_id}",
            "tenantid": str(tenant_id),
            "datacontenttype": "application/json",
            "data": {"ticket_id": str(ticket_id), "status": "checked_in", "actor": actor},
        }
        outbox.append((event_id, tenant_id, "ticket.checked_in", ticket_id, json.dumps(payload)))
    await connection.copy_records_to_table("outbox", records=outbox, columns=OUTBOX_COLUMNS)


async def _floor(
    dsn: str, event: EventHandle, device: DeviceHandle, tickets: list[uuid.UUID], plan: Plan
) -> list[Upload]:
    """The same number of scans written by asyncpg as the owner, one transaction per batch."""
    results = []
    connection = await asyncpg.connect(dsn)
    try:
        columns = ", ".join(SCAN_COLUMNS)
        values = ", ".join(f"${i + 1}" for i in range(len(SCAN_COLUMNS)))
        insert = f"INSERT INTO ticket_scans ({columns}) VALUES ({values})"  # noqa: S608
        actor = f"device:{device.device_id}"
        for n, (label, kind) in enumerate(FLOOR_KINDS):
            rows = _rows(event, device, tickets[n * plan.scans : (n + 1) * plan.scans])
            batch_ms = []
            backend = connection.get_server_pid()
            meter = CpuMeter({"postgres": lambda pid=backend: [pid]})
            meter.start()
            started = time.perf_counter()
            for start in range(0, len(rows), plan.batch_size):
                t0 = time.perf_counter()
                async with connection.transaction():
                    await _write_batch(
                        connection, kind, rows[start : start + plan.batch_size], insert, actor
                    )
                batch_ms.append((time.perf_counter() - t0) * 1000)
            seconds = time.perf_counter() - started
            cpu = meter.stop()
            results.append(
                Upload(
                    label,
                    len(rows),
                    seconds,
                    batch_ms,
                    Counter(),
                    postgres_cpu_s=cpu.seconds["postgres"],
                )
            )
    finally:
        await connection.close()
    return results


def _measure(plan: Plan) -> tuple[list[Upload], float]:
    keys = Secrets()
    results: list[Upload] = []
    with fresh_database("ingest") as db:
        seeder = Seeder(db, keys)
        seeder.create_tenant()
        port = free_port()
        with Server(gatehouse_serve_command(port), port, server_env(db, keys)) as server:
            event = seeder.create_event(port, "Ingest benchmark")
            devices = [
                seeder.enroll_device(port, event, gate=gate, name=f"bench-scanner-{gate}")
                for gate in "ABCD"[: max(plan.uploaders)]
            ]
            uploaded = WARM_UP_SCANS + plan.scans * len(plan.uploaders)
            floors = len(FLOOR_KINDS) * plan.scans
            _log(f"seeding {uploaded + floors:,} tickets, minting {uploaded:,} codes")
            codes = seeder.mint_codes(event, seeder.insert_tickets(event, uploaded))
            floor_tickets = seeder.insert_tickets(event, floors)
            busy = wait_for_quiet()
            _upload(port, devices[:1], codes[:WARM_UP_SCANS], plan)
            offset = WARM_UP_SCANS
            for count in plan.uploaders:
                _log(f"{count} uploaders: {plan.batches} batches of {plan.batch_size}")
                meter = CpuMeter(
                    {"server": server.worker_pids, "postgres": lambda: postgres_backends(db)}
                )
                meter.start()
                result = _upload(port, devices[:count], codes[offset : offset + plan.scans], plan)
                cpu = meter.stop()
                result.server_cpu_s = cpu.seconds["server"]
                result.postgres_cpu_s = cpu.seconds["postgres"]
                offset += plan.scans
                results.append(result)
                if any(k.startswith("HTTP 5") for k in result.outcomes):
                    _log("server log (tail):\n" + server.log_tail())
        _log("floor: asyncpg")
        results += asyncio.run(_floor(db.owner_dsn, event, devices[0], floor_tickets, plan))
    return results, busy


def _micros(seconds: float | None, scans: int) -> str:
    return "–" if seconds is None else f"{1e6 * seconds / scans:,.0f}"


def _outcome_text(outcomes: Counter[str]) -> str:
    if not outcomes:
        return "–"
    return ", ".join(f"{n:,} {what}" for what, n in outcomes.most_common())


def run(quick: bool = False) -> str:
    plan = QUICK if quick else FULL
    results, busy = _measure(plan)
    table = [
        "| uploader(s) | scans | seconds | scans/s | per batch p50 ms | per batch max ms | "
        "server CPU µs/scan | Postgres CPU µs/scan | outcomes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        cut = len(r.batch_ms) < r.batches_planned
        stopped = f" (time limit: {len(r.batch_ms)} of {r.batches_planned} batches)" if cut else ""
        table.append(
            f"| {r.label}{stopped} | {r.scans:,} | {r.seconds:.2f} | {r.rate:,.0f} | "
            f"{statistics.median(r.batch_ms):.0f} | {max(r.batch_ms):.0f} | "
            f"{_micros(r.server_cpu_s, r.scans)} | {_micros(r.postgres_cpu_s, r.scans)} | "
            f"{_outcome_text(r.outcomes)} |"
        )
    server_rows = [r for r in results if not r.label.startswith("floor")]
    best = max(server_rows, key=lambda r: r.rate)
    return "\n".join(
        [
            "## Offline scan upload (POST /v1/sync/scans)",
            "",
            header("./dev bench ingest", "litestar", "uvicorn", "SQLAlchemy", "asyncpg", "msgspec"),
            "",
            f"{machine_note(SERVER_WORKERS)} Each row: {plan.batches} batches of "
            f"{plan.batch_size:,} offline admitted entries of distinct fresh tickets "
            f"({plan.scans:,} scans), JSON, uploaded over keep-alive connections by that many "
            "enrolled scanners at once (batches dealt round-robin), after a warm-up batch; no "
            f"uploader starts a batch after {plan.time_limit_s:g} s (a row so cut says so). The "
            "floor rows write the same number of `ticket_scans` rows as the table owner with "
            f"asyncpg, one transaction per {plan.batch_size:,} rows, from one connection; the "
            "last floor also writes what the server writes for each first admission (ticket "
            "status, history row, outbox event), set-based. CPU "
            "columns: the server's worker processes and the Postgres backends of its pool (for "
            "the floor, the one backend) during the row, divided by the scans." + quiet_note(busy),
            "",
            *table,
            "",
            f"Target (batch ingest ≥ {TARGET_RATE:,.0f} offline scans/s): "
            + target_verdict(best.rate, TARGET_RATE, "scans/s", higher_is_better=True)
            + f", best row {best.label}.",
        ]
    )


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
