"""Editing an event's setup in the console, in a real browser (Debian's Chromium, driven by
Playwright) against a real ``gatehouse-server serve``: the event, a ticket type (never below
what is sold), check-in lists with rules, a pretix import; and that another tenant's manager
and a form without its CSRF token get nowhere."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from sync_server.http.auth import Role, mint_token
from tests.console.conftest import ConsoleServer, Venue, make_venue
from tests.console.test_console import create_event, set_password_and_sign_in

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _event_id(page: Page) -> str:
    found = re.search(r"/console/events/([0-9a-f-]{36})", page.url)
    assert found is not None, page.url
    return found.group(1)


def _add_ticket_type(page: Page, name: str, capacity: str) -> None:
    page.get_by_label("Name").fill(name)
    page.get_by_label("Capacity").fill(capacity)
    page.get_by_role("button", name="Add ticket type").click()
    expect(page.get_by_test_id("ticket-types")).to_contain_text(name)


def _buy(server: ConsoleServer, venue: Venue, page: Page, ticket_type: str, quantity: int) -> None:
    """Sell tickets through the API, as a box office would."""
    token = mint_token(
        server.secrets.jwt_secret,
        tenant_id=venue.tenant_id,
        role=Role.MANAGER,
        subject="box-office",
        ttl_seconds=300,
    )
    headers = {"Authorization": f"Bearer {token}"}
    event_id = _event_id(page)
    kinds = httpx.get(f"{server.url}/v1/events/{event_id}/ticket-types", headers=headers).json()
    (kind,) = [k for k in kinds if k["name"] == ticket_type]
    bought = httpx.post(
        f"{server.url}/v1/purchases",
        json={
            "ticket_type_id": kind["id"],
            "quantity": quantity,
            "holder": {"user_id": "u-1", "name": "Ada Guest"},
        },
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert bought.status_code == 201, bought.text


def _api_event(server: ConsoleServer, venue: Venue, page: Page) -> dict[str, Any]:
    """The event of the page, as the API shows it."""
    token = mint_token(
        server.secrets.jwt_secret,
        tenant_id=venue.tenant_id,
        role=Role.MANAGER,
        subject="box-office",
        ttl_seconds=300,
    )
    response = httpx.get(
        f"{server.url}/v1/events/{_event_id(page)}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    event: dict[str, Any] = response.json()
    return event


def test_a_manager_edits_an_event_and_a_ticket_type(
    page: Page, console_server: ConsoleServer, venue: Venue
) -> None:
    set_password_and_sign_in(page, console_server, venue)
    create_event(page, "Harbour Nights")
    _add_ticket_type(page, "Standing", "10")

    page.get_by_role("link", name="Edit event").click()
    expect(page.get_by_role("heading", name="Edit event")).to_be_visible()
    # Prefilled, the times in the event's time zone.
    expect(page.get_by_label("Name")).to_have_value("Harbour Nights")
    expect(page.get_by_label("Starts")).to_have_value("2027-06-01T19:00")
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")

    page.get_by_label("Ends").fill("2027-06-01T18:00")
    page.get_by_role("button", name="Save event").click()
    expect(page.locator('[data-field-error="ends_at"]')).to_have_text(
        "The event must end after it starts."
    )
    expect(page.get_by_label("Ends")).to_have_attribute("aria-invalid", "true")

    grace = page.get_by_label("Tickets expire", exact=False)
    # Empty: the server's default, which the hint names.
    expect(grace).to_have_value("")
    expect(page.locator("#f-expiry_grace_hours-hint")).to_contain_text("server's default: 6 hours")
    grace.fill("a day")
    page.get_by_role("button", name="Save event").click()
    expect(page.locator('[data-field-error="expiry_grace_hours"]')).to_have_text(
        "Give the hours as a number from 0 to 720, such as 6 or 1.5, "
        "or leave it empty for the server's default."
    )
    grace.fill("721")
    page.get_by_role("button", name="Save event").click()
    expect(page.locator('[data-field-error="expiry_grace_hours"]')).to_have_text(
        "Tickets expire at most 720 hours (30 days) after the event ends."
    )

    page.get_by_label("Name").fill("Harbour Nights II")
    page.get_by_label("Starts").fill("2027-06-01T20:00")
    page.get_by_label("Ends").fill("2027-06-02T01:00")
    grace.fill("1,5")
    page.get_by_label("Days").fill("2027-06-01 20:00-01:00 Opening night\n2027-06-02")
    page.get_by_role("button", name="Save event").click()
    expect(page.get_by_role("heading", name="Harbour Nights II", exact=True)).to_be_visible()
    expect(page.locator(".facts")).to_contain_text("2027-06-01 20:00")
    expect(page.locator(".facts")).to_contain_text("2027-06-02 01:00")

    page.get_by_role("link", name="Edit event").click()
    expect(page.get_by_label("Days")).to_have_value(
        "2027-06-01 20:00-01:00 Opening night\n2027-06-02"
    )
    expect(grace).to_have_value("1.5")
    assert _api_event(console_server, venue, page)["expiry_grace_seconds"] == 5400
    page.get_by_label("Days").fill("2027-06-01\n2027-06-01")
    page.get_by_role("button", name="Save event").click()
    expect(page.locator('[data-field-error="days"]')).to_have_text(
        "Line 2 of the days: 2027-06-01 is given twice."
    )
    page.get_by_role("link", name="Harbour Nights II").click()

    _buy(console_server, venue, page, "Standing", 3)
    page.get_by_role("link", name="Edit Standing").click()
    expect(page.get_by_test_id("sold")).to_contain_text("3 sold")
    page.get_by_label("Capacity").fill("2")
    page.get_by_role("button", name="Save ticket type").click()
    expect(page.locator('[data-field-error="capacity"]')).to_have_text(
        "3 tickets of this type are sold already: the capacity can be no less than that."
    )
    page.get_by_label("Capacity").fill("many")
    page.get_by_role("button", name="Save ticket type").click()
    expect(page.locator('[data-field-error="capacity"]')).to_have_text(
        "Give the capacity as a whole number from 0 to 10,000,000."
    )
    page.get_by_label("Name").fill("Standing area")
    page.get_by_label("Capacity").fill("3")
    expect(page.get_by_label("Refunds free the seat", exact=False)).not_to_be_checked()
    page.get_by_label("Refunds free the seat", exact=False).check()
    page.get_by_role("button", name="Save ticket type").click()
    row = page.get_by_test_id("ticket-types").locator("tbody tr").first
    expect(row).to_contain_text("Standing area")
    expect(row.locator("td").nth(1)).to_have_text("3")
    expect(row.locator("td").nth(3)).to_have_text("0")
    page.get_by_role("link", name="Edit Standing area").click()
    expect(page.get_by_label("Refunds free the seat", exact=False)).to_be_checked()


def test_check_in_lists_with_rules_and_a_pretix_import(
    page: Page, console_server: ConsoleServer, venue: Venue
) -> None:
    set_password_and_sign_in(page, console_server, venue)
    create_event(page, "Jazz Weekend")
    _add_ticket_type(page, "VIP", "50")
    page.get_by_role("link", name="Check-in lists").click()
    expect(page.get_by_test_id("no-lists")).to_be_visible()

    new = page.locator("form", has=page.get_by_role("button", name="Create list"))
    new.get_by_label("Name", exact=True).fill("Lounge")
    new.get_by_label("VIP").check()
    new.get_by_label("Gates").fill("North, South")
    new.get_by_label("Rule (JSON Logic)").fill('{"==": [1,')
    new.get_by_role("button", name="Create list").click()
    expect(page.locator('[data-field-error="rules"]')).to_have_text(
        "The rule is not valid JSON: expecting value at line 1, column 11."
    )
    expect(page.get_by_label("Gates")).to_have_value("North, South")  # what was typed stays

    new = page.locator("form", has=page.get_by_role("button", name="Create list"))
    new.get_by_label("Rule (JSON Logic)").fill('{"frobnicate": [1]}')
    new.get_by_role("button", name="Create list").click()
    expect(page.locator('[data-field-error="rules"]')).to_have_text(
        "The rule uses an unknown operator 'frobnicate'."
    )

    rule = {"<": [{"var": "entries_today"}, 2]}
    new = page.locator("form", has=page.get_by_role("button", name="Create list"))
    new.get_by_label("VIP").check()
    new.get_by_label("Rule (JSON Logic)").fill(json.dumps(rule))
    new.get_by_role("button", name="Create list").click()
    expect(page.get_by_role("status")).to_have_text("The check-in list is created.")
    lists = page.get_by_test_id("checkin-lists")
    expect(lists).to_contain_text("Lounge")
    expect(lists).to_contain_text("Ticket types: VIP")
    expect(lists).to_contain_text("Gates: North, South")
    expect(lists).to_contain_text("With a rule")

    # Importing from pretix: first a product the mapping does not know, then right.
    pretix = {
        "name": "Door (pretix)",
        "all_products": False,
        "limit_products": [12],
        "allow_entry_after_exit": False,
        "rules": {},
    }
    page.get_by_label("pretix check-in list (JSON)").fill(json.dumps(pretix))
    page.get_by_label("Mapping").fill("product 12 = Balcony")
    page.get_by_role("button", name="Import list").click()
    expect(page.locator('[data-field-error="mapping"]')).to_have_text(
        "Line 1 of the mapping: the event has no ticket type named 'Balcony'."
    )
    page.get_by_label("Mapping").fill("product 12 = vip")
    page.get_by_role("button", name="Import list").click()
    expect(page.get_by_role("status")).to_have_text(
        "The pretix list is imported: it is in the table below."
    )
    expect(lists).to_contain_text("Door (pretix)")

    # Editing a list: its form is prefilled; then deleting it (no scans: it goes).
    lists.get_by_role("link", name="Lounge").click()
    expect(page.get_by_label("Rule (JSON Logic)")).to_have_value(json.dumps(rule, indent=2))
    page.get_by_label("Zone").fill("Lounge area")
    page.get_by_role("button", name="Save list").click()
    expect(page.get_by_role("status")).to_have_text("The check-in list is saved.")
    expect(lists).to_contain_text("Zone: Lounge area")
    lists.get_by_role("link", name="Door (pretix)").click()
    page.get_by_role("button", name="Delete list").click()
    expect(page.get_by_role("status")).to_have_text("The check-in list is deleted.")
    expect(lists).not_to_contain_text("Door (pretix)")


def test_another_tenants_manager_gets_404_and_a_form_without_its_token_is_refused(
    page: Page, console_server: ConsoleServer, venue: Venue
) -> None:
    set_password_and_sign_in(page, console_server, venue)
    create_event(page, "Private Gala")
    _add_ticket_type(page, "Guest", "5")
    event_path = f"/console/events/{_event_id(page)}"
    type_path = page.get_by_role("link", name="Edit Guest").get_attribute("href")
    assert type_path is not None
    page.get_by_role("link", name="Check-in lists").click()
    new = page.locator("form", has=page.get_by_role("button", name="Create list"))
    new.get_by_label("Name", exact=True).fill("Door")
    new.get_by_role("button", name="Create list").click()
    list_path = (
        page.get_by_test_id("checkin-lists").get_by_role("link", name="Door").get_attribute("href")
    )
    assert list_path is not None

    # A form sent without the page's CSRF token (as another site would send it) changes nothing.
    refused = page.request.post(
        f"{console_server.url}{event_path}/edit",
        form={
            "name": "Hijacked",
            "venue": "x",
            "starts_at": "2027-06-01T19:00",
            "ends_at": "2027-06-01T23:00",
            "time_zone": "UTC",
        },
    )
    assert refused.status == 403
    page.goto(f"{console_server.url}{event_path}")
    expect(page.get_by_role("heading", name="Private Gala", exact=True)).to_be_visible()

    other = make_venue(console_server, "Rival Arena")
    page.context.clear_cookies()
    set_password_and_sign_in(page, console_server, other)
    for path in (
        f"{event_path}/edit",
        type_path,
        f"{event_path}/checkin-lists",
        list_path,
    ):
        response = page.goto(f"{console_server.url}{path}")
        assert response is not None
        assert response.status == 404, path
    # Its own forms, posted at the other tenant's event, find nothing either.
    page.goto(f"{console_server.url}/console/events")
    hidden = page.locator('form.sign-out input[type="hidden"]')
    field, token = hidden.get_attribute("name"), hidden.get_attribute("value")
    assert field is not None
    assert token is not None
    posted = page.request.post(
        f"{console_server.url}{event_path}/edit",
        form={
            field: token,
            "name": "Mine now",
            "venue": "x",
            "starts_at": "2027-06-01T19:00",
            "ends_at": "2027-06-01T23:00",
            "time_zone": "UTC",
        },
        headers={"Origin": console_server.url},
    )
    assert posted.status == 404


UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter(control => control.labels.length === 0).map(control => control.name)"""


