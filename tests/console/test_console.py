"""The managers' console in a real browser (Debian's Chromium, driven by Playwright) against a
real ``gatehouse-server serve`` on Postgres and Redis: signing in with the one-time link,
events and ticket types, and the ways in that must stay shut."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from sync_server.http.auth import Role, mint_token
from tests.console.conftest import ConsoleServer, Venue, make_venue

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASSWORD = "correct horse battery staple"  # noqa: S105 - a test account's


def set_password_and_sign_in(page: Page, server: ConsoleServer, venue: Venue) -> None:
    page.goto(venue.link)
    expect(page.get_by_role("heading", name="Set your password")).to_be_visible()
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("The same password again").fill(PASSWORD)
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("status")).to_have_text("Your password is set. Sign in with it.")
    sign_in(page, server, venue.email, PASSWORD)
    expect(page.get_by_role("heading", name="Events", exact=True)).to_be_visible()


def sign_in(page: Page, server: ConsoleServer, email: str, password: str) -> None:
    if "/console/sign-in" not in page.url:
        page.goto(f"{server.url}/console/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def create_event(page: Page, name: str) -> None:
    page.get_by_label("Name").fill(name)
    page.get_by_label("Venue").fill("Main hall")
    page.get_by_label("Starts").fill("2027-06-01T19:00")
    page.get_by_label("Ends").fill("2027-06-01T23:30")
    page.get_by_label("Time zone").select_option("Europe/Berlin")
    page.get_by_role("button", name="Create event").click()
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()


def session_cookie(page: Page) -> str:
    cookies = {c["name"]: c for c in page.context.cookies()}
    cookie = cookies["gatehouse_console"]
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Lax"
    return str(cookie["value"])


def test_a_manager_sets_a_password_signs_in_and_creates_an_event_and_a_ticket_type(
    page: Page, console_server: ConsoleServer, venue: Venue
) -> None:
    set_password_and_sign_in(page, console_server, venue)
    expect(page.get_by_test_id("tenant-name")).to_have_text(venue.name)
    expect(page.get_by_test_id("no-events")).to_be_visible()

    create_event(page, "Summer Gala")
    expect(page.get_by_role("heading", name="Summer Gala")).to_be_visible()
    expect(page.locator(".facts")).to_contain_text("Europe/Berlin")
    expect(page.locator(".facts")).to_contain_text("2027-06-01 19:00")

    page.get_by_label("Name").fill("Standing")
    page.get_by_label("Capacity").fill("1500")
    page.get_by_role("button", name="Add ticket type").click()
    rows = page.get_by_test_id("ticket-types").locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Standing")
    expect(rows.first).to_contain_text("1,500")

    page.get_by_role("navigation").get_by_role("link", name="Events").click()
    expect(page.get_by_test_id("event-list")).to_contain_text("Summer Gala")

    # The same event through the bearer-token API: one way to create an event, the domain's.
    token = mint_token(
        console_server.secrets.jwt_secret,
        tenant_id=venue.tenant_id,
        role=Role.MANAGER,
        subject="api-check",
        ttl_seconds=300,
    )
    events = httpx.get(
        f"{console_server.url}/v1/events", headers={"Authorization": f"Bearer {token}"}
    ).json()["items"]
    assert [(e["name"], e["time_zone"]) for e in events] == [("Summer Gala", "Europe/Berlin")]


def test_mistakes_in_the_forms_come_back_as_sentences_next_to_the_fields(
    page: Page, console_server: ConsoleServer, venue: Venue
) -> None:
    set_password_and_sign_in(page, console_server, venue)
    page.get_by_label("Venue").fill("Main hall")
    page.get_by_label("Starts").fill("2027-06-01T23:00")
    page.get_by_label("Ends").fill("2027-06-01T19:00")
    page.get_by_role("button", name="Create event").click()
    expect(page.locator('[data-field-error="name"]')).to_have_text("Give the event's name.")
    expect(page.locator('[data-field-error="ends_at"]')).to_have_text(
        "The event must end after it starts."
    )
    expect(page.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Venue")).to_have_value("Main hall")  # what was typed stays

    create_event(page, "Night Market")
    page.get_by_label("Name").fill("Entry")
    page.get_by_label("Capacity").fill("lots")
    page.get_by_role("button", name="Add ticket type").click()
    expect(page.locator('[data-field-error="capacity"]')).to_have_text(
        "Give the capacity as a whole number from 0 to 10,000,000."
    )
    page.get_by_label("Capacity").fill("10")
    page.get_by_role("button", name="Add ticket type").click()
    expect(page.get_by_test_id("ticket-types")).to_contain_text("Entry")
    page.get_by_label("Name").fill("Entry")
    page.get_by_label("Capacity").fill("5")
    page.get_by_role("button", name="Add ticket type").click()
    expect(page.locator('[data-field-error="name"]')).to_have_text(
        "The event already has a ticket type named 'Entry'."
    )


def test_a_wrong_password_is_refused_with_a_sentence(
    page: Page, console_server: ConsoleServer, venue: Venue
) -> None:
    set_password_and_sign_in(page, console_server, venue)
    page.context.clear_cookies()
    sign_in(page, console_server, venue.email, "not the password at all")
    expect(page.locator('[data-field-error="password"]')).to_have_text(
        "That email and password do not match an account. Try again."
    )
    assert "gatehouse_console" not in {c["name"] for c in page.context.cookies()}
    page.goto(f"{console_server.url}/console/events")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_the_one_time_link_works_once(
    page: Page, console_server: ConsoleServer, venue: Venue
) -> None:
    set_password_and_sign_in(page, console_server, venue)
    page.goto(venue.link)
    expect(page.get_by_role("heading", name="This link does not work")).to_be_visible()


def test_guessing_passwords_is_stopped_by_the_sign_in_limit(
    console_server: ConsoleServer, venue: Venue
) -> None:
    with httpx.Client(base_url=console_server.url) as client:
        form = client.get("/console/sign-in")
        csrf = re.search(r'name="_csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        # The limit counts per clock minute (a fixed window): twelve attempts that straddle a
        # minute's end would meet two fresh counts. Start them early in a minute.
        if time.time() % 60 > 40:
            time.sleep(60 - time.time() % 60 + 0.5)
        statuses = []
        for attempt in range(12):
            answer = client.post(
                "/console/sign-in",
                data={"_csrf": csrf.group(1), "email": venue.email, "password": f"guess {attempt}"},
            )
            statuses.append(answer.status_code)
        assert statuses[:10] == [400] * 10
        assert statuses[10:] == [429, 429]
        assert "Too many sign-in attempts." in answer.text


def test_a_scanners_bearer_token_opens_no_console_page_and_the_cookie_opens_no_api(
    page: Page, console_server: ConsoleServer, venue: Venue
) -> None:
    set_password_and_sign_in(page, console_server, venue)
    create_event(page, "Token Night")
    expect(page.get_by_role("heading", name="Token Night")).to_be_visible()
    cookie = session_cookie(page)
    scanner = mint_token(
        console_server.secrets.jwt_secret,
        tenant_id=venue.tenant_id,
        role=Role.SCANNER,
        subject="gate-a",
        ttl_seconds=300,
        device_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        gate="A",
    )
    with httpx.Client(base_url=console_server.url) as client:
        answer = client.get("/console/events", headers={"Authorization": f"Bearer {scanner}"})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/sign-in"
        followed = client.get(
            "/console/events",
            headers={"Authorization": f"Bearer {scanner}"},
            follow_redirects=True,
        )
        assert "Token Night" not in followed.text
    with httpx.Client(base_url=console_server.url, cookies={"gatehouse_console": cookie}) as c:
        assert c.get("/v1/events").status_code == 401


class _AttackerPage(BaseHTTPRequestHandler):
    """Another site: a page whose form posts to the console when it loads."""

    target = ""

    def do_GET(self) -> None:
        body = (
            "<!doctype html><title>win a prize</title>"
            f'<form id="f" method="post" action="{self.target}/console/events">'
            '<input name="name" value="Forged"><input name="venue" value="Nowhere">'
            '<input name="starts_at" value="2027-01-01T10:00">'
            '<input name="ends_at" value="2027-01-01T12:00">'
            '<input name="_csrf" value="guessed"></form>'
            "<script>document.getElementById('f').submit()</script>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def attacker_site(console_server: ConsoleServer) -> Iterator[str]:
    handler = type("Attacker", (_AttackerPage,), {"target": console_server.url})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # localhost is another site than 127.0.0.1 to the browser.
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_cross_site_post_is_refused(
    page: Page, console_server: ConsoleServer, venue: Venue, attacker_site: str
) -> None:
    set_password_and_sign_in(page, console_server, venue)
    with page.expect_response(re.compile(r"/console/events$")) as posted:
        page.goto(attacker_site)
    assert posted.value.status == 403
    page.goto(f"{console_server.url}/console/events")
    expect(page.get_by_test_id("no-events")).to_be_visible()

    # Signed in, from the console's own origin, but without the session's CSRF token; and
    # with it, but from a foreign origin: both refused, and nothing created.
    cookie = session_cookie(page)
    form = {"name": "Forged", "venue": "Nowhere", "starts_at": "2027-01-01T10:00"}
    form["ends_at"] = "2027-01-01T12:00"
    with httpx.Client(base_url=console_server.url, cookies={"gatehouse_console": cookie}) as c:
        token = re.search(r'name="_csrf" value="([^"]+)"', c.get("/console/events").text)
        assert token is not None
        assert c.post("/console/events", data=form).status_code == 403
        assert (
            c.post(
                "/console/events",
                data={**form, "_csrf": token.group(1)},
                headers={"Origin": "http://evil.example"},
            ).status_code
            == 403
        )
        created = c.post("/console/events", data={**form, "_csrf": token.group(1)})
        assert created.status_code == 303  # the same request, done right, goes through
    page.reload()
    expect(page.get_by_test_id("event-list").locator("li")).to_have_count(1)


def test_another_tenants_manager_sees_nothing_of_this_tenant(
    browser: Browser, page: Page, console_server: ConsoleServer, venue: Venue
) -> None:
    set_password_and_sign_in(page, console_server, venue)
    create_event(page, "Private Party")
    expect(page.get_by_role("heading", name="Private Party")).to_be_visible()
    their_event = page.url

    other = make_venue(console_server, "Other Venue")
    context = browser.new_context()
    try:
        other_page = context.new_page()
        set_password_and_sign_in(other_page, console_server, other)
        expect(other_page.get_by_test_id("tenant-name")).to_have_text("Other Venue")
        expect(other_page.get_by_test_id("no-events")).to_be_visible()
        other_page.goto(their_event)
        expect(other_page.get_by_role("heading", name="Not found")).to_be_visible()
        expect(other_page.locator("main")).not_to_contain_text("Private Party")
        # Adding a ticket type to it through its URL is refused the same way.
        html = other_page.content()
        token = re.search(r'name="_csrf" value="([^"]+)"', html)
        assert token is not None
        answer = other_page.request.post(
            f"{their_event}/ticket-types",
            form={"_csrf": token.group(1), "name": "Sneaky", "capacity": "5"},
        )
        assert answer.status == 404
    finally:
        context.close()
    page.reload()
    expect(page.locator("main")).not_to_contain_text("Sneaky")


def test_sign_out_ends_the_session(page: Page, console_server: ConsoleServer, venue: Venue) -> None:
    set_password_and_sign_in(page, console_server, venue)
    old = session_cookie(page)
    with httpx.Client(base_url=console_server.url, cookies={"gatehouse_console": old}) as client:
        assert client.get("/console/events").status_code == 200
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    with httpx.Client(base_url=console_server.url, cookies={"gatehouse_console": old}) as client:
        answer = client.get("/console/events")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/sign-in"


def test_the_pages_fit_a_phone_screen(
    browser: Browser, console_server: ConsoleServer, venue: Venue
) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    try:
        page = context.new_page()
        set_password_and_sign_in(page, console_server, venue)
        create_event(page, "Phone Check")
        for path in ("/console/events", page.url, "/console/sign-in"):
            page.goto(path if path.startswith("http") else f"{console_server.url}{path}")
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            assert scroll_width <= 375, path
    finally:
        context.close()


def test_the_keyboard_reaches_the_forms(
    page: Page, console_server: ConsoleServer, venue: Venue
) -> None:
    page.goto(f"{console_server.url}/console/sign-in")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the content")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Email")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
