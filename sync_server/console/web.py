"""What every console page shares: rendering a template with the layout's context and the
console's security headers, the signed-in manager (``provide_manager``), the CSRF and
origin check before every handler (``check_request``), the manager's tenant transaction,
and reading a form. Each page module (``pages``, and one per area of the console) holds
its routes in a ``ROUTES`` list that ``router.console_router`` gathers."""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Final

from litestar import Request, Response
from litestar.datastructures import Cookie, State
from litestar.di import NamedDependency
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from sync_server.console.accounts import Manager, session_manager
from sync_server.console.assets import missing_assets
from sync_server.console.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    cross_site,
    csrf_for_page,
    csrf_valid,
    session_token,
)
from sync_server.db.engine import Database
from sync_server.domain.events.schemas import EventOut
from sync_server.domain.events.services import EventService
from sync_server.domain.keys.services import KeyStore
from sync_server.http.auth import Principal, Role
from sync_server.http.dependencies import app_services
from sync_server.http.rate_limiting import RateLimited, client_address, refuse_over
from sync_server.redis.rate_limits import RateLimits

log = logging.getLogger(__name__)

PREFIX: Final = "/console"
#: The console's sections, in the order of the navigation: (key, label, address).
NAV: Final = (
    ("dashboard", "Dashboard", f"{PREFIX}/dashboard"),
    ("devices", "Devices", f"{PREFIX}/devices"),
    ("scans", "Scan log", f"{PREFIX}/scans"),
    ("tickets", "Tickets", f"{PREFIX}/tickets"),
    ("events", "Events", f"{PREFIX}/events"),
)
HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
}

#: The most events a page lists or chooses from (newest first); paging comes with more.
EVENTS_SHOWN: Final = 500

AnyRequest = Request[Any, Any, Any]
#: What a page declares to get the signed-in manager (``provide_manager``).
ManagerDep = NamedDependency[Manager]


class SignInRequired(Exception):
    """The request has no live session of a manager."""


def database(state: State) -> Database:
    found: Database = app_services(state).database
    return found


def now(state: State) -> datetime:
    moment: datetime = app_services(state).clock.now()
    return moment


def render(
    request: AnyRequest,
    template: str,
    *,
    manager: Manager | None = None,
    status: int = 200,
    cookies: list[Cookie] | None = None,
    **context: Any,
) -> Template:
    """A console page: the template with the layout's context (the manager, the CSRF token,
    what assets are missing) and the console's security headers."""
    csrf, csrf_cookie = csrf_for_page(request)
    return Template(
        template_name=template,
        context={
            "manager": manager,
            "csrf": csrf,
            "csrf_field": CSRF_FIELD,
            "missing_assets": missing_assets(),
            "nav": NAV,
            "zone_of": zoneinfo.ZoneInfo,
            "errors": {},
            "values": {},
            **context,
        },
        status_code=status,
        headers=HEADERS,
        cookies=[*(cookies or []), *([csrf_cookie] if csrf_cookie else [])],
    )


def not_found(request: AnyRequest, manager: Manager, current: str) -> Template:
    return render(request, "not_found.html", manager=manager, status=404, current=current)


def see_other(path: str, cookies: list[Cookie] | None = None) -> Redirect:
    """After a form's POST: the browser GETs ``path`` (a console path, without the prefix
    when it starts with '/')."""
    return Redirect(path, status_code=303, headers=HEADERS, cookies=cookies or [])


#: Where a request keeps its session's manager once looked up (``request.state``).
_MANAGER_STATE: Final = "gatehouse_console_manager"


async def _signed_in(request: AnyRequest) -> Manager | None:
    """The manager of the request's live session (None without one), read once a request."""
    if _MANAGER_STATE not in request.state:
        token = session_token(request)
        manager = None
        if token is not None:
            state = request.app.state
            manager = await session_manager(database(state), token, now(state))
            if manager is not None and manager.role != Role.MANAGER.value:
                manager = None
        request.state[_MANAGER_STATE] = manager
    found: Manager | None = request.state[_MANAGER_STATE]
    return found


