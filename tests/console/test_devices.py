"""The Devices page in a real browser against a real ``gatehouse-server serve``, with a real
scanner core (its store, ``enroll`` and ``SyncEngine`` over HTTP) as the gate: enrolling from
the QR code the page shows, online and offline, the queue it brings back, revoking, and the
ways in that must stay shut."""

from __future__ import annotations

import asyncio
import os
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import cv2
import httpx
import numpy as np
import pytest
import zxingcpp
from playwright.sync_api import Browser, Page, expect

from scanner_app.core.gate import Gate
from scanner_app.core.store import LocalStore
from scanner_app.core.sync.client import ServerClient
from scanner_app.core.sync.engine import SyncEngine, enroll
from shared.enrollment_link import parse_enrollment_link
from shared.wire import ScanUpload
from sync_server.http.auth import Role, mint_token
from tests.console.conftest import WAIT_MS, ConsoleServer, Venue, make_venue
from tests.console.test_console import session_cookie, set_password_and_sign_in

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The scanner core keeps its device token in the OS keyring when there is one: not in a
# developer's (as tests/scanner_app/conftest.py does for the scanner's tests).
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"


class Api:
    """The venue's manager on the JSON API (a bearer token from the server's own secret)."""

    def __init__(self, server: ConsoleServer, tenant_id: uuid.UUID) -> None:
        token = mint_token(
            server.secrets.jwt_secret,
            tenant_id=tenant_id,
            role=Role.MANAGER,
            subject="manager",
            ttl_seconds=3600,
        )
        self.http = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def post(self, path: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
        answer = self.http.post(path, json=body, headers=headers)
        assert answer.status_code in (200, 201), answer.text
        found: dict[str, Any] = answer.json()
        return found

    def event_on_sale(self, name: str) -> tuple[str, list[str]]:
        """An event running now, and the codes of two tickets sold for it."""
        now = datetime.now(UTC)
        event = self.post(
            "/v1/events",
            {
                "name": name,
                "venue": "Main hall",
                "starts_at": (now - timedelta(hours=1)).isoformat(),
                "ends_at": (now + timedelta(days=1)).isoformat(),
            },
        )
        kind = self.post(f"/v1/events/{event['id']}/ticket-types", {"name": "Pass", "capacity": 9})
        purchase = self.post(
            "/v1/purchases",
            {
                "ticket_type_id": kind["id"],
                "quantity": 2,
                "holder": {"user_id": "guest", "name": "Guest"},
            },
            **{"Idempotency-Key": str(uuid.uuid4())},
        )
        return str(event["id"]), [t["code"] for t in purchase["tickets"]]


def backdate_last_contact(server: ConsoleServer, device_id: uuid.UUID, by: timedelta) -> None:
    """Time passes for the server: the device's last contact moves ``by`` into the past, as if
    its syncs had stopped that long ago (the server's clock is the system's; the online window
    is at least a minute). In a thread: Playwright's loop runs in this one."""
    url = server.env["GATEHOUSE_DATABASE_ADMIN_URL"].replace("+asyncpg", "")

    async def move() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(
                "UPDATE devices SET last_seen_at = last_seen_at - $2::interval WHERE id = $1",
                device_id,
                by,
            )
        finally:
            await connection.close()

    failed: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(move())
        except BaseException as error:  # raised again in the test's thread
            failed.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if failed:
        raise failed[0]


class HeldUploads:
    """Clients whose upload waits until ``release``: the time a gate back from hours offline
    spends uploading, stretched until the test has looked at the page."""

    def __init__(self) -> None:
        self.released = threading.Event()

    def client(self, url: str, token: str | None) -> ServerClient:
        client = ServerClient(url, token)
        upload = client.upload

        def held(scans: list[ScanUpload]) -> Any:
            self.released.wait(WAIT_MS / 1000)
            return upload(scans)

        client.upload = held  # type: ignore[method-assign]
        return client


def read_qr(page: Page) -> str:
    """The QR code on the page, as a camera would read it: a screenshot, decoded by zxing."""
    shot = page.get_by_test_id("enrollment-qr").screenshot()
    image = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_GRAYSCALE)
    found = zxingcpp.read_barcodes(image)
    assert len(found) == 1
    return str(found[0].text)


