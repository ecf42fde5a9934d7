"""The managers' console at a million scans: how long its pages take, and how long a scan takes
to show on an open dashboard.

    ./dev bench console           (or: python -m benchmarks.console [--quick])

A fresh database and a real ``gatehouse-server serve`` with 2 workers. The event is made through
the API (running now, three ticket types, three check-in lists with zones over 20 gates, a
scanner enrolled at each gate), then its scans are written in bulk as the owner
(``benchmarks.console_seed``: a million over four hours — entries, exits, re-entries, double
entries, undone admissions, rejections by nine reasons) and counted once
(``gatehouse_recount_scans``, as the seeding writes with triggers off). A manager account is
made, its password set through the one-time link's form and signed in through the real sign-in
form; every request then carries that session's cookie.

Measured, one request after another over one keep-alive connection, after a warm-up:

* the dashboard page (``/console/events/{id}/dashboard``) and its stream's first message (the
  time until ``event: counts`` arrives on a new ``…/dashboard/stream``);
* the scan log (``/console/scans?event=…``, by gate, rejections only, and the next page by the
  first page's ``<a rel="next">``); a page the server does not have yet answers 404 and is
  reported as not built.

Then the update latency: headless Chromium (Debian's, through Playwright) has the dashboard
open; one of the enrolled scanners uploads an offline admission of a fresh ticket through
``POST /v1/sync/scans``, at random intervals of 0.3–2 s; the page records (a MutationObserver,
``Date.now()``) when the admitted count shows it. Latency is from the upload's answer to that
moment; the browser and the benchmark share the machine's clock.
"""

from __future__ import annotations

import asyncio
import html
import random
import re
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import msgspec

from benchmarks.console_seed import ListLayout, SeedPlan, seed
from benchmarks.environment import header
from benchmarks.server_harness import (
    SERVER_WORKERS,
    DeviceHandle,
    EventHandle,
    Secrets,
    Seeder,
    Server,
    call_json,
    cpu_busy,
    free_port,
    fresh_database,
    gatehouse_serve_command,
    insert_tickets,
    machine_note,
    server_env,
)
from shared.domain import Direction, VerdictResult
from shared.ids import new_id
from shared.wire import ScanBatch, ScanUpload
from sync_server.console.accounts import create_user
from sync_server.db.engine import Database

TARGET_P95_MS = 300.0
PASSWORD = "console benchmark password"  # noqa: S105 - a throw-away account's
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


@dataclass(frozen=True, slots=True)
class Plan:
    scans: int
    hours: float
    requests: int
    warm_up: int
    stream_opens: int
    uploads: int
    trigger_rounds: int


FULL = Plan(
    scans=1_000_000,
    hours=4.0,
    requests=100,
    warm_up=5,
    stream_opens=40,
    uploads=30,
    trigger_rounds=10,
)
QUICK = Plan(
    scans=50_000, hours=4.0, requests=20, warm_up=2, stream_opens=8, uploads=8, trigger_rounds=3
)

#: The lists: name, ticket type, zone, gates, share of the tickets (twentieths).
LISTS = (
    ("General", None, tuple(f"Gate {n}" for n in range(1, 15)), 16),
    ("VIP", "VIP lounge", ("VIP 1", "VIP 2", "VIP 3"), 3),
    ("Crew", "Backstage", ("Stage door 1", "Stage door 2", "Stage door 3"), 1),
)


def _log(message: str) -> None:
    print(f"    {message}", file=sys.stderr, flush=True)


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return statistics.median(ordered), at(0.95), at(0.99)


# --- set-up -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Venue:
    event: EventHandle
    devices: dict[str, DeviceHandle]
    lists: list[ListLayout]
    manager_email: str
    manager_token: str


