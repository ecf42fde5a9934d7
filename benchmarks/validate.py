"""Online check-in under load: ``POST /v1/validate`` at 1, 16 and 64 concurrent clients.

    ./dev bench validate            (or: python -m benchmarks.validate [--quick])

A fresh database, a real ``gatehouse-server serve`` with 2 workers, one enrolled scanner. The
tickets are inserted in bulk and their codes minted while the server is idle (before the first
row, and between rows when the rate so far says more are needed); wrk (see ``validate.lua``)
sends a different code with every request, so a fresh ticket is really fresh (admitted, 200).
Then the codes used so far are sent again (already checked in, 409: a verdict too). The floor is
a Litestar app that only decodes the body and answers a small JSON (``trivial_app.py``), served
the same way under the same load; and Postgres alone (``admission_floor``: a verdict's statements
from asyncpg at 64 connections, one transaction per verdict), with the fraction of it reached.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks import admission_floor
from benchmarks.environment import header
from benchmarks.server_harness import (
    SERVER_WORKERS,
    BenchDatabase,
    CpuMeter,
    CpuUse,
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
from benchmarks.wrk_load import WrkResult, run_wrk, wrk_version

TARGET_RATE = 1500.0  # verdicts/s at 64 clients (docs/benchmarks.md "Targets")
TARGET_P99_MS = 50.0
TARGET_CLIENTS = 64


@dataclass(frozen=True, slots=True)
class Plan:
    duration_s: float
    warm_up_s: float
    levels: tuple[int, ...]
    pool: int  # fresh tickets minted before the first row (more are minted when needed)


FULL = Plan(duration_s=10, warm_up_s=3, levels=(1, 16, 64), pool=40_000)
QUICK = Plan(duration_s=3, warm_up_s=1, levels=(1, 16, 64), pool=10_000)


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


def _measure_gatehouse(plan: Plan, workdir: Path) -> tuple[list[Row], dict[str, int]]:
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
    stats = {"pool": len(codes), "fresh_used": len(used_lines), "busy_pct": round(busy * 100)}
    return rows, stats


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


def _target_lines(rows: list[Row]) -> list[str]:
    lines = []
    for row in rows:
        r = row.result
        if r.connections != TARGET_CLIENTS or row.series.startswith("floor"):
            continue
        rate = target_verdict(r.verdicts_per_s, TARGET_RATE, "verdicts/s", higher_is_better=True)
        p99 = target_verdict(r.p99_ms, TARGET_P99_MS, "ms", higher_is_better=False)
        lines.append(f"* {row.series}: rate {rate}; p99 {p99}.")
    return lines


def _database_floor_lines(rows: list[Row], floor: list[admission_floor.Row]) -> list[str]:
    """Postgres alone in the same run (``admission_floor``: the statements of a verdict from
    asyncpg, one transaction per verdict, no HTTP) and the fraction of it validate reached."""
    lines = [
        f"Floor, Postgres alone in the same run (`admission_floor`: {TARGET_CLIENTS} asyncpg "
        "connections as the application role, one transaction per verdict with the statements "
        "validate sends after `gatehouse_enter`, no HTTP):",
        "",
    ]
    for series, db_row in zip(
        ("fresh tickets (200 admitted)", "already used (409 already checked in)"),
        floor,
        strict=False,
    ):
        ours = [r for r in rows if r.series == series and r.result.connections == TARGET_CLIENTS]
        reached = (
            f"; validate reached {ours[0].result.verdicts_per_s / db_row.per_s:.0%} of it"
            if ours and db_row.per_s
            else ""
        )
        lines.append(
            f"* {db_row.kind}: {db_row.per_s:,.0f} verdicts/s, "
            f"{db_row.cpu_ms:.2f} ms of Postgres CPU per verdict{reached}."
        )
    return lines


def run(quick: bool = False) -> str:
    plan = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="gatehouse-bench-validate-") as tmp:
        workdir = Path(tmp)
        rows, stats = _measure_gatehouse(plan, workdir)
        rows += _measure_floor(plan, workdir)
    database_floor, _ = admission_floor.measure(
        admission_floor.Plan(
            duration_s=plan.duration_s,
            connections=(TARGET_CLIENTS,),
            groups=(1,),
            tickets=plan.pool,
        ),
        quick,
    )
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
            f"Target (≥ {TARGET_RATE:,.0f} verdicts/s at {TARGET_CLIENTS} concurrent "
            f"clients with p99 ≤ {TARGET_P99_MS:.0f} ms):",
            "",
            *_target_lines(rows),
            "",
            *_database_floor_lines(rows, database_floor),
        ]
    )


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
