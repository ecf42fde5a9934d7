"""Screenshots of the managers' console, from the real pages: ``.venv/bin/python
docs/images/make_console.py`` (after ``./dev setup``, with Postgres and Redis running).

It starts ``gatehouse-server serve`` on a throw-away database, makes a demo venue and its
manager with the command line (``tenant create``, ``user create``), sets the password through
the one-time link and builds a few events in the console, as a manager would, then saves
``docs/images/console-*.png`` (desktop and phone width). Debian's chromium, driven by
Playwright, takes them; nothing is drawn by hand."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

from playwright.sync_api import Page, sync_playwright

if TYPE_CHECKING:
    from playwright._impl._api_structures import SetCookieParam

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.server_harness import (  # noqa: E402 - after the path is set
    VENV_BIN,
    Secrets,
    Server,
    fresh_database,
    gatehouse_serve_command,
    restartable_port,
    server_env,
)

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


def main() -> None:
    keys, port = Secrets(), restartable_port()
    with fresh_database("screens", prefix="gatehouse_docs") as database:
        env = server_env(database, keys, GATEHOUSE_ENV="test", GATEHOUSE_PORT=str(port))
        with Server(gatehouse_serve_command(port, workers=1), port, env) as server:
            tenant = cli(env, "tenant", "create", "Riverside Arena").strip()
            out = cli(env, "user", "create", "--tenant", tenant, "--email", "ops@riverside.example")
            link = re.search(r"(http://\S+/console/set-password\?token=\S+)", out)
            assert link is not None, out
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
                browser.close()
    for png in sorted(OUT.glob("console-*.png")):
        print(png.relative_to(ROOT))


if __name__ == "__main__":
    main()
