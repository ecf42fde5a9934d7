"""The changes feed: how long a freshly enrolled scanner takes to pull every ticket of its event
through ``GET /v1/sync/changes``, and how many bytes that is.

    ./dev bench feed            (or: python -m benchmarks.feed [--quick])

A fresh database with 100,000 tickets of one event (inserted with COPY, then numbered by the
change sequencer as the server would have done long before), a real ``gatehouse-server serve``
with 2 workers. Each pull enrolls a new device, starts without a cursor and follows
``next_cursor`` while ``has_more``, over one keep-alive connection, decoding every page into
``shared.wire.ChangesPage`` with msgspec (gunzipping first when the answer is gzipped); a row is
the fastest of two such pulls (one with ``--quick``). The clock covers requests, transfer,
decompression and decoding; applying the changes to the scanner's SQLite store is not in it (see
the note in the section).
"""

from __future__ import annotations

import http.client
import sys
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from benchmarks.environment import header
from benchmarks.server_harness import (
    HOST,
    SERVER_WORKERS,
    BenchDatabase,
    CpuMeter,
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
from scanner_app.core.store import LocalStore
from scanner_app.core.store.cache import ticket_count
from scanner_app.core.store.state import Enrollment, save_enrollment
from scanner_app.core.sync.engine import FEED_PAGE, SyncEngine
from shared.wire import ChangesPage, TicketChange
from sync_server.domain.sync.feed import DEFAULT_PAGE, MAX_PAGE

TARGET_S = 3.0  # 100,000 tickets to a fresh scanner, applying included (docs/benchmarks.md)
TARGET_TICKETS = 100_000
PATH = "/v1/sync/changes"
MSGPACK = "application/msgpack"
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Plan:
    tickets: int
    repeats: int  # pulls per row, each by a new device; the fastest is reported
    # (format, gzip, page size or None for the server's default)
    pulls: tuple[tuple[str, bool, int | None], ...]


PULLS = (
    (JSON, True, None),
    (JSON, False, None),
    (MSGPACK, True, None),
    (MSGPACK, False, None),
    (MSGPACK, True, MAX_PAGE),
)
FULL = Plan(tickets=TARGET_TICKETS, repeats=2, pulls=PULLS)
QUICK = Plan(tickets=10_000, repeats=1, pulls=PULLS)


@dataclass(frozen=True, slots=True)
class Pull:
    media_type: str
    gzip: bool
    page_size: int
    pages: int
    tickets: int
    seconds: float
    raw_bytes: int  # page bodies after decompression
    wire_bytes: int  # page bodies as sent (gzip when asked for)
    server_cpu_s: float
    postgres_cpu_s: float

    @property
    def label(self) -> str:
        kind = "msgpack" if self.media_type == MSGPACK else "JSON"
        return f"{kind}, {'gzip' if self.gzip else 'identity'}"


def _log(message: str) -> None:
    print(f"    {message}", file=sys.stderr, flush=True)


def pull_everything(
    port: int, token: str, media_type: str, gzip: bool, limit: int | None
) -> tuple[int, int, int, int]:
    """Pages, tickets, raw bytes and wire bytes of one full pull from no cursor."""
    decoder = (
        msgspec.msgpack.Decoder(ChangesPage)
        if media_type == MSGPACK
        else msgspec.json.Decoder(ChangesPage)
    )
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": media_type,
        "Accept-Encoding": "gzip" if gzip else "identity",
    }
    connection = http.client.HTTPConnection(HOST, port, timeout=120)
    pages = tickets = raw = wire = 0
    cursor: str | None = None
    try:
        while True:
            query = [f"limit={limit}"] if limit else []
            if cursor:
                query.append(f"cursor={cursor}")
            connection.request("GET", f"{PATH}?{'&'.join(query)}", headers=headers)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"the feed answered {response.status}: {body[:300]!r}")
            wire += len(body)
            if response.getheader("Content-Encoding") == "gzip":
                body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
            raw += len(body)
            page = decoder.decode(body)
            pages += 1
            tickets += sum(1 for change in page.changes if isinstance(change, TicketChange))
            if not page.has_more:
                return pages, tickets, raw, wire
            cursor = page.next_cursor
    finally:
        connection.close()