async def provide_manager(request: AnyRequest) -> Manager:
    """The signed-in manager, or ``SignInRequired`` (the console's handler sends the browser
    to the sign-in page). A bearer token opens no console page: only the session cookie."""
    manager = await _signed_in(request)
    if manager is None:
        raise SignInRequired
    return manager


async def count_request(request: AnyRequest) -> None:
    """The console's share of the rate limits (the HTTP edge leaves its paths to it): a request
    with a live session counts against its manager's limit, as their API calls do — so a venue
    office's managers behind one address do not share the anonymous limit — and any other
    against its client address's. Static files are not counted (served from disk, they cost
    less than the count). Raises ``RateLimited`` (429) over the limit."""
    if request.scope["path"].startswith(f"{PREFIX}/static/"):
        return
    limits: RateLimits = app_services(request.app.state).rate_limits
    manager = await _signed_in(request)
    if manager is not None:
        refuse_over(await limits.hit(manager))
    else:
        refuse_over(await limits.anonymous(client_address(request.scope)))


async def check_request(request: AnyRequest) -> Response[str] | None:
    """Before every console handler: the request is counted (``count_request``), and an unsafe
    request from another site, or without this session's CSRF token, is refused (403) before
    it does anything."""
    await count_request(request)
    if request.method in {"GET", "HEAD", "OPTIONS"}:
        return None
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if cross_site(request) or not csrf_valid(request, sent):
        log.info("console request refused: cross-site or without its CSRF token")
        return Response(
            "This form came from another site or from an old page, so it was not sent. "
            "Go back, reload the page and try again.",
            status_code=403,
            media_type="text/plain",
            headers=HEADERS,
        )
    return None


def too_many_requests(_request: AnyRequest, error: RateLimited) -> Response[str]:
    """A page asked for over the limit: the limit's sentence (when to retry), as text."""
    return Response(
        error.detail,
        status_code=429,
        media_type="text/plain",
        headers={**HEADERS, **error.headers},
    )


def sign_in_required(request: AnyRequest, _error: SignInRequired) -> Response[Any]:
    if request.headers.get("HX-Request") == "true":
        # A fragment htmx fetches (a table refreshing itself) after the session ended: the
        # whole page goes to sign-in, rather than the sign-in page landing inside the table.
        return Response(
            "", status_code=204, headers={**HEADERS, "HX-Redirect": f"{PREFIX}/sign-in"}
        )
    return Redirect(f"{PREFIX}/sign-in", status_code=303, headers=HEADERS)


async def read_form(request: AnyRequest) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


@asynccontextmanager
async def tenant(state: State, manager: Manager) -> AsyncIterator[AsyncSession]:
    """The manager's tenant transaction: row-level security shows it only its own rows."""
    async with database(state).tenant(manager.tenant_id) as session:
        yield session


def principal(manager: Manager) -> Principal:
    """The manager as the API's services know a caller."""
    return Principal(subject=manager.email, tenant_id=manager.tenant_id, role=Role.MANAGER)


def event_service(state: State, session: AsyncSession, manager: Manager) -> EventService:
    keys: KeyStore = app_services(state).keys
    return EventService(session, keys, principal(manager))


async def event_list(state: State, manager: Manager) -> list[EventOut]:
    """The tenant's events, newest first (at most ``EVENTS_SHOWN``)."""
    async with tenant(state, manager) as session:
        service, cursor = event_service(state, session, manager), None
        found: list[EventOut] = []
        while len(found) < EVENTS_SHOWN:
            page = await service.page(cursor, 100)
            found.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    return sorted(found, key=lambda event: event.starts_at, reverse=True)


def current_event(events: list[EventOut], moment: datetime) -> EventOut | None:
    """The event a page opens on when none is named: the one on now, else the next one,
    else the latest that ended."""
    live = [e for e in events if e.ends_at >= moment]
    if live:
        return min(live, key=lambda e: e.starts_at)
    return max(events, key=lambda e: e.ends_at, default=None)