def test_the_editing_pages_fit_a_phone_and_label_every_control(
    browser: Browser, console_server: ConsoleServer, venue: Venue
) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    try:
        page = context.new_page()
        set_password_and_sign_in(page, console_server, venue)
        create_event(page, "Phone Edit")
        _add_ticket_type(page, "Weekend pass with a rather long name", "1200")
        event_url = page.url
        type_url = page.get_by_role("link", name="Edit Weekend pass").get_attribute("href")
        page.get_by_role("link", name="Check-in lists").click()
        new = page.locator("form", has=page.get_by_role("button", name="Create list"))
        new.get_by_label("Name", exact=True).fill("Main entrance, north side")
        new.get_by_label("Gates").fill("North gate one, North gate two, North gate three")
        new.get_by_role("button", name="Create list").click()
        expect(page.get_by_role("status")).to_have_text("The check-in list is created.")
        list_url = (
            page.get_by_test_id("checkin-lists")
            .get_by_role("link", name="Main entrance, north side")
            .get_attribute("href")
        )
        for path in (
            event_url,
            f"{event_url}/edit",
            f"{console_server.url}{type_url}",
            f"{event_url}/checkin-lists",
            f"{console_server.url}{list_url}",
        ):
            page.goto(path)
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            assert scroll_width <= 375, path
            assert page.evaluate(UNLABELLED) == [], path
    finally:
        context.close()
