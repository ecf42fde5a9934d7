"""The server address an enrollment code names (docs/console.md, "Enroll a gate"): the
configured public address (``GATEHOUSE_PUBLIC_URL``) when there is one — behind a reverse proxy
the manager's browser and the scanners may not reach the server by the same name — else the
address the manager's browser used."""

from __future__ import annotations

import html
import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from litestar.testing import AsyncTestClient

from shared.enrollment_link import parse_enrollment_link
from sync_server.app import create_app
from sync_server.console.accounts import create_user, set_password, sign_in
from sync_server.console.security import CSRF_FIELD, SESSION_COOKIE, session_csrf
from sync_server.db.engine import Database
from sync_server.settings import HttpSettings, Settings, SettingsError
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import create_event

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

PASSWORD = "a long enough password"  # noqa: S105 - a test account's


async def _link(settings: Settings, tenant: TenantHandle) -> str:
    """Sign a manager in, enroll a gate on the console's form, and read the link off the page."""
    now = datetime.now(UTC)
    database = Database(settings.database)
    try:
        email = f"links-{tenant.id.hex[:12]}@example.org"
        _, link = await create_user(database, tenant.id, email, now)
        assert await set_password(database, link, PASSWORD, now)
        session = await sign_in(database, email, PASSWORD, now)
    finally:
        await database.close()
    assert session is not None
    async with AsyncTestClient(app=create_app(settings)) as client:
        event = await create_event(client, tenant)
        client.cookies.set(SESSION_COOKIE, session)
        page = await client.post(
            "/console/devices/enroll",
            data={
                "event_id": event["id"],
                "gate": "North 1",
                "ttl": "900",
                CSRF_FIELD: session_csrf(session),
            },
        )
    assert page.status_code == 200, page.text
    found = re.search(r'data-testid="enrollment-link">([^<]+)<', page.text)
    assert found is not None, page.text
    return html.unescape(found.group(1))


async def test_the_code_names_the_public_address_when_one_is_set(
    settings: Settings, tenant: TenantHandle
) -> None:
    public = replace(settings, http=replace(settings.http, public_url="https://gates.example.org"))
    link = parse_enrollment_link(await _link(public, tenant))
    assert link.server_url == "https://gates.example.org"


async def test_without_one_the_code_names_the_address_the_browser_used(
    settings: Settings, tenant: TenantHandle
) -> None:
    link = parse_enrollment_link(await _link(settings, tenant), allow_insecure_http=True)
    assert link.server_url == "http://testserver.local"


@pytest.mark.parametrize(
    "value", ["gates.example.org", "ftp://gates.example.org", "https://", "https://x.org/?a=1"]
)
def test_a_public_address_that_is_no_server_address_is_refused_at_start(value: str) -> None:
    with pytest.raises(SettingsError, match="GATEHOUSE_PUBLIC_URL"):
        HttpSettings(public_url=value)