def _set_up(port: int, seeder: Seeder) -> Venue:
    token = seeder.manager_token()
    now = datetime.now(UTC)
    event = call_json(
        port,
        "POST",
        "/v1/events",
        {
            "name": "Riverside Festival, Saturday",
            "venue": "Riverside Park",
            "starts_at": (now - timedelta(hours=3)).isoformat(),
            "ends_at": (now + timedelta(hours=4)).isoformat(),
            "admission_opens_at": (now - timedelta(hours=5)).isoformat(),
            "allow_reentry": True,
            "time_zone": "Europe/Berlin",
        },
        token,
    )
    event_id = uuid.UUID(event["id"])
    layouts: list[ListLayout] = []
    for name, zone, gates, share in LISTS:
        ticket_type = call_json(
            port,
            "POST",
            f"/v1/events/{event_id}/ticket-types",
            {"name": name, "capacity": 2_000_000},
            token,
        )
        made = call_json(
            port,
            "POST",
            f"/v1/events/{event_id}/checkin-lists",
            {
                "name": name,
                "ticket_type_ids": [ticket_type["id"]],
                "gates": list(gates),
                "zone": zone,
            },
            token,
        )
        layouts.append(
            ListLayout(
                name=name,
                ticket_type_id=uuid.UUID(ticket_type["id"]),
                list_id=uuid.UUID(made["id"]),
                zone=zone,
                gates=gates,
                twentieths=share,
            )
        )
    assert seeder.tenant_id is not None
    handle = EventHandle(
        tenant_id=seeder.tenant_id,
        event_id=event_id,
        ticket_type_id=layouts[0].ticket_type_id,
        ticket_type_name=layouts[0].name,
    )
    devices = {
        gate: seeder.enroll_device(port, handle, gate, f"{gate} scanner")
        for layout in layouts
        for gate in layout.gates
    }
    return Venue(handle, devices, layouts, f"ops-{new_id().hex[:8]}@riverside.example", "")


async def _make_manager(seeder: Seeder, email: str) -> str:
    """A manager account with no password yet; its one-time link's token."""
    assert seeder.tenant_id is not None
    database = Database(seeder.db.settings(pool_size=1))
    try:
        _, token = await create_user(database, seeder.tenant_id, email, datetime.now(UTC))
    finally:
        await database.close()
    return token


_CSRF = re.compile(r'name="_csrf" value="([^"]+)"')


def _csrf(page: str) -> str:
    found = _CSRF.search(page)
    if found is None:
        raise RuntimeError("the console's form carries no CSRF token")
    return found.group(1)


def console_session(base: str, email: str, link_token: str, password: str) -> httpx.Client:
    """A client signed in to the console as a manager would: the password set through the
    one-time link's form, then the sign-in form. Raises ``RuntimeError`` when either refuses."""
    client = httpx.Client(base_url=base, timeout=60, follow_redirects=False)
    page = client.get("/console/set-password", params={"token": link_token})
    done = client.post(
        "/console/set-password",
        data={
            "_csrf": _csrf(page.text),
            "token": link_token,
            "password": password,
            "password_again": password,
        },
    )
    if done.status_code != 200 or "Your password is set" not in done.text:
        raise RuntimeError(f"setting the password answered {done.status_code}")
    page = client.get("/console/sign-in")
    signed = client.post(
        "/console/sign-in",
        data={"_csrf": _csrf(page.text), "email": email, "password": password},
    )
    if signed.status_code != 303 or "gatehouse_console" not in client.cookies:
        raise RuntimeError(f"signing in answered {signed.status_code}")
    return client


async def _count_seeded(dsn: str, event_id: uuid.UUID) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("SELECT gatehouse_recount_scans($1)", event_id)
        for table in ("gate_counts", "gate_minutes", "zone_counts"):
            await connection.execute(f"VACUUM ANALYZE {table}")
    finally:
        await connection.close()


# --- page timings -----------------------------------------------------------------------------


