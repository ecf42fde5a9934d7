"""The console's scan log and tickets in a real browser (Debian's Chromium, driven by Playwright)
against a real ``gatehouse-server serve``: two scanners enrolled at two gates through the
enrollment API upload offline admissions of one ticket through the sync API, and the manager
finds the double entry explained, narrows the log, pages it, downloads it as CSV, annuls an
admission after a confirmation, and finds tickets by holder name, id and code text. Another
tenant's manager sees none of it."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from shared.ids import new_id
from sync_server.http.auth import Role, mint_token
from tests.console.conftest import WAIT_MS, ConsoleServer, Venue, make_venue
from tests.console.test_console import set_password_and_sign_in

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ZONE = "Europe/Berlin"
#: Tickets admitted at gate A besides the double entry: more than a page of the log (50).
FILLERS = 50


@dataclass(frozen=True)
class Evening:
    event_id: str
    ticket_id: str
    code: str
    holder: str
    first_scan: str
    conflict_scan: str
    first_at: datetime


def _api(server: ConsoleServer, venue: Venue) -> httpx.Client:
    token = mint_token(
        server.secrets.jwt_secret,
        tenant_id=venue.tenant_id,
        role=Role.MANAGER,
        subject="api-manager",
        ttl_seconds=600,
    )
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})


def _post(client: httpx.Client, path: str, body: dict[str, Any], **headers: str) -> Any:
    answer = client.post(path, json=body, headers=headers)
    assert answer.status_code in {200, 201}, answer.text
    return answer.json()


def _enroll(client: httpx.Client, event_id: str, gate: str) -> dict[str, str]:
    """A scanner enrolled at ``gate`` through the enrollment API: its bearer header."""
    created = _post(client, "/v1/devices/enrollments", {"event_id": event_id, "gate": gate})
    with httpx.Client(base_url=str(client.base_url)) as anonymous:
        answer = anonymous.post(
            "/v1/devices/enroll",
            json={"code": created["code"], "device_name": f"{gate} scanner"},
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


def _upload(client: httpx.Client, device: dict[str, str], scans: list[dict[str, Any]]) -> None:
    answer = client.post("/v1/sync/scans", json={"scans": scans}, headers=device)
    assert answer.status_code == 200, answer.text


def _enrolled_earlier(server: ConsoleServer, event_id: str, hours: int) -> None:
    """Move the event's devices' enrollment ``hours`` back, as if enrolled before the doors
    opened: the server places an offline scan no earlier than its device's enrollment, and the
    test cannot wait for the evening to pass. (In a thread: Playwright's loop holds this one.)"""

    async def update() -> None:
        url = server.env["GATEHOUSE_DATABASE_ADMIN_URL"].replace("postgresql+asyncpg", "postgresql")
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(
                "UPDATE devices SET created_at = created_at - make_interval(hours => $2) "
                "WHERE event_id = $1",
                uuid.UUID(event_id),
                hours,
            )
        finally:
            await connection.close()

    worker = threading.Thread(target=asyncio.run, args=(update(),))
    worker.start()
    worker.join()


def an_evening(server: ConsoleServer, venue: Venue) -> Evening:
    """An event on now (Berlin time) with Zoë's ticket admitted offline at gate B, then 38 s
    later at gate A (a double entry, uploaded first), and 50 more tickets admitted at gate A."""
    now = datetime.now(UTC)
    with _api(server, venue) as api:
        event = _post(
            api,
            "/v1/events",
            {
                "name": "Harbour Lights",
                "venue": "Pier 4",
                "starts_at": (now - timedelta(hours=2)).isoformat(),
                "ends_at": (now + timedelta(hours=4)).isoformat(),
                "time_zone": ZONE,
            },
        )
        kind = _post(
            api, f"/v1/events/{event['id']}/ticket-types", {"name": "Standing", "capacity": 100}
        )

        def buy(name: str, quantity: int) -> list[dict[str, Any]]:
            bought = _post(
                api,
                "/v1/purchases",
                {
                    "ticket_type_id": kind["id"],
                    "quantity": quantity,
                    "holder": {"user_id": f"user-{name}", "name": name},
                },
                **{"Idempotency-Key": str(uuid.uuid4())},
            )
            return list(bought["tickets"])

        (zoe,) = buy("Zoë Quartermaine", 1)
        fillers = buy('=HYPERLINK("http://x")', FILLERS)
        gate_a = _enroll(api, event["id"], "Gate A")
        gate_b = _enroll(api, event["id"], "Gate B")
        _enrolled_earlier(server, event["id"], hours=2)
        first_at = (now - timedelta(minutes=30)).replace(microsecond=0)
        # Made in the order they were scanned (a scan's id is the scanner's UUIDv7 of then).
        earlier = [
            _offline(t["code"], "Gate A", first_at - timedelta(minutes=20, seconds=FILLERS - i))
            for i, t in enumerate(fillers)
        ]
        early = _offline(zoe["code"], "Gate B", first_at)
        late = _offline(zoe["code"], "Gate A", first_at + timedelta(seconds=38))
        # Gate A's scan arrives first; gate B's earlier one takes the admission when it comes.
        _upload(api, gate_a, [late])
        _upload(api, gate_b, [early])
        _upload(api, gate_a, earlier)
    return Evening(
        event_id=event["id"],
        ticket_id=zoe["ticket"]["id"],
        code=zoe["code"],
        holder="Zoë Quartermaine",
        first_scan=early["scan_id"],
        conflict_scan=late["scan_id"],
        first_at=first_at,
    )


@dataclass(frozen=True)
class House:
    venue: Venue
    evening: Evening
    #: The signed-in manager's cookies: each test's browser context starts with them (signing
    #: in for every test would meet the sign-in limit).
    signed_in: Any


@pytest.fixture(scope="module")
def house(console_server: ConsoleServer, browser: Browser) -> House:
    """The venue, its manager signed in, and its evening: shared by the module's tests."""
    venue = make_venue(console_server, "Harbour House")
    context = browser.new_context()
    try:
        set_password_and_sign_in(context.new_page(), console_server, venue)
        state = context.storage_state()
    finally:
        context.close()
    return House(venue=venue, evening=an_evening(console_server, venue), signed_in=state)


@pytest.fixture
def manager(browser: Browser, house: House) -> Iterator[Page]:
    """A page of a browser context signed in as the house's manager."""
    context = browser.new_context(storage_state=house.signed_in)
    context.set_default_timeout(WAIT_MS)
    try:
        page = context.new_page()
        yield page
    finally:
        context.close()


def _log(page: Page, server: ConsoleServer, **params: str) -> None:
    query = "&".join(f"{k}={quote(v)}" for k, v in params.items())
    page.goto(f"{server.url}/console/scans?{query}")
    expect(page.get_by_role("heading", name="Scan log")).to_be_visible()


def _row(page: Page, scan_id: str) -> Any:
    return page.locator(f'[data-testid="scan-row"][data-scan-id="{scan_id}"]')


def test_two_offline_gates_admitting_one_ticket_show_as_a_double_entry_explained(
    manager: Page, console_server: ConsoleServer, house: House
) -> None:
    page, evening = manager, house.evening
    page.goto(f"{console_server.url}/console/events")
    page.get_by_role("link", name="Scan log").click()
    expect(page.get_by_role("heading", name="Scan log")).to_be_visible()
    # The event on now is chosen without asking.
    expect(page.get_by_label("Event", exact=True)).to_have_value(evening.event_id)
    page.get_by_label("Only double entries").check()
    page.get_by_role("button", name="Show scans").click()
    expect(page.get_by_test_id("scan-row")).to_have_count(1)
    row = _row(page, evening.conflict_scan)
    expect(row.get_by_test_id("status")).to_have_text("Double entry")
    first = evening.first_at.astimezone(ZoneInfo(ZONE)).strftime("%H:%M:%S")
    expect(row.get_by_test_id("conflict-explanation")).to_have_text(
        f"Already admitted at {first} at Gate B (device Gate B scanner), 38 s before this scan "
        "at Gate A (device Gate A scanner); both gates were offline."
    )
    assert "conflicts=on" in page.url  # a GET form: the filtered log is a link to share


def test_filters_narrow_the_log_and_the_next_page_holds_the_older_scans(
    manager: Page, console_server: ConsoleServer, house: House
) -> None:
    page, evening = manager, house.evening
    _log(page, console_server, event=evening.event_id)
    expect(page.get_by_test_id("scan-row")).to_have_count(50)
    shown = page.get_by_test_id("scan-row").evaluate_all("rows => rows.map(r => r.dataset.scanId)")
    assert shown[:2] == [evening.conflict_scan, evening.first_scan]  # newest first
    page.locator('a[rel="next"]').click()
    expect(page.get_by_test_id("scan-row")).to_have_count(2)
    older = page.get_by_test_id("scan-row").evaluate_all("rows => rows.map(r => r.dataset.scanId)")
    assert not set(older) & set(shown)
    expect(page.locator('a[rel="next"]')).to_have_count(0)

    page.get_by_label("Gate", exact=True).fill("Gate B")
    page.get_by_role("button", name="Show scans").click()
    expect(page.get_by_test_id("scan-row")).to_have_count(1)
    expect(_row(page, evening.first_scan)).to_be_visible()

    _log(page, console_server, event=evening.event_id, q="zoë q")
    expect(page.get_by_test_id("search-how")).to_have_text("Searching by holder name.")
    ids = page.get_by_test_id("scan-row").evaluate_all("rows => rows.map(r => r.dataset.scanId)")
    assert ids == [evening.conflict_scan, evening.first_scan]

    local = evening.first_at.astimezone(ZoneInfo(ZONE))
    _log(
        page,
        console_server,
        event=evening.event_id,
        since=(local + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S"),
    )
    ids = page.get_by_test_id("scan-row").evaluate_all("rows => rows.map(r => r.dataset.scanId)")
    assert ids == [evening.conflict_scan]

    _log(page, console_server, event=evening.event_id, result="rejected")
    expect(page.get_by_test_id("no-scans")).to_be_visible()


@pytest.mark.parametrize(
    ("params", "field", "sentence"),
    [
        ({"since": "yesterday"}, "since", "A date and time like 2026-12-04T20:15 is needed."),
        ({"result": "maybe"}, "result", "Choose admitted or rejected."),
        ({"event": "not-an-id"}, "event", "Choose one of your events."),
        ({"q": "a\nb"}, "q", "Search with one line of text."),
        (
            {"since": "2027-01-02T10:00", "until": "2027-01-01T10:00"},
            "until",
            "The end must not be before the start.",
        ),
        ({"after": "%%%"}, "form", "That page of the log is not one this console made"),
    ],
)
def test_bad_filters_come_back_as_a_sentence_by_their_field(
    manager: Page,
    console_server: ConsoleServer,
    house: House,
    params: dict[str, str],
    field: str,
    sentence: str,
) -> None:
    page, evening = manager, house.evening
    answer = page.request.get(
        f"{console_server.url}/console/scans",
        params={"event": evening.event_id, **params},
    )
    assert answer.status == 400
    page.goto(answer.url)
    expect(page.locator(f'[data-field-error="{field}"]')).to_contain_text(sentence)
    csv_answer = page.request.get(
        f"{console_server.url}/console/scans.csv",
        params={"event": evening.event_id, **params},
    )
    assert csv_answer.status == 400


def test_the_csv_download_holds_the_filtered_rows_safe_for_spreadsheets(
    manager: Page, console_server: ConsoleServer, house: House, tmp_path: Path
) -> None:
    page, evening = manager, house.evening
    _log(page, console_server, event=evening.event_id, gate="Gate A")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    saved = tmp_path / "scans.csv"
    download.value.save_as(saved)
    header, *lines = list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert header[:6] == ["id", "event_id", "ticket_id", "holder_name", "ticket_type", "gate"]
    assert len(lines) == FILLERS + 1
    column = {name: i for i, name in enumerate(header)}
    assert {line[column["gate"]] for line in lines} == {"Gate A"}
    conflict = next(line for line in lines if line[0] == evening.conflict_scan)
    assert conflict[column["conflict_of"]] == evening.first_scan
    assert conflict[column["holder_name"]] == evening.holder
    assert conflict[column["offline"]] == "true"
    filler = next(line for line in lines if line[0] != evening.conflict_scan)
    # A name a spreadsheet would run as a formula is written as text.
    assert filler[column["holder_name"]] == '\'=HYPERLINK("http://x")'


def test_a_manager_annuls_an_admission_after_confirming(
    manager: Page, console_server: ConsoleServer, house: House
) -> None:
    page, venue, evening = manager, house.venue, house.evening
    _log(page, console_server, event=evening.event_id, conflicts="on")
    _row(page, evening.conflict_scan).get_by_role("link", name=re.compile("^Annul")).click()
    expect(page.get_by_role("heading", name="Annul this admission?")).to_be_visible()
    expect(page.get_by_test_id("annul-consequences")).to_contain_text(venue.email)
    confirm = page.url
    token = re.search(r'name="_csrf" value="([^"]+)"', page.content())
    assert token is not None
    page.get_by_role("button", name="Annul the admission").click()
    expect(page.get_by_role("heading", name="Scan log")).to_be_visible()
    assert "conflicts=on" in page.url  # back where the manager was
    expect(page.get_by_test_id("no-scans")).to_be_visible()  # no double entry stands now
    _log(page, console_server, event=evening.event_id, q=evening.ticket_id)
    row = _row(page, evening.conflict_scan)
    expect(row.get_by_test_id("status")).to_have_text("Annulled")
    expect(row.get_by_test_id("annulled-by")).to_contain_text(f"manager:{venue.email}")
    expect(row.get_by_role("link", name=re.compile("^Annul"))).to_have_count(0)
    # Sent again (a second tab, a reload): harmless, and the log shows it as it is.
    again = page.request.post(
        confirm.split("?")[0], form={"_csrf": token.group(1), "back": "/console/scans"}
    )
    assert again.ok
    assert again.url.endswith("/console/scans")
    page.goto(confirm)
    expect(page.get_by_test_id("annul-status")).to_contain_text("Already annulled")


def test_tickets_are_found_by_holder_name_id_and_code_and_show_their_history(
    manager: Page, console_server: ConsoleServer, house: House
) -> None:
    page, evening = manager, house.evening
    page.goto(f"{console_server.url}/console/events")
    page.get_by_role("link", name="Tickets").click()
    expect(page.get_by_role("heading", name="Tickets")).to_be_visible()
    for text, how in (
        ("zoë quart", "holder name"),
        (evening.ticket_id[:13], "ticket id"),
        (evening.code, "ticket code"),
    ):
        page.get_by_label("Find a ticket").fill(text)
        page.get_by_role("button", name="Find").click()
        expect(page.get_by_role("heading", name=f"1 ticket found by {how}")).to_be_visible()
        row = page.get_by_test_id("ticket-row")
        expect(row).to_contain_text("Harbour Lights")
        expect(row).to_contain_text("Standing")
    page.get_by_role("link", name=evening.holder).click()
    expect(page.get_by_role("heading", name=f"Ticket of {evening.holder}")).to_be_visible()
    expect(page.get_by_test_id("ticket-history")).to_contain_text("purchased")
    expect(page.get_by_test_id("ticket-history")).to_contain_text("checked in")
    expect(page.get_by_test_id("ticket-scans")).to_contain_text("Gate B")
    page.get_by_test_id("ticket-scan-log").click()
    expect(page.get_by_role("heading", name="Scan log")).to_be_visible()
    expect(page.get_by_test_id("scan-row")).to_have_count(2)


def test_another_tenants_manager_sees_nothing_of_the_scans_or_tickets(
    browser: Browser, console_server: ConsoleServer, house: House
) -> None:
    evening = house.evening
    other = make_venue(console_server, "Rival Rooms")
    context = browser.new_context()
    try:
        page = context.new_page()
        set_password_and_sign_in(page, console_server, other)
        base = f"{console_server.url}/console"
        page.goto(f"{base}/tickets/{evening.ticket_id}")
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        expect(page.locator("main")).not_to_contain_text(evening.holder)
        for text in (evening.holder[:4], evening.ticket_id, evening.code):
            page.goto(f"{base}/tickets?q={quote(text)}")
            expect(page.get_by_test_id("no-tickets")).to_be_visible()
        page.goto(f"{base}/scans")
        expect(page.get_by_test_id("no-events")).to_be_visible()
        answer = page.request.get(f"{base}/scans", params={"event": evening.event_id})
        assert answer.status == 400
        assert evening.holder not in answer.text()
        exported = page.request.get(f"{base}/scans.csv", params={"event": evening.event_id})
        assert exported.status == 400
        assert evening.holder not in exported.text()
        for action in ("annul", "resolve"):
            confirm = page.request.get(f"{base}/scans/{evening.conflict_scan}/{action}")
            assert confirm.status == 404
            assert evening.holder not in confirm.text()
    finally:
        context.close()


def test_the_log_and_tickets_fit_a_phone_screen(
    browser: Browser, console_server: ConsoleServer, house: House
) -> None:
    evening = house.evening
    context = browser.new_context(
        viewport={"width": 375, "height": 740}, is_mobile=True, storage_state=house.signed_in
    )
    try:
        page = context.new_page()
        for path in (
            f"/console/scans?event={evening.event_id}",
            f"/console/scans?event={evening.event_id}&conflicts=on",
            f"/console/tickets?q={quote(evening.holder)}",
            f"/console/tickets/{evening.ticket_id}",
            f"/console/scans/{evening.first_scan}/annul",
        ):
            page.goto(f"{console_server.url}{path}")
            assert page.evaluate("document.documentElement.scrollWidth") <= 375, path
    finally:
        context.close()


def test_the_keyboard_reaches_every_filter_and_the_log(
    manager: Page, console_server: ConsoleServer, house: House
) -> None:
    page, evening = manager, house.evening
    _log(page, console_server, event=evening.event_id)
    reached: list[str] = []
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate(
                "(() => { const e = document.activeElement;"
                " return e.id || e.getAttribute('rel') || e.textContent.trim(); })()"
            )
        )
    for wanted in (
        "f-event",
        "f-gate",
        "f-list",
        "f-result",
        "f-reason",
        "f-since",
        "f-until",
        "f-q",
        "f-conflicts",
        "Show scans",
        "Download CSV",
    ):
        assert wanted in reached, (wanted, reached)


def test_a_manager_marks_a_double_entry_resolved_after_confirming(
    manager: Page, console_server: ConsoleServer, house: House
) -> None:
    # An evening of its own: the module's evening has its double entry annulled by another test.
    page, venue, evening = manager, house.venue, an_evening(console_server, house.venue)
    _log(page, console_server, event=evening.event_id, conflicts="on")
    _row(page, evening.conflict_scan).get_by_role(
        "link", name=re.compile("^Mark as resolved")
    ).click()
    expect(page.get_by_role("heading", name="Mark this double entry as resolved?")).to_be_visible()
    expect(page.get_by_test_id("resolve-status")).to_have_text("Double entry")
    expect(page.get_by_test_id("resolve-consequences")).to_contain_text(venue.email)
    confirm = page.url
    token = re.search(r'name="_csrf" value="([^"]+)"', page.content())
    assert token is not None
    page.get_by_role("button", name="Mark as resolved").click()
    expect(page.get_by_role("heading", name="Scan log")).to_be_visible()
    assert "conflicts=on" in page.url  # back where the manager was
    expect(page.get_by_test_id("no-scans")).to_be_visible()  # no double entry stands now
    _log(page, console_server, event=evening.event_id, q=evening.ticket_id)
    row = _row(page, evening.conflict_scan)
    expect(row.get_by_test_id("status")).to_have_text("Admitted")
    expect(row.get_by_test_id("resolved-by")).to_contain_text(f"manager:{venue.email}")
    expect(row.get_by_test_id("conflict-explanation")).to_have_count(0)
    expect(row.get_by_role("link", name=re.compile("^Mark as resolved"))).to_have_count(0)
    # Sent again (a second tab, a reload): harmless.
    again = page.request.post(
        confirm.split("?")[0], form={"_csrf": token.group(1), "back": "/console/scans"}
    )
    assert again.ok
    assert again.url.endswith("/console/scans")
    page.goto(confirm)
    expect(page.get_by_test_id("resolve-status")).to_contain_text("both admissions stand")
    expect(page.get_by_role("button", name="Mark as resolved")).to_have_count(0)