def _measure(plan: Plan) -> tuple[list[Pull], Applied, float, float]:
    keys = Secrets()
    pulls: list[Pull] = []
    with fresh_database("feed") as db:
        seeder = Seeder(db, keys)
        seeder.create_tenant()
        port = free_port()
        with Server(gatehouse_serve_command(port), port, server_env(db, keys)) as server:
            event = seeder.create_event(port, "Feed benchmark")
            _log(f"seeding {plan.tickets:,} tickets")
            seeder.insert_tickets(event, plan.tickets)
            started = time.perf_counter()
            seeder.sequence_changes()
            sequencing_s = time.perf_counter() - started
            busy = wait_for_quiet()
            warm = seeder.enroll_device(port, event, gate="W", name="bench-warm-up")
            pull_everything(port, warm.token, MSGPACK, True, None)  # warm caches, not reported
            for n, (media_type, gzip, limit) in enumerate(plan.pulls):
                _log(f"pull {n + 1}/{len(plan.pulls)}: {media_type}, gzip={gzip}, limit={limit}")
                tries = []
                for attempt in range(plan.repeats):
                    device = seeder.enroll_device(
                        port, event, gate=f"G{n}-{attempt}", name=f"bench-{n}-{attempt}"
                    )
                    tries.append(
                        _timed_pull(
                            server,
                            db,
                            port,
                            device.token,
                            media_type=media_type,
                            gzip=gzip,
                            limit=limit,
                        )
                    )
                    _check(tries[-1], event, plan)
                pulls.append(min(tries, key=lambda pull: pull.seconds))
            applied = [
                _scanner_sync(seeder, port, event, f"S{attempt}") for attempt in range(plan.repeats)
            ]
    return pulls, min(applied, key=lambda a: a.seconds), sequencing_s, busy


@dataclass(frozen=True, slots=True)
class Applied:
    """A real scanner's first sync: the production client and engine, into a fresh store."""

    seconds: float
    tickets: int
    pages: int
    store_mb: float


def _scanner_sync(seeder: Seeder, port: int, event: EventHandle, gate: str) -> Applied:
    device = seeder.enroll_device(port, event, gate=gate, name=f"bench-scanner-{gate}")
    with tempfile.TemporaryDirectory(prefix="gatehouse-feed-", dir=Path.cwd()) as tmp:
        store = LocalStore.open(Path(tmp))
        now = datetime.now(UTC)
        with store.write() as conn:
            save_enrollment(
                conn,
                Enrollment(
                    device_id=device.device_id,
                    name=gate,
                    server_url=f"http://{HOST}:{port}",
                    tenant_id=seeder.tenant_id or uuid.UUID(int=0),
                    event_id=event.event_id,
                    gate=gate,
                    enrolled_at=now,
                ),
            )
        store.vault.save(device.token)
        engine = SyncEngine(store)
        started = time.perf_counter()
        report = engine.sync_once()
        seconds = time.perf_counter() - started
        if not report.ok:
            raise RuntimeError(f"the scanner's sync failed: {report.errors}")
        with store.read() as conn:
            cached = ticket_count(conn)
        store.checkpoint()
        size = sum(f.stat().st_size for f in Path(tmp).iterdir() if f.is_file()) / 1e6
        store.close()
    _log(f"scanner sync: {cached:,} tickets in {seconds:.2f} s")
    return Applied(seconds, cached, report.pages, size)


def _timed_pull(
    server: Server,
    db: BenchDatabase,
    port: int,
    token: str,
    *,
    media_type: str,
    gzip: bool,
    limit: int | None,
) -> Pull:
    meter = CpuMeter({"server": server.worker_pids, "postgres": lambda: postgres_backends(db)})
    meter.start()
    started = time.perf_counter()
    pages, tickets, raw, wire = pull_everything(port, token, media_type, gzip, limit)
    seconds = time.perf_counter() - started
    cpu = meter.stop()
    return Pull(
        media_type=media_type,
        gzip=gzip,
        page_size=limit or DEFAULT_PAGE,
        pages=pages,
        tickets=tickets,
        seconds=seconds,
        raw_bytes=raw,
        wire_bytes=wire,
        server_cpu_s=cpu.seconds["server"],
        postgres_cpu_s=cpu.seconds["postgres"],
    )


