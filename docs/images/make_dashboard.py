"""Screenshots of the console's live dashboard, from the real page: ``.venv/bin/python
docs/images/make_dashboard.py`` (after ``./dev setup``, with Postgres and Redis running).

It starts ``gatehouse-server serve`` on a throw-away database, makes an event through the API
as ``./dev bench console`` does (20 gates, three check-in lists with zones, a scanner at each
gate), writes 200,000 scans over the last four hours with the benchmark's seeding, signs a
manager in through the console's forms, uploads a few scans through a scanner's API while the
page is open, and saves ``docs/images/console-dashboard*.png`` (desktop and phone width).
Debian's chromium, driven by Playwright, takes them; nothing is drawn by hand."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.console import (  # noqa: E402 - after the path is set
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    _count_seeded,
    _make_manager,
    _set_up,
    _upload_body,
    console_session,
    insert_tickets_sync,
)
from benchmarks.console_seed import SeedPlan, seed  # noqa: E402
from benchmarks.server_harness import (  # noqa: E402
    Secrets,
    Seeder,
    Server,
    fresh_database,
    gatehouse_serve_command,
    restartable_port,
    server_env,
)

OUT = Path(__file__).resolve().parent
SCANS = 200_000


def main() -> None:
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
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
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
    print("screenshots written to", OUT)


if __name__ == "__main__":
    main()