@dataclass(slots=True)
class Timing:
    label: str
    path: str
    samples_ms: list[float]
    status: int
    size: int

    def row(self) -> str:
        if self.status == 404:
            return f"| {self.label} | `{self.path}` | not built (404) | – | – | – |"
        if self.status != 200:
            return f"| {self.label} | `{self.path}` | answered {self.status} | – | – | – |"
        p50, p95, p99 = _percentiles(self.samples_ms)
        return (
            f"| {self.label} | `{self.path}` | {len(self.samples_ms)} | {p50:.1f} | {p95:.1f} | "
            f"{p99:.1f} |"
        )


def _time_page(client: httpx.Client, label: str, path: str, plan: Plan) -> tuple[Timing, str]:
    first = client.get(path)
    if first.status_code != 200:
        return Timing(label, path, [], first.status_code, len(first.content)), first.text
    for _ in range(plan.warm_up):
        client.get(path)
    samples = []
    for _ in range(plan.requests):
        started = time.perf_counter()
        response = client.get(path)
        response.read()
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}")
    return Timing(label, path, samples, 200, len(first.content)), first.text


def _time_stream(client: httpx.Client, path: str, plan: Plan) -> Timing:
    samples = []
    for n in range(plan.stream_opens + plan.warm_up):
        started = time.perf_counter()
        with client.stream("GET", path) as response:
            if response.status_code != 200:
                return Timing("dashboard stream, first message", path, [], response.status_code, 0)
            for line in response.iter_lines():
                if line.startswith("event: counts"):
                    break
        if n >= plan.warm_up:
            samples.append((time.perf_counter() - started) * 1000)
    return Timing("dashboard stream, first message", path, samples, 200, 0)


def _next_link(page: str) -> str | None:
    for tag in re.findall(r"<a\b[^>]*>", page):
        if re.search(r'\brel="next"', tag):
            found = re.search(r'\bhref="([^"]+)"', tag)
            if found:
                return html.unescape(found.group(1))
    return None


# --- update latency ---------------------------------------------------------------------------

_OBSERVE = """
() => {
  window.__changes = [];
  const seen = () => {
    const total = document.querySelector('[data-total="admitted"]');
    if (total) window.__changes.push({value: Number(total.dataset.value), at: Date.now()});
  };
  new MutationObserver(seen).observe(document.querySelector('[data-live-region]'),
                                     {childList: true, subtree: true, characterData: true});
}
"""


def _upload_body(device: DeviceHandle, code: str) -> bytes:
    return msgspec.json.encode(
        ScanBatch(
            scans=[
                ScanUpload(
                    scan_id=new_id(),
                    code=code,
                    gate=device.gate,
                    direction=Direction.ENTRY,
                    scanned_at=datetime.now(UTC),
                    clock_offset_ms=0,
                    device_result=VerdictResult.ADMITTED,
                    offline=True,
                )
            ]
        )
    )