def _check(pull: Pull, event: EventHandle, plan: Plan) -> None:
    if pull.tickets != plan.tickets:
        _log(f"warning: {pull.label} delivered {pull.tickets:,} tickets of {plan.tickets:,}")


def run(quick: bool = False) -> str:
    plan = QUICK if quick else FULL
    pulls, applied, sequencing_s, busy = _measure(plan)
    table = [
        "| format | page size | pages | tickets | seconds | tickets/s | body MB | on the wire MB "
        "| bytes/ticket on the wire | server CPU s | Postgres CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in pulls:
        table.append(
            f"| {p.label} | {p.page_size:,} | {p.pages} | {p.tickets:,} | {p.seconds:.2f} | "
            f"{p.tickets / p.seconds:,.0f} | {p.raw_bytes / 1e6:.1f} | {p.wire_bytes / 1e6:.1f} | "
            f"{p.wire_bytes / max(p.tickets, 1):.0f} | {p.server_cpu_s:.2f} | "
            f"{p.postgres_cpu_s:.2f} |"
        )
    scale = TARGET_TICKETS / plan.tickets
    target_lines = []
    for p in pulls:
        measured = p.seconds * scale
        scaled = "" if scale == 1 else f" (scaled ×{scale:g} from {plan.tickets:,})"
        target_lines.append(
            f"* {p.label}, pages of {p.page_size:,}: "
            + target_verdict(measured, TARGET_S, "s", higher_is_better=False)
            + scaled
            + "."
        )
    return "\n".join(
        [
            "## Changes feed (GET /v1/sync/changes)",
            "",
            header("./dev bench feed", "litestar", "uvicorn", "SQLAlchemy", "asyncpg", "msgspec"),
            "",
            f"{machine_note(SERVER_WORKERS)} {plan.tickets:,} tickets of one event, inserted "
            f"with COPY and numbered by the change sequencer beforehand ({sequencing_s:.1f} s "
            "for all of them, not in the times below). Each row is the fastest of "
            f"{plan.repeats} pull{'s' if plan.repeats > 1 else ''}, each by a newly enrolled "
            "device from no cursor until `has_more` is false, over one keep-alive connection, "
            "one request at a time, after one unreported warm-up pull; the time covers "
            "requests, transfer, gunzip and msgspec decoding into `ChangesPage`. *Body* is the "
            "decoded page bodies, *on the wire* what was sent (gzip when asked for); headers "
            "are left out. CPU columns: the server's worker processes and the Postgres backends "
            "of its pool during the pull." + quiet_note(busy),
            "",
            *table,
            "",
            f"Target ({TARGET_TICKETS:,} tickets to a fresh scanner in ≤ {TARGET_S:g} s "
            "including applying them). Delivery and decoding only:",
            "",
            *target_lines,
            "",
            "**A real scanner's first sync, applying included** (`SyncEngine.sync_once()` into a "
            "fresh `LocalStore`: `/v1/devices/me`, then msgpack+gzip pages of "
            f"{FEED_PAGE:,}, each page applied — hashed keys, sealed names, upserts — and its "
            "cursor saved in one durable transaction): "
            f"{applied.tickets:,} tickets in {applied.seconds:.2f} s over {applied.pages} pages "
            f"({applied.tickets / applied.seconds:,.0f} tickets/s; store {applied.store_mb:.0f} "
            "MB on disk); "
            + target_verdict(applied.seconds * scale, TARGET_S, "s", higher_is_better=False)
            + ("" if scale == 1 else f" (scaled ×{scale:g})")
            + ". Fastest of "
            f"{plan.repeats}; the server, Postgres and the scanner share the 2 cores.",
        ]
    )


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
