"""Online check-in under load: ``POST /v1/validate`` at 1, 16 and 64 concurrent clients.

    ./dev bench validate            (or: python -m benchmarks.validate [--quick])

A fresh database, a real ``gatehouse-server serve`` with 2 workers, one enrolled scanner. The
tickets are inserted in bulk and their codes minted while the server is idle (before the first
row, and between rows when the rate so far says more are needed); wrk (see ``validate.lua``)
sends a different code with every request, so a fresh ticket is really fresh (admitted, 200).
Then the codes used so far are sent again (already checked in, 409: a verdict too). The floors,
in the same run: a Litestar app that only decodes the body and answers a small JSON
(``trivial_app.py``), served the same way under the same load; and Postgres alone and asyncpg
alone doing one admission per statement (``validate_floors.py``).
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.environment import header
from benchmarks.server_harness import (
    SERVER_WORKERS,
    BenchDatabase,
    CpuMeter,
    CpuUse,
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
    uvicorn_command,
    wait_for_quiet,
)
from benchmarks.validate_floors import (
    FloorResult,
    asyncpg_floor,
    handed_out,
    install,
    pgbench_floor,
)
from benchmarks.wrk_load import WrkResult, run_wrk, wrk_version

TARGET_RATE = 1500.0  # verdicts/s at 64 clients (docs/benchmarks.md "Targets")
TARGET_P99_MS = 50.0
TARGET_CLIENTS = 64
# The database floors' connections: on 2 cores more backends only queue for the CPU (the
# server's own pool is up to 25 a worker, and most of them wait too).
FLOOR_CONNECTIONS = 16


@dataclass(frozen=True, slots=True)
class Plan:
    duration_s: float
    warm_up_s: float
    levels: tuple[int, ...]
    pool: int  # fresh tickets minted before the first row (more are minted when needed)
    floor_pool: int  # fresh tickets for the Postgres and asyncpg floors (no codes needed)


FULL = Plan(duration_s=10, warm_up_s=3, levels=(1, 16, 64), pool=40_000, floor_pool=90_000)
QUICK = Plan(duration_s=3, warm_up_s=1, levels=(1, 16, 64), pool=10_000, floor_pool=30_000)


@dataclass(frozen=True, slots=True)
class Row:
    series: str
    result: WrkResult
    cpu: CpuUse


def _measured(series: str, server: Server, db: BenchDatabase | None, **wrk_args: object) -> Row:
    """One wrk run with the CPU the server workers and Postgres backends spent meanwhile."""
    groups = {"server": server.worker_pids}
    if db is not None:
        groups["postgres"] = lambda: postgres_backends(db)
    meter = CpuMeter(groups)
    meter.start()
    result = run_wrk(server.base, **wrk_args)  # type: ignore[arg-type]
    row = Row(series, result, meter.stop())
    _report_oddities(result, server)
    return row


def _log(message: str) -> None:
    print(f"    {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class FloorRow:
    series: str
    result: FloorResult


def _measure_db_floors(
    plan: Plan, db: BenchDatabase, seeder: Seeder, event: EventHandle
) -> list[FloorRow]:
    """Postgres alone and asyncpg alone, on tickets of their own, the server stopped
    (``validate_floors``)."""
    tickets = seeder.insert_tickets(event, plan.floor_pool)
    # pgbench (C) is the faster client: two thirds for it, the rest for asyncpg.
    split = 2 * len(tickets) // 3
    install(db, tickets[:split])
    rows = []
    _log(f"floor: Postgres alone (pgbench), {FLOOR_CONNECTIONS} clients, fresh tickets")
    fresh = pgbench_floor(
        db, event, fresh=True, used=0, connections=FLOOR_CONNECTIONS, duration_s=plan.duration_s
    )
    rows.append(FloorRow("Postgres alone (pgbench): fresh tickets", fresh))
    used = handed_out(db)
    _log(f"floor: Postgres alone (pgbench), {FLOOR_CONNECTIONS} clients, {used:,} used tickets")
    rows.append(
        FloorRow(
            "Postgres alone (pgbench): already used",
            pgbench_floor(
                db,
                event,
                fresh=False,
                used=used,
                connections=FLOOR_CONNECTIONS,
                duration_s=plan.duration_s,
            ),
        )
    )
    _log(f"floor: asyncpg alone, {FLOOR_CONNECTIONS} connections, fresh tickets")
    rows.append(
        FloorRow(
            "asyncpg alone (one Python process): fresh tickets",
            asyncpg_floor(
                db,
                event,
                tickets[split:],
                connections=FLOOR_CONNECTIONS,
                duration_s=plan.duration_s,
            ),
        )
    )
    return rows


def _measure_gatehouse(
    plan: Plan, workdir: Path
) -> tuple[list[Row], list[FloorRow], dict[str, int]]:
    keys = Secrets()
    rows: list[Row] = []
    with fresh_database("validate") as db:
        seeder = Seeder(db, keys)
        seeder.create_tenant()
        port = free_port()
        with Server(gatehouse_serve_command(port), port, server_env(db, keys)) as server:
            event = seeder.create_event(port, "Validate benchmark")
            token = seeder.enroll_device(port, event, gate="A", name="bench-scanner").token
            codes: list[str] = []
            fresh_file = workdir / "fresh-codes.txt"

            def top_up(needed: int) -> None:
                """Mint more fresh tickets while the server is idle, so that at least
                ``needed`` unused codes lie after ``offset``; wrk reads the file at start."""
                missing = needed - (len(codes) - offset)
                if missing <= 0:
                    return
                _log(f"seeding {missing:,} more tickets and minting their codes (server idle)")
                more = seeder.mint_codes(event, seeder.insert_tickets(event, missing))
                codes.extend(more)
                with fresh_file.open("a") as handle:
                    handle.write("\n".join(more) + "\n")

            offset, used_lines, best_rate = 0, [], 0.0
            top_up(plan.pool)
            busy = wait_for_quiet()
            runs = [("warm-up", 16, plan.warm_up_s)] + [
                ("fresh", c, plan.duration_s) for c in plan.levels
            ]
            for series, connections, seconds in runs:
                # Twice what the fastest row so far would use, so no thread runs dry.
                top_up(int(2 * best_rate * seconds) + 1000)
                _log(f"{series}: {connections} clients, {seconds:g} s, codes from line {offset}")
                row = _measured(
                    "fresh tickets (200 admitted)",
                    server,
                    db,
                    codes_file=fresh_file,
                    connections=connections,
                    duration_s=seconds,
                    offset=offset,
                    token=token,
                )
                used_lines += row.result.consumed(offset)
                offset = row.result.next_offset(offset)
                best_rate = max(best_rate, row.result.verdicts_per_s)
                if series != "warm-up":
                    rows.append(row)

            used_file = workdir / "used-codes.txt"
            used_file.write_text("\n".join(codes[i] for i in used_lines) + "\n")
            for connections in plan.levels:
                _log(f"already used: {connections} clients, {plan.duration_s:g} s")
                rows.append(
                    _measured(
                        "already used (409 already checked in)",
                        server,
                        db,
                        codes_file=used_file,
                        connections=connections,
                        duration_s=plan.duration_s,
                        cycle=True,
                        token=token,
                    )
                )
        # The server stopped (its pool closed): Postgres to the floors alone.
        floors = _measure_db_floors(plan, db, seeder, event)
    stats = {"pool": len(codes), "fresh_used": len(used_lines), "busy_pct": round(busy * 100)}
    return rows, floors, stats


def _measure_floor(plan: Plan, workdir: Path) -> list[Row]:
    codes_file = workdir / "used-codes.txt"
    port = free_port()
    rows = []
    command = uvicorn_command("benchmarks.trivial_app:create_app", port)
    with Server(command, port, {}) as server:
        run_wrk(server.base, codes_file, connections=16, duration_s=plan.warm_up_s, cycle=True)
        for connections in plan.levels:
            _log(f"floor: {connections} clients, {plan.duration_s:g} s")
            rows.append(
                _measured(
                    "floor: trivial Litestar app",
                    server,
                    None,
                    codes_file=codes_file,
                    connections=connections,
                    duration_s=plan.duration_s,
                    cycle=True,
                    token="",  # the trivial app checks no token
                )
            )
    return rows


def _report_oddities(result: WrkResult, server: Server) -> None:
    if result.other:
        odd = {s: n for s, n in result.statuses.items() if s not in (200, 409, 422)}
        _log(f"non-verdict answers {odd}, socket errors {result.socket_errors}")
        if any(s >= 500 for s in odd):
            _log("server log (tail):\n" + server.log_tail())


def per_verdict_ms(seconds: float | None, verdicts: int) -> str:
    if seconds is None or not verdicts:
        return "–"
    return f"{1000 * seconds / verdicts:.2f}"


def _table(rows: list[Row]) -> list[str]:
    lines = [
        "| tickets | clients | verdicts/s | p50 ms | p90 ms | p99 ms | 200 | 409 | 422 | other "
        "| server CPU ms/verdict | Postgres CPU ms/verdict | wrk CPU ms/request | machine busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        r, cpu = row.result, row.cpu
        mark = " (ran out of codes: a lower bound)" if r.ran_out else ""
        requests = sum(r.statuses.values())
        lines.append(
            f"| {row.series}{mark} | {r.connections} | {r.verdicts_per_s:,.0f} | "
            f"{r.p50_ms:.1f} | {r.p90_ms:.1f} | {r.p99_ms:.1f} | {r.statuses.get(200, 0):,} | "
            f"{r.statuses.get(409, 0):,} | {r.statuses.get(422, 0):,} | {r.other:,} | "
            f"{per_verdict_ms(cpu.seconds.get('server'), r.verdicts)} | "
            f"{per_verdict_ms(cpu.seconds.get('postgres'), r.verdicts)} | "
            f"{per_verdict_ms(r.client_cpu_s, requests)} | {cpu.machine_busy:.0%} |"
        )
    return lines


def _floor_table(floors: list[FloorRow]) -> list[str]:
    lines = [
        "| floor: one statement per admission | clients | calls/s | p50 ms | p90 ms | p99 ms "
        "| Postgres CPU ms/call | client CPU ms/call | machine busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for floor in floors:
        r = floor.result
        lines.append(
            f"| {floor.series} | {r.connections} | {r.per_s:,.0f} | {r.p50_ms:.1f} | "
            f"{r.p90_ms:.1f} | {r.p99_ms:.1f} | "
            f"{per_verdict_ms(r.cpu.seconds.get('postgres'), r.calls)} | "
            f"{per_verdict_ms(r.cpu.seconds.get('client'), r.calls)} | "
            f"{r.cpu.machine_busy:.0%} |"
        )
    return lines


def _target_lines(rows: list[Row], floors: list[FloorRow]) -> list[str]:
    lines = []
    floor_rate = {
        "fresh": next((f.result.per_s for f in floors if "fresh" in f.series), 0.0),
        "used": next((f.result.per_s for f in floors if "already used" in f.series), 0.0),
    }
    for row in rows:
        r = row.result
        if r.connections != TARGET_CLIENTS or row.series.startswith("floor"):
            continue
        rate = target_verdict(r.verdicts_per_s, TARGET_RATE, "verdicts/s", higher_is_better=True)
        p99 = target_verdict(r.p99_ms, TARGET_P99_MS, "ms", higher_is_better=False)
        floor = floor_rate["fresh" if row.series.startswith("fresh") else "used"]
        share = (
            f"; {r.verdicts_per_s / floor:.0%} of Postgres alone in the same run ({floor:,.0f}/s)"
            if floor
            else ""
        )
        lines.append(f"* {row.series}: rate {rate}; p99 {p99}{share}.")
    return lines


def run(quick: bool = False) -> str:
    plan = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="gatehouse-bench-validate-") as tmp:
        workdir = Path(tmp)
        rows, floors, stats = _measure_gatehouse(plan, workdir)
        rows += _measure_floor(plan, workdir)
    threads = ", ".join(f"{c} client{'s' if c > 1 else ''}: -t{min(2, c)}" for c in plan.levels)
    return "\n".join(
        [
            "## Online check-in (POST /v1/validate)",
            "",
            header(
                "./dev bench validate",
                "litestar",
                "uvicorn",
                "uvloop",
                "httptools",
                "SQLAlchemy",
                "asyncpg",
            )
            + f" {wrk_version()}.",
            "",
            f"{machine_note(SERVER_WORKERS)} Load: wrk, {plan.duration_s:g} s per row after a "
            f"{plan.warm_up_s:g} s warm-up ({threads}), one enrolled scanner's token, a different "
            f"code per request from {stats['pool']:,} tickets minted while the server was idle "
            f"({stats['fresh_used']:,} used by the fresh rows); the 409 rows send those used "
            "codes again. Verdicts are answers 200, 409 or 422; *other* counts any other "
            "status, socket errors and timeouts. Latency is per request, as wrk measures it "
            "(closed loop: each client waits for its answer). CPU columns: CPU time the server's "
            "worker processes, the Postgres backends of its pool and wrk used during the row, "
            "divided by the answers; *machine busy* is all cores, anything running."
            + quiet_note(stats["busy_pct"] / 100),
            "",
            *_table(rows),
            "",
            "The floors below ran in the same database after the rows above, the server stopped, "
            "on tickets of their own: one call of a PL/pgSQL function per admission that does "
            "in Postgres what the server's check-in does there (locks the ticket and reads it "
            "with the server's `gatehouse_checkin_ticket`, then writes the scan, and for an "
            "admission the status, history row and outbox event), as the application role with "
            "row-level security, each call its own transaction; by pgbench (C, prepared, 2 "
            "threads) and by asyncpg connections of one Python process on uvloop. They leave "
            "out all that is not Postgres (HTTP, token, rate limit, reading the code, the "
            "decision, logs, metrics): what the machine can do at best with one statement per "
            "admission (`benchmarks/validate_floors.py`). They use 16 connections: on 2 cores "
            "more backends only queue for the CPU.",
            "",
            *_floor_table(floors),
            "",
            f"Target (≥ {TARGET_RATE:,.0f} verdicts/s at {TARGET_CLIENTS} concurrent "
            f"clients with p99 ≤ {TARGET_P99_MS:.0f} ms):",
            "",
            *_target_lines(rows, floors),
        ]
    )


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
