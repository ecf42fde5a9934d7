"""A real server and a real browser for the console's tests.

* ``console_server`` (module): ``gatehouse-server serve`` on 127.0.0.1 over a throw-away
  database built by the migrations, with fresh secrets and its own Redis key prefix.
* ``browser`` (module): Debian's Chromium, headless, driven by Playwright; closed (and its
  process ended) at the end of the module. Module, not session: while Playwright's sync API is
  open it keeps an asyncio loop running in the main thread, and every later test that calls
  ``asyncio.run`` (most of the suite's fixtures) would fail. No display is needed.
* ``page`` (function): a fresh browser context (no cookies) and a page in it.
* ``venue`` (function): a new tenant with a manager account, made with the command line
  (``gatehouse-server tenant create`` and ``user create``, run in this process), and its
  one-time link.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from playwright.sync_api import Browser, Page, sync_playwright

from benchmarks.server_harness import (
    Secrets,
    Server,
    fresh_database,
    gatehouse_serve_command,
    restartable_port,
    server_env,
)
from sync_server.cli import main as cli_main
from sync_server.console.assets import missing_assets

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: What the tests give a page or an element to appear (a bound, not a measurement).
WAIT_MS = 15_000


@dataclass(frozen=True)
class ConsoleServer:
    url: str
    env: dict[str, str]
    secrets: Secrets

    def cli(self, *args: str) -> str:
        """Run ``gatehouse-server ARGS`` against this server's database; its output. The real
        command, in this process (click's runner): a new interpreter per call cost seconds a
        test. In a thread of its own, since the command runs ``asyncio.run`` and Playwright
        keeps a loop running in this one; with this server's environment alone (the test
        process's own ``GATEHOUSE_*`` variables are taken away for the call)."""
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GATEHOUSE_")}
        env.update(self.env)
        with ThreadPoolExecutor(max_workers=1) as pool:
            done = pool.submit(CliRunner().invoke, cli_main, list(args), env=env).result(60)
        assert done.exit_code == 0, (done.output, done.exception)
        return done.output


@pytest.fixture(scope="module")
def console_server() -> Iterator[ConsoleServer]:
    if missing_assets():
        pytest.fail(f"the console's assets are not installed ({missing_assets()}): ./dev setup")
    keys = Secrets()
    port = restartable_port()
    with fresh_database("console", prefix="gatehouse_test") as database:
        env = server_env(
            database,
            keys,
            GATEHOUSE_ENV="test",
            GATEHOUSE_REDIS_KEY_PREFIX=f"gatehouse-console-test-{secrets.token_hex(4)}:",
            GATEHOUSE_PORT=str(port),
        )
        with Server(gatehouse_serve_command(port, workers=1), port, env) as server:
            yield ConsoleServer(url=server.base, env=env, secrets=keys)


@pytest.fixture(scope="module")
def browser(console_server: ConsoleServer) -> Iterator[Browser]:
    # After the server (whose database set-up runs its own asyncio loop): Playwright's sync
    # API keeps an event loop running in this thread while it is open.
    del console_server
    if not CHROMIUM.exists() or shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is not installed: ./dev setup installs it")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@dataclass(frozen=True)
class Venue:
    tenant_id: uuid.UUID
    name: str
    email: str
    link: str


def make_venue(server: ConsoleServer, name: str) -> Venue:
    tenant_id = uuid.UUID(server.cli("tenant", "create", name).strip())
    email = f"manager-{secrets.token_hex(4)}@example.org"
    out = server.cli("user", "create", "--tenant", str(tenant_id), "--email", email)
    found = re.search(r"(http://\S+/console/set-password\?token=\S+)", out)
    assert found is not None, out
    return Venue(tenant_id=tenant_id, name=name, email=email, link=found.group(1))


@pytest.fixture
def venue(console_server: ConsoleServer) -> Venue:
    return make_venue(console_server, f"Arena {secrets.token_hex(2)}")