def enroll_gate_on_the_page(page: Page, server: ConsoleServer, event: str, gate: str) -> str:
    """Fill "Enroll a gate"; the link the page shows (after checking the QR says the same)."""
    page.goto(f"{server.url}/console/devices")
    page.get_by_role("link", name="Enroll a gate").click()
    page.get_by_label("Event").select_option(label=event)
    page.get_by_label("Gate name").fill(gate)
    page.get_by_role("button", name="Show the enrollment code").click()
    expect(page.get_by_role("heading", name=f"Enroll gate {gate}")).to_be_visible()
    link = page.get_by_test_id("enrollment-link").inner_text().strip()
    assert read_qr(page) == link
    assert page.get_by_test_id("enrollment-code").inner_text().strip() in link
    return link


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    opened = LocalStore.open(tmp_path / "scanner")
    try:
        yield opened
    finally:
        opened.close()


def device_row(page: Page, gate: str) -> Any:
    return page.get_by_test_id("devices").locator("tbody tr", has_text=gate)


def test_a_gate_enrolled_from_the_qr_on_the_page_goes_offline_returns_with_its_queue_and_is_revoked(
    page: Page, console_server: ConsoleServer, venue: Venue, store: LocalStore
) -> None:
    set_password_and_sign_in(page, console_server, venue)
    api = Api(console_server, venue.tenant_id)
    _, sold = api.event_on_sale("Summer Gala")

    link = parse_enrollment_link(
        enroll_gate_on_the_page(page, console_server, "Summer Gala", "North")
    )
    assert link.server_url == console_server.url
    # The scanner core enrolls from the QR code's text, as the app does with its camera.
    enrollment = enroll(store, link.server_url, link.code, "Gate PC 1")
    held = HeldUploads()
    engine = SyncEngine(store, client_factory=held.client, interval_seconds=2)
    first = engine.sync_once()
    assert first.ok, first.errors

    page.goto(f"{console_server.url}/console/devices")
    row = device_row(page, "North")
    expect(row).to_contain_text("Online")
    expect(row).to_contain_text("Summer Gala")
    expect(row.get_by_test_id("queued")).to_have_text("0")

    # Its syncs stop: the page (refreshing itself) says offline, and since when.
    backdate_last_contact(console_server, enrollment.device_id, timedelta(minutes=5))
    # No reload: the table refreshes itself every 5 s (htmx).
    expect(row.get_by_test_id("status")).to_contain_text(
        "Offline: no contact for 5 min", timeout=WAIT_MS
    )
    expect(row).not_to_contain_text("Online")

    # Meanwhile it admits people on its own, and queues the scans.
    gate = Gate(store)
    assert gate.scan(sold[0]).admitted
    assert gate.scan(sold[1]).admitted

    # It comes back: while its upload runs, the page shows what it brought back ...
    syncing = threading.Thread(target=engine.sync_once)
    syncing.start()
    try:
        expect(row.get_by_test_id("queued")).to_contain_text("2 (oldest", timeout=WAIT_MS)
        expect(row).to_contain_text("Online")
    finally:
        held.released.set()
        syncing.join()
    # ... and once it is uploaded, nothing.
    expect(row.get_by_test_id("queued")).to_have_text("0", timeout=WAIT_MS)

    # Revoke, after a confirmation that names the device.
    row.get_by_role("link", name="North").click()
    page.get_by_role("link", name="Revoke this device…").click()
    expect(page.get_by_role("heading", name="Revoke gate North?")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text("Gate PC 1")
    page.get_by_role("button", name="Revoke gate North").click()
    expect(page.get_by_test_id("status")).to_contain_text("Revoked by a manager.")
    page.goto(f"{console_server.url}/console/devices")
    expect(page.get_by_test_id("revoked-devices")).to_contain_text("North")
    expect(page.get_by_test_id("no-devices")).to_be_visible()

    # Its token is refused by the API from now on, and the scanner says so.
    report = engine.sync_once()
    assert not report.ok
    assert engine.status().revoked

    # Revoking again changes nothing (a second click, a reloaded form).
    cookie = session_cookie(page)
    revoke = f"/console/devices/{enrollment.device_id}/revoke"
    with httpx.Client(base_url=console_server.url, cookies={"gatehouse_console": cookie}) as c:
        token = re.search(r'name="_csrf" value="([^"]+)"', c.get(revoke).text)
        assert token is not None
        again = c.post(revoke, data={"_csrf": token.group(1)})
        assert again.status_code == 303
        shown = c.get(f"/console/devices/{enrollment.device_id}").text
        assert "Revoked by a manager." in shown


def test_the_enrollment_form_answers_mistakes_with_sentences(
    page: Page, console_server: ConsoleServer, venue: Venue
) -> None:
    set_password_and_sign_in(page, console_server, venue)
    page.goto(f"{console_server.url}/console/devices/enroll")
    expect(page.get_by_test_id("no-events")).to_be_visible()
    Api(console_server, venue.tenant_id).event_on_sale("Winter Ball")
    page.reload()
    with page.expect_response(re.compile(r"/console/devices/enroll$")) as posted:
        page.get_by_role("button", name="Show the enrollment code").click()
    assert posted.value.status == 400
    expect(page.locator('[data-field-error="gate"]')).to_have_text(
        "Name the gate, such as North or VIP entrance."
    )
    expect(page.get_by_label("Gate name")).to_have_attribute("aria-invalid", "true")

    # Forged values: an event that is not one of ours, a validity not offered, a bad filter.
    cookie = session_cookie(page)
    with httpx.Client(base_url=console_server.url, cookies={"gatehouse_console": cookie}) as c:
        token = re.search(r'name="_csrf" value="([^"]+)"', c.get("/console/devices/enroll").text)
        assert token is not None
        answer = c.post(
            "/console/devices/enroll",
            data={"_csrf": token.group(1), "event_id": str(uuid.uuid4()), "gate": "N", "ttl": "9"},
        )
        assert answer.status_code == 400
        assert "That event is not one of yours" in answer.text
        assert "Choose how long the code may be used." in answer.text
        for query in ("not-an-id", str(uuid.uuid4())):
            listed = c.get("/console/devices", params={"event": query})
            assert listed.status_code == 400
            assert "Choose an event from the list." in listed.text or "not one of yours" in (
                listed.text
            )
        assert c.get(f"/console/devices/{uuid.uuid4()}").status_code == 404
        assert c.get("/console/devices/not-an-id").status_code == 404
        assert c.get("/console/devices/table", params={"event": "x"}).status_code == 400


def test_a_post_without_csrf_a_cross_site_post_and_a_scanner_token_are_refused(
    page: Page, console_server: ConsoleServer, venue: Venue, store: LocalStore
) -> None:
    set_password_and_sign_in(page, console_server, venue)
    api = Api(console_server, venue.tenant_id)
    api.event_on_sale("Autumn Fair")
    link = parse_enrollment_link(
        enroll_gate_on_the_page(page, console_server, "Autumn Fair", "East")
    )
    enrolled = enroll(store, link.server_url, link.code, "Gate PC 2")
    device = enrolled.device_id
    revoke = f"/console/devices/{device}/revoke"
    cookie = session_cookie(page)
    with httpx.Client(base_url=console_server.url, cookies={"gatehouse_console": cookie}) as c:
        token = re.search(r'name="_csrf" value="([^"]+)"', c.get(revoke).text)
        assert token is not None
        assert c.post(revoke, data={}).status_code == 403
        cross = c.post(
            revoke, data={"_csrf": token.group(1)}, headers={"Origin": "http://evil.example"}
        )
        assert cross.status_code == 403
        enrolling = c.post(
            "/console/devices/enroll", data={"event_id": str(uuid.uuid4()), "gate": "X"}
        )
        assert enrolling.status_code == 403
    # A scanner's bearer token (this device's) opens no console page.
    scanner_token = mint_token(
        console_server.secrets.jwt_secret,
        tenant_id=venue.tenant_id,
        role=Role.SCANNER,
        subject=str(device),
        ttl_seconds=600,
        device_id=device,
        event_id=enrolled.event_id,
        gate=enrolled.gate,
    )
    with httpx.Client(base_url=console_server.url) as anonymous:
        answer = anonymous.get(
            "/console/devices",
            headers={"Authorization": f"Bearer {scanner_token}"},
            follow_redirects=False,
        )
        assert answer.status_code == 303
        assert answer.headers["location"].endswith("/console/sign-in")
    page.goto(f"{console_server.url}/console/devices")
    expect(device_row(page, "East")).to_contain_text("Not connected since it was enrolled.")


def test_another_tenants_manager_sees_nothing_of_this_tenants_devices(
    browser: Browser, page: Page, console_server: ConsoleServer, venue: Venue, store: LocalStore
) -> None:
    set_password_and_sign_in(page, console_server, venue)
    Api(console_server, venue.tenant_id).event_on_sale("Spring Gala")
    link = parse_enrollment_link(
        enroll_gate_on_the_page(page, console_server, "Spring Gala", "West")
    )
    device = enroll(store, link.server_url, link.code, "Gate PC 3").device_id

    other = make_venue(console_server, "Rival Hall")
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    try:
        theirs = context.new_page()
        set_password_and_sign_in(theirs, console_server, other)
        theirs.goto(f"{console_server.url}/console/devices")
        expect(theirs.get_by_test_id("no-devices")).to_be_visible()
        expect(theirs.get_by_role("main")).not_to_contain_text("West")
        for path in (f"/console/devices/{device}", f"/console/devices/{device}/revoke"):
            answer = theirs.goto(f"{console_server.url}{path}")
            assert answer is not None
            assert answer.status == 404
        # Their revoke by URL, with their own valid CSRF token: 404, and the device lives on.
        cookies = {"gatehouse_console": session_cookie(theirs)}
        with httpx.Client(base_url=console_server.url, cookies=cookies) as c:
            token = re.search(r'name="_csrf" value="([^"]+)"', c.get("/console/devices").text)
            assert token is not None
            revoke = f"/console/devices/{device}/revoke"
            assert c.post(revoke, data={"_csrf": token.group(1)}).status_code == 404
    finally:
        context.close()
    page.goto(f"{console_server.url}/console/devices")
    expect(device_row(page, "West")).to_be_visible()


def test_the_devices_pages_fit_a_phone_screen(
    browser: Browser, console_server: ConsoleServer, venue: Venue, store: LocalStore
) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    context.set_default_timeout(WAIT_MS)
    try:
        page = context.new_page()
        set_password_and_sign_in(page, console_server, venue)
        Api(console_server, venue.tenant_id).event_on_sale("Phone Fair")
        link = parse_enrollment_link(
            enroll_gate_on_the_page(page, console_server, "Phone Fair", "Side door")
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        device = enroll(store, link.server_url, link.code, "Gate PC 4").device_id
        for path in ("/console/devices", f"/console/devices/{device}", "/console/devices/enroll"):
            page.goto(f"{console_server.url}{path}")
            assert page.evaluate("document.documentElement.scrollWidth") <= 375, path
        # The keyboard reaches the enrollment form's fields and its button.
        page.goto(f"{console_server.url}/console/devices/enroll")
        reached = set()
        for _ in range(20):
            page.keyboard.press("Tab")
            reached.add(
                page.evaluate("document.activeElement.name || document.activeElement.textContent")
            )
        assert {"event_id", "gate", "ttl", "Show the enrollment code"} <= reached
    finally:
        context.close()


def test_the_refreshing_table_sends_the_page_to_sign_in_when_the_session_ends(
    page: Page, console_server: ConsoleServer, venue: Venue
) -> None:
    set_password_and_sign_in(page, console_server, venue)
    page.goto(f"{console_server.url}/console/devices")
    expect(page.get_by_test_id("no-devices")).to_be_visible()
    page.context.clear_cookies()
    # The next refresh finds no session: the whole page goes to sign-in, not the table.
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=WAIT_MS)
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    expect(page.get_by_role("heading", name="Devices")).to_have_count(0)
