"""Screenshots of the managers' console, from the real pages: ``.venv/bin/python
docs/images/make_console.py`` (after ``./dev setup``, with Postgres and Redis running) makes
every ``docs/images/console-*.png``.

It starts ``gatehouse-server serve`` on a throw-away database, makes a demo venue and its
manager with the command line (``tenant create``, ``user create``), sets the password through
the one-time link and builds a few events in the console, as a manager would. For an evening
on now it sells tickets to invented holders, enrolls three scanners through the enrollment API,
uploads their scans through the sync API (two gates admitting one ticket while offline: a
double entry) and their heartbeats, lets one gate fall silent, and adds a check-in list with a
rule; then it shows the devices, the "Enroll a gate" QR code, the scan log, a ticket's history
and the check-in lists. A second server, with 200,000 scans seeded as ``./dev bench console``
does, gives the live dashboard (``dashboard_shots``). Debian's chromium, driven by Playwright,
takes every image at desktop and phone width; nothing is drawn by hand."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import asyncpg
import httpx
from playwright.sync_api import Browser, Page, sync_playwright

if TYPE_CHECKING:
    from playwright._impl._api_structures import SetCookieParam

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.console import (  # noqa: E402 - after the path is set
    _count_seeded,
    _make_manager,
    _set_up,
    _upload_body,
    console_session,
    insert_tickets_sync,
)
from benchmarks.console_seed import SeedPlan, seed  # noqa: E402
from benchmarks.server_harness import (  # noqa: E402
    VENV_BIN,
    BenchDatabase,
    Secrets,
    Seeder,
    Server,
    fresh_database,
    gatehouse_serve_command,
    restartable_port,
    server_env,
)
from shared.ids import new_id  # noqa: E402
from sync_server.http.auth import Role, mint_token  # noqa: E402

OUT = Path(__file__).resolve().parent
PASSWORD = "demo password for screenshots"  # noqa: S105 - a throw-away demo account
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EVENTS = [
    ("Harbour Lights Festival", "Pier 4", "2027-07-09T16:00", "2027-07-11T23:00", "Europe/Lisbon"),
    (
        "Winter Orchestra Night",
        "Concert Hall",
        "2027-01-22T19:30",
        "2027-01-22T22:30",
        "Europe/Berlin",
    ),
    ("Tech Meetup #42", "Old Library", "2027-03-03T18:00", "2027-03-03T21:00", "UTC"),
]


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(  # noqa: S603 - our own console script
        [str(VENV_BIN / "gatehouse-server"), *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def create_event(page: Page, event: tuple[str, str, str, str, str]) -> None:
    name, venue, starts, ends, zone = event
    page.get_by_label("Name").fill(name)
    page.get_by_label("Venue").fill(venue)
    page.get_by_label("Starts").fill(starts)
    page.get_by_label("Ends").fill(ends)
    page.get_by_label("Time zone").select_option(zone)
    page.get_by_role("button", name="Create event").click()
    page.get_by_role("heading", name=name, exact=True).wait_for()


def add_type(page: Page, name: str, capacity: str) -> None:
    page.get_by_label("Name").fill(name)
    page.get_by_label("Capacity").fill(capacity)
    page.get_by_role("button", name="Add ticket type").click()
    page.get_by_test_id("ticket-types").get_by_text(name, exact=True).wait_for()


#: The evening on now: who bought tickets (invented), and at which gate each was admitted.
HOLDERS = [
    ("Mara Ellingsen", "Standing", "North"),
    ("Tobias Quint", "Standing", "North"),
    ("Ines Valbuena", "Standing", "South"),
    ("Oskar Lindqvist", "Balcony", "East"),
    ("Priya Ramanathan", "Standing", "North"),
    ("Jonah Okafor", "Standing", "South"),
    ("Lea Brandt", "Balcony", "East"),
    ("Matteo Ferri", "Standing", "South"),
]
#: Admitted at two gates while both were offline: the scan log's double entry.
TWICE = "Mara Ellingsen"
#: The gates' scanners: queued scans in their latest heartbeat, and whether they fall silent.
GATES = {"North": (0, False), "South": (3, False), "East": (7, True)}


@dataclass(frozen=True)
class Evening:
    event_id: str
    name: str
    twice_ticket: str


class Api:
    """The venue's manager on the JSON API (a bearer token signed with the server's secret)."""

    def __init__(self, base: str, keys: Secrets, tenant: str) -> None:
        token = mint_token(
            keys.jwt_secret,
            tenant_id=uuid.UUID(tenant),
            role=Role.MANAGER,
            subject="screenshots",
            ttl_seconds=600,
        )
        self.base = base
        self.http = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def post(self, path: str, body: dict[str, Any], **headers: str) -> Any:
        answer = self.http.post(path, json=body, headers=headers)
        assert answer.status_code in {200, 201, 204}, answer.text
        return answer.json() if answer.content else None

    def enroll(self, event_id: str, gate: str) -> dict[str, str]:
        """A scanner enrolled at ``gate`` through the enrollment API: its bearer header."""
        created = self.post("/v1/devices/enrollments", {"event_id": event_id, "gate": gate})
        answer = httpx.post(
            f"{self.base}/v1/devices/enroll",
            json={"code": created["code"], "device_name": f"Gate PC {gate}"},
        )
        assert answer.status_code == 201, answer.text
        return {"Authorization": f"Bearer {answer.json()['device_token']}"}


def _offline(code: str, gate: str, at: datetime) -> dict[str, Any]:
    """A scan a gate admitted while offline, as the scanner uploads it."""
    return {
        "scan_id": str(new_id()),
        "code": code,
        "gate": gate,
        "direction": "entry",
        "scanned_at": at.isoformat(),
        "clock_offset_ms": 0,
        "device_result": "admitted",
    }


def _owner_sql(database: BenchDatabase, statement: str, *args: object) -> None:
    """What only time would do (devices enrolled hours ago, a gate silent for a while), done as
    the tests do it: in the database, as its owner."""

    async def run() -> None:
        connection = await asyncpg.connect(database.owner_dsn)
        try:
            await connection.execute(statement, *args)
        finally:
            await connection.close()

    asyncio.run(run())


def make_evening(base: str, keys: Secrets, tenant: str, database: BenchDatabase) -> Evening:
    """An event on now with tickets sold, check-in lists (one with a rule), three scanners
    enrolled, their scans uploaded (one ticket admitted at two offline gates) and their
    heartbeats; East has not been heard from for 25 minutes."""
    now = datetime.now(UTC)
    api = Api(base, keys, tenant)
    name = "Riverside Friday Night"
    event = api.post(
        "/v1/events",
        {
            "name": name,
            "venue": "Main hall",
            "starts_at": (now - timedelta(hours=2)).isoformat(),
            "ends_at": (now + timedelta(hours=4)).isoformat(),
            "time_zone": "Europe/Lisbon",
        },
    )
    path = f"/v1/events/{event['id']}"
    types = {
        kind: api.post(f"{path}/ticket-types", {"name": kind, "capacity": capacity})["id"]
        for kind, capacity in (("Standing", 1800), ("Balcony", 240))
    }
    api.post(
        f"{path}/checkin-lists",
        {
            "name": "Floor",
            "ticket_type_ids": [types["Standing"]],
            "gates": ["North", "South"],
            "zone": "Main floor",
        },
    )
    api.post(
        f"{path}/checkin-lists",
        {
            "name": "Balcony",
            "ticket_type_ids": [types["Balcony"]],
            "gates": ["East"],
            "zone": "Balcony",
            "allow_reentry": True,
            "rules": {"<": [{"var": "entries_today"}, 3]},
        },
    )
    codes: dict[str, str] = {}
    tickets: dict[str, str] = {}
    for i, (holder, kind, _gate) in enumerate(HOLDERS):
        bought = api.post(
            "/v1/purchases",
            {
                "ticket_type_id": types[kind],
                "quantity": 1,
                "holder": {"user_id": f"customer-{i}", "name": holder},
            },
            **{"Idempotency-Key": str(uuid.uuid4())},
        )
        codes[holder] = bought["tickets"][0]["code"]
        tickets[holder] = bought["tickets"][0]["ticket"]["id"]
    devices = {gate: api.enroll(event["id"], gate) for gate in GATES}
    # Enrolled before the doors opened: the server places an offline scan no earlier.
    _owner_sql(
        database,
        "UPDATE devices SET created_at = created_at - interval '2 hours' WHERE event_id = $1",
        uuid.UUID(event["id"]),
    )
    first_at = (now - timedelta(minutes=40)).replace(microsecond=0)
    uploads: dict[str, list[dict[str, Any]]] = {gate: [] for gate in GATES}
    for i, (holder, _kind, gate) in enumerate(HOLDERS):
        if holder == TWICE:
            continue
        uploads[gate].append(_offline(codes[holder], gate, first_at + timedelta(minutes=3 * i)))
    # The double entry: admitted at South while offline, 38 s later at North, offline too.
    uploads["North"].append(
        _offline(codes[TWICE], "North", first_at + timedelta(minutes=31, seconds=38))
    )
    uploads["South"].append(_offline(codes[TWICE], "South", first_at + timedelta(minutes=31)))
    for gate, header in devices.items():
        # Made in the order they were scanned (a scan's id is the scanner's UUIDv7 of then).
        scans = sorted(uploads[gate], key=lambda scan: str(scan["scanned_at"]))
        answer = api.http.post("/v1/sync/scans", json={"scans": scans}, headers=header)
        assert answer.status_code == 200, answer.text
        queued, _silent = GATES[gate]
        beat = api.http.post(
            "/v1/devices/me/heartbeat",
            json={
                "queued_scans": queued,
                "oldest_queued_at": (now - timedelta(minutes=2)).isoformat() if queued else None,
                "app_version": "1.4.0",
                "sync_interval_seconds": 15,
                "last_sync_at": now.isoformat(),
            },
            headers=header,
        )
        assert beat.status_code == 204, beat.text
    for gate, (_queued, silent) in GATES.items():
        if silent:
            _owner_sql(
                database,
                "UPDATE devices SET last_seen_at = last_seen_at - interval '25 minutes', "
                "heartbeat_at = heartbeat_at - interval '25 minutes', "
                "last_sync_at = last_sync_at - interval '25 minutes', "
                "oldest_queued_at = oldest_queued_at - interval '25 minutes' "
                "WHERE event_id = $1 AND gate = $2",
                uuid.UUID(event["id"]),
                gate,
            )
    api.http.close()
    return Evening(event_id=event["id"], name=name, twice_ticket=tickets[TWICE])


def evening_shots(browser: Browser, page: Page, base: str, evening: Evening) -> None:
    """The devices, "Enroll a gate", the scan log, a ticket and the check-in lists."""
    page.goto(f"{base}/console/devices?event={evening.event_id}")
    page.get_by_test_id("devices").get_by_text("Gate PC East").wait_for()
    page.screenshot(path=OUT / "console-devices.png", full_page=True)
    page.get_by_role("link", name="Enroll a gate").click()
    page.get_by_label("Event").select_option(label=evening.name)
    page.get_by_label("Gate name").fill("West")
    page.get_by_role("button", name="Show the enrollment code").click()
    page.get_by_role("heading", name="Enroll gate West").wait_for()
    page.get_by_test_id("enrollment-qr").wait_for()
    page.screenshot(path=OUT / "console-enroll-qr.png", full_page=True)
    page.goto(f"{base}/console/scans?event={evening.event_id}")
    page.get_by_test_id("conflict-explanation").first.wait_for()
    page.screenshot(path=OUT / "console-scan-log.png", full_page=True)
    page.goto(f"{base}/console/tickets/{evening.twice_ticket}")
    page.get_by_role("heading", name=re.compile(TWICE)).first.wait_for()
    page.screenshot(path=OUT / "console-ticket.png", full_page=True)
    page.goto(f"{base}/console/events/{evening.event_id}/checkin-lists")
    page.get_by_test_id("checkin-lists").get_by_text("With a rule").wait_for()
    page.screenshot(path=OUT / "console-checkin-list.png", full_page=True)
    phone = browser.new_page(
        viewport={"width": 375, "height": 812}, device_scale_factor=2, is_mobile=True
    )
    # A cookie as read is a cookie to set (Playwright types the two apart).
    phone.context.add_cookies(cast("list[SetCookieParam]", page.context.cookies()))
    phone.goto(f"{base}/console/scans?event={evening.event_id}")
    phone.get_by_test_id("conflict-explanation").first.wait_for()
    # The log itself, not its filters: its heading at the top of the screen.
    phone.get_by_role("heading", name=re.compile("^Scans at")).evaluate("h => h.scrollIntoView()")
    phone.screenshot(path=OUT / "console-scan-log-phone.png")
    phone.close()


SCANS = 200_000


def dashboard_shots() -> None:
    """The live dashboard, on its own server: an event made through the API as ``./dev bench
    console`` does (20 gates, three check-in lists with zones, a scanner at each gate), 200,000
    scans over the last four hours written with the benchmark's seeding, a manager signed in
    through the console's forms, and a scan uploaded through a scanner's API while the page is
    open."""
    keys = Secrets()
    with fresh_database("screens", prefix="gatehouse_docs") as db:
        port = restartable_port()
        with Server(gatehouse_serve_command(port), port, server_env(db, keys)) as server:
            seeder = Seeder(db, keys)
            seeder.create_tenant("Riverside Arena")
            venue = _set_up(port, seeder)
            plan = SeedPlan(
                tenant_id=venue.event.tenant_id,
                event_id=venue.event.event_id,
                lists=tuple(venue.lists),
                devices={g: d.device_id for g, d in venue.devices.items()},
                scans=SCANS,
                hours=4.0,
                now=datetime.now(UTC),
            )
            asyncio.run(seed(db.owner_dsn, plan))
            asyncio.run(_count_seeded(db.owner_dsn, venue.event.event_id))
            fresh = insert_tickets_sync(db.owner_dsn, venue.event, 5)
            codes = seeder.mint_codes(venue.event, fresh)
            link = asyncio.run(_make_manager(seeder, venue.manager_email))
            client = console_session(server.base, venue.manager_email, link, PASSWORD)
            cookie = client.cookies["gatehouse_console"]
            client.close()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                try:
                    for name, width, height in (
                        ("console-dashboard.png", 1280, 1500),
                        ("console-dashboard-phone.png", 390, 2200),
                    ):
                        context = browser.new_context(viewport={"width": width, "height": height})
                        context.add_cookies(
                            [
                                {
                                    "name": "gatehouse_console",
                                    "value": cookie,
                                    "url": f"{server.base}/console/",
                                }
                            ]
                        )
                        page = context.new_page()
                        page.goto(f"{server.base}/console/dashboard")
                        page.wait_for_function(
                            "() => document.querySelector('[data-live-status]')"
                            ".textContent.startsWith('Live')"
                        )
                        if codes:  # a scan arriving while the page is open
                            device = venue.devices["Gate 1"]
                            httpx.post(
                                f"{server.base}/v1/sync/scans",
                                content=_upload_body(device, codes.pop()),
                                headers={
                                    "Content-Type": "application/json",
                                    "Authorization": f"Bearer {device.token}",
                                },
                            ).raise_for_status()
                            time.sleep(1.5)
                        page.screenshot(path=str(OUT / name), full_page=True)
                        context.close()
                finally:
                    browser.close()


def main() -> None:
    keys, port = Secrets(), restartable_port()
    with fresh_database("screens", prefix="gatehouse_docs") as database:
        env = server_env(database, keys, GATEHOUSE_ENV="test", GATEHOUSE_PORT=str(port))
        with Server(gatehouse_serve_command(port, workers=1), port, env) as server:
            tenant = cli(env, "tenant", "create", "Riverside Arena").strip()
            out = cli(env, "user", "create", "--tenant", tenant, "--email", "ops@riverside.example")
            link = re.search(r"(http://\S+/console/set-password\?token=\S+)", out)
            assert link is not None, out
            evening = make_evening(server.base, keys, tenant, database)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                page = browser.new_page(viewport={"width": 1200, "height": 760})
                page.goto(link.group(1))
                page.get_by_label("New password").fill(PASSWORD)
                page.get_by_label("The same password again").fill(PASSWORD)
                page.screenshot(path=OUT / "console-set-password.png")
                page.get_by_role("button", name="Set password").click()
                page.get_by_role("status").wait_for()
                page.get_by_label("Email").fill("ops@riverside.example")
                page.get_by_label("Password").fill("a wrong guess")
                page.get_by_role("button", name="Sign in").click()
                page.locator('[data-field-error="password"]').get_by_text("do not match").wait_for()
                page.screenshot(path=OUT / "console-sign-in-refused.png")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                page.get_by_role("heading", name="Events", exact=True).wait_for()
                for event in EVENTS:
                    page.goto(f"{server.base}/console/events")
                    create_event(page, event)
                    add_type(page, "General admission", "4500")
                    add_type(page, "VIP", "250")
                page.goto(f"{server.base}/console/events")
                page.screenshot(path=OUT / "console-events.png", full_page=True)
                page.get_by_label("Venue").fill("Pier 4")
                page.get_by_label("Starts").fill("2027-08-01T22:00")
                page.get_by_label("Ends").fill("2027-08-01T20:00")
                page.get_by_role("button", name="Create event").click()
                page.locator('[data-field-error="name"]').get_by_text("Give").wait_for()
                page.screenshot(path=OUT / "console-event-errors.png", full_page=True)
                page.goto(f"{server.base}/console/events")
                page.get_by_role("link", name=EVENTS[0][0]).click()
                page.get_by_role("heading", name=EVENTS[0][0], exact=True).wait_for()
                page.screenshot(path=OUT / "console-event.png", full_page=True)
                phone = browser.new_page(
                    viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
                )
                # A cookie as read is a cookie to set (Playwright types the two apart).
                phone.context.add_cookies(cast("list[SetCookieParam]", page.context.cookies()))
                phone.goto(f"{server.base}/console/events")
                phone.screenshot(path=OUT / "console-events-phone.png")
                evening_shots(browser, page, server.base, evening)
                browser.close()
    dashboard_shots()
    for png in sorted(OUT.glob("console-*.png")):
        print(png.relative_to(ROOT))


if __name__ == "__main__":
    main()