def _latencies(
    base: str, cookie: str, event_id: uuid.UUID, devices: list[DeviceHandle], codes: list[str]
) -> tuple[list[float], int]:
    """Upload each code through a scanner and time it onto the open dashboard. Returns the
    latencies (ms) and how many uploads never showed (within 10 s)."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only this part needs it

    rng = random.Random(17)
    latencies: list[float] = []
    missed = 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.add_cookies(
                [{"name": "gatehouse_console", "value": cookie, "url": f"{base}/console/"}]
            )
            page = context.new_page()
            page.goto(f"{base}/console/events/{event_id}/dashboard")
            page.wait_for_function(
                "() => document.querySelector('[data-live-status]').textContent.startsWith('Live')",
                timeout=30_000,
            )
            page.evaluate(_OBSERVE)
            admitted = int(page.get_attribute('[data-total="admitted"]', "data-value") or 0)
            with httpx.Client(base_url=base, timeout=30) as api:
                for n, code in enumerate(codes):
                    time.sleep(rng.uniform(0.3, 2.0))
                    device = devices[n % len(devices)]
                    answer = api.post(
                        "/v1/sync/scans",
                        content=_upload_body(device, code),
                        headers={
                            "Content-Type": "application/json",
                            "Authorization": f"Bearer {device.token}",
                        },
                    )
                    answered = time.time() * 1000
                    if answer.status_code != 200:
                        raise RuntimeError(f"the upload answered {answer.status_code}")
                    admitted += 1
                    try:
                        page.wait_for_function(
                            f"() => window.__changes.some(c => c.value >= {admitted})",
                            timeout=10_000,
                        )
                    except Exception:  # counted; the next upload goes on
                        missed += 1
                        continue
                    shown = page.evaluate(
                        f"() => window.__changes.find(c => c.value >= {admitted}).at"
                    )
                    latencies.append(max(0.0, float(shown) - answered))
        finally:
            browser.close()
    return latencies, missed


# --- what counting costs the writes -----------------------------------------------------------

_INSERT_ONE = """
INSERT INTO ticket_scans (id, tenant_id, ticket_id, event_id, scanned_by, gate, direction, result,
                          scanned_at, received_at, checkin_list_id, zone)
VALUES ($1, $2, $3, $4, 'device:bench', $5, 'entry', 'admitted', $6, $6, $7, $8)
"""
_INSERT_BATCH = """
INSERT INTO ticket_scans (id, tenant_id, ticket_id, event_id, scanned_by, gate, direction, result,
                          scanned_at, received_at, checkin_list_id, zone)
SELECT id, $2, ticket, $3, 'device:bench', $4, 'entry', 'admitted', $5, $5, $6, $7
FROM unnest($1::uuid[], $8::uuid[]) AS s(id, ticket)
"""


@dataclass(slots=True)
class TriggerCost:
    single_on_us: float
    single_off_us: float
    batch_on_us: float
    batch_off_us: float
    rounds: int


async def _trigger_cost(app_dsn: str, owner_dsn: str, venue: Venue, rounds: int) -> TriggerCost:
    """Postgres's time per scan written as check-in writes them — one admission per
    transaction (online), and 1,000 per statement (an upload) — with the counting triggers on
    and off, alternating in rounds so that other load on the machine falls on both alike.
    As the application role, with the tenant set; fresh tickets, in the seeded table."""
    layout = venue.lists[0]
    gate = layout.gates[0]
    owner = await asyncpg.connect(owner_dsn)
    app = await asyncpg.connect(app_dsn)
    await app.execute(
        "SELECT set_config('gatehouse.tenant_id', $1, false)", str(venue.event.tenant_id)
    )
    single: dict[bool, list[float]] = {True: [], False: []}
    batch: dict[bool, list[float]] = {True: [], False: []}
    try:
        for n in range(rounds * 2):
            on = n % 2 == 0
            await owner.execute(
                f"ALTER TABLE ticket_scans {'ENABLE' if on else 'DISABLE'} TRIGGER count_new_scans"
            )
            started = time.perf_counter()
            for _ in range(200):
                async with app.transaction():
                    await app.execute(
                        _INSERT_ONE,
                        new_id(),
                        venue.event.tenant_id,
                        uuid.uuid4(),
                        venue.event.event_id,
                        gate,
                        datetime.now(UTC),
                        layout.list_id,
                        layout.zone,
                    )
            single[on].append((time.perf_counter() - started) / 200 * 1e6)
            ids = [new_id() for _ in range(1000)]
            tickets = [uuid.uuid4() for _ in range(1000)]
            started = time.perf_counter()
            async with app.transaction():
                await app.execute(
                    _INSERT_BATCH,
                    ids,
                    venue.event.tenant_id,
                    venue.event.event_id,
                    gate,
                    datetime.now(UTC),
                    layout.list_id,
                    layout.zone,
                    tickets,
                )
            batch[on].append((time.perf_counter() - started) / 1000 * 1e6)
    finally:
        await owner.execute("ALTER TABLE ticket_scans ENABLE TRIGGER count_new_scans")
        await app.close()
        await owner.close()
    return TriggerCost(
        single_on_us=statistics.median(single[True]),
        single_off_us=statistics.median(single[False]),
        batch_on_us=statistics.median(batch[True]),
        batch_off_us=statistics.median(batch[False]),
        rounds=rounds,
    )


# --- the run ----------------------------------------------------------------------------------


def run(quick: bool = False) -> str:
    plan = QUICK if quick else FULL
    keys = Secrets()
    with fresh_database("console") as db:
        port = free_port()
        with Server(gatehouse_serve_command(port), port, server_env(db, keys)) as server:
            seeder = Seeder(db, keys)
            seeder.create_tenant("Riverside Arena")
            venue = _set_up(port, seeder)
            _log(f"seeding {plan.scans:,} scans over {plan.hours:g} hours (owner, set-based)")
            started = time.perf_counter()
            counts = asyncio.run(
                seed(
                    db.owner_dsn,
                    SeedPlan(
                        tenant_id=venue.event.tenant_id,
                        event_id=venue.event.event_id,
                        lists=tuple(venue.lists),
                        devices={g: d.device_id for g, d in venue.devices.items()},
                        scans=plan.scans,
                        hours=plan.hours,
                        now=datetime.now(UTC),
                    ),
                )
            )
            asyncio.run(_count_seeded(db.owner_dsn, venue.event.event_id))
            seed_s = time.perf_counter() - started
            _log(f"seeded in {seed_s:.0f} s: {counts}")
            fresh = insert_tickets_sync(db.owner_dsn, venue.event, plan.uploads)
            codes = seeder.mint_codes(venue.event, fresh)
            link = asyncio.run(_make_manager(seeder, venue.manager_email))
            client = console_session(server.base, venue.manager_email, link, PASSWORD)
            event_id = venue.event.event_id
            gate = venue.lists[0].gates[0]
            timings: list[Timing] = []
            busy = cpu_busy(2.0)  # the server idle: anything busy is other work
            _log(f"timing the pages (other work keeps the machine {busy:.0%} busy)")
            dashboard, _ = _time_page(
                client, "dashboard", f"/console/events/{event_id}/dashboard", plan
            )
            timings.append(dashboard)
            timings.append(
                _time_stream(client, f"/console/events/{event_id}/dashboard/stream", plan)
            )
            scan_log, first_page = _time_page(
                client, "scan log", f"/console/scans?event={event_id}", plan
            )
            timings.append(scan_log)
            timings.append(
                _time_page(
                    client,
                    "scan log, one gate",
                    f"/console/scans?event={event_id}&gate={gate.replace(' ', '+')}",
                    plan,
                )[0]
            )
            timings.append(
                _time_page(
                    client,
                    "scan log, rejections",
                    f"/console/scans?event={event_id}&result=rejected",
                    plan,
                )[0]
            )
            following = _next_link(first_page) if scan_log.status == 200 else None
            if following is not None:
                timings.append(_time_page(client, "scan log, next page", following, plan)[0])
            else:
                timings.append(
                    Timing(
                        "scan log, next page",
                        "(the first page's rel=next link)",
                        [],
                        404 if scan_log.status == 404 else 0,
                        0,
                    )
                )
            _log(f"timing {plan.uploads} uploads onto the open dashboard")
            cookie = client.cookies["gatehouse_console"]
            client.close()
            latencies, missed = _latencies(
                server.base, cookie, event_id, list(venue.devices.values()), codes
            )
        _log("timing the counting triggers (the server stopped)")
        app_dsn = db.app_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        cost = asyncio.run(_trigger_cost(app_dsn, db.owner_dsn, venue, plan.trigger_rounds))
    return _report(plan, counts, seed_s, timings, (latencies, missed), cost, busy)


def insert_tickets_sync(dsn: str, event: EventHandle, count: int) -> list[uuid.UUID]:
    return asyncio.run(insert_tickets(dsn, event, count))


def _report(  # noqa: PLR0917 - the run's parts, once
    plan: Plan,
    counts: dict[str, int],
    seed_s: float,
    timings: list[Timing],
    shown: tuple[list[float], int],
    cost: TriggerCost,
    busy: float,
) -> str:
    latencies, missed = shown
    lines = [
        "## Managers' console: pages at a million scans, live dashboard latency",
        "",
        header("./dev bench console", "litestar", "uvicorn", "SQLAlchemy", "asyncpg", "playwright"),
        "",
        machine_note(SERVER_WORKERS)
        + f" Just before the timings, with the server idle, other work kept the machine "
        f"{busy:.0%} busy.",
        "",
        (
            f"Data: one event, {counts['scans']:,} scans over {plan.hours:g} hours at 20 gates "
            f"(three check-in lists with zones): {counts['admitted']:,} standing admissions, "
            f"{counts['exits']:,} exits, {counts['conflicts']:,} double entries, "
            f"{counts['annulled']:,} undone, {counts['rejected']:,} rejections; "
            f"{counts['tickets']:,} tickets (seeded and counted in {seed_s:.0f} s). "
            f"Requests one after another over one keep-alive connection with the manager's "
            f"session cookie, {plan.requests} each after {plan.warm_up} to warm up; the stream "
            f"row opens the stream {plan.stream_opens} times and waits for its first message."
        ),
        "",
        "| page | request | requests | p50 ms | p95 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|",
        *(t.row() for t in timings),
        "",
    ]
    if latencies:
        p50, p95, _ = _percentiles(latencies)
        lines.append(
            f"Update latency, from a scanner's upload answered (`POST /v1/sync/scans`, one "
            f"offline admission, every 0.3–2 s) to the open dashboard showing the new count in "
            f"headless Chromium: {len(latencies)} uploads, p50 {p50:.0f} ms, p95 {p95:.0f} ms, "
            f"max {max(latencies):.0f} ms"
            + (f"; {missed} never showed within 10 s." if missed else ".")
        )
    else:
        lines.append(f"Update latency: no upload showed within 10 s ({missed} tried).")
    lines.append("")
    lines.append(
        "What counting costs the writes (migration 0020's insert trigger; the server stopped, "
        "as the application role, in the seeded table, trigger on and off in alternating "
        f"rounds, {cost.rounds} each, medians): one admission per transaction "
        f"{cost.single_on_us:.0f} µs a scan with the trigger, {cost.single_off_us:.0f} µs "
        f"without (+{cost.single_on_us - cost.single_off_us:.0f} µs); 1,000 admissions in one "
        f"statement {cost.batch_on_us:.1f} µs a scan with it, {cost.batch_off_us:.1f} µs "
        f"without (+{cost.batch_on_us - cost.batch_off_us:.1f} µs). Wall time per scan from one "
        "client, round trips included."
    )
    lines.append("")
    measured = [
        t for t in timings if t.status == 200 and t.label != "dashboard stream, first message"
    ]
    verdicts = []
    for t in measured:
        p95 = _percentiles(t.samples_ms)[1]
        verdicts.append(
            f"{t.label} p95 {p95:.0f} ms: {'met' if p95 <= TARGET_P95_MS else 'missed'}"
        )
    missing = [t.label for t in timings if t.status == 404]
    lines.append(
        f"Target (dashboard and scan-log pages p95 ≤ {TARGET_P95_MS:.0f} ms at 1,000,000 "
        f"scans): "
        + "; ".join(verdicts)
        + (f"; not built yet: {', '.join(missing)}." if missing else ".")
    )
    if plan is QUICK:
        lines.append("")
        lines.append(f"(--quick: {plan.scans:,} scans, not the target's million.)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
