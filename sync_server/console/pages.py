"""The console's routes: sign-in, the one-time password link, sign-out, and the first pages
(events and their ticket types). Every page but sign-in and set-password needs a signed-in
manager (``provide_manager``), and reads and writes in that manager's tenant transaction, so
row-level security keeps each tenant's console to its own rows, as it does the API. Every
POST passes ``check_request`` (CSRF and origin) first. None of these routes is in the OpenAPI
schema: they answer HTML, not the API's JSON."""

from __future__ import annotations

import hashlib
import logging
import uuid
import zoneinfo
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Final

from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie, State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from sqlalchemy.ext.asyncio import AsyncSession

from sync_server.console.accounts import (
    MAX_PASSWORD_LENGTH,
    SESSION_TTL,
    Manager,
    link_email,
    password_problem,
    session_manager,
    set_password,
    sign_in,
    sign_out,
)
from sync_server.console.assets import STATIC_DIR, TEMPLATES_DIR, missing_assets
from sync_server.console.forms import event_form, ticket_type_form
from sync_server.console.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    cross_site,
    csrf_for_page,
    csrf_valid,
    ended_session_cookie,
    session_cookie,
    session_token,
)
from sync_server.db.engine import Database
from sync_server.domain.events.schemas import EventOut
from sync_server.domain.events.services import EventService
from sync_server.domain.keys.services import KeyStore
from sync_server.http.auth import Principal, Role
from sync_server.http.dependencies import app_services
from sync_server.http.problems import Problem
from sync_server.http.rate_limiting import client_address
from sync_server.redis.rate_limits import RateLimits

log = logging.getLogger(__name__)

PREFIX: Final = "/console"
__all__ = ["TEMPLATES_DIR", "console_router"]
#: Sign-in attempts a minute: per email (guessing one manager's password), and per client
#: address (trying many emails).
SIGN_INS_PER_EMAIL: Final = 10
SIGN_INS_PER_ADDRESS: Final = 30
#: The most events the events page lists (newest first); paging comes with more pages.
EVENTS_SHOWN: Final = 500
TIME_ZONES: Final = sorted(zoneinfo.available_timezones())
NAV: Final = (
    ("dashboard", "Dashboard", None),
    ("devices", "Devices", None),
    ("scans", "Scan log", None),
    ("tickets", "Tickets", None),
    ("events", "Events", f"{PREFIX}/events"),
)
_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
}

AnyRequest = Request[Any, Any, Any]
#: What a page declares to get the signed-in manager (``provide_manager``).
ManagerDep = NamedDependency[Manager]


class SignInRequired(Exception):
    """The request has no live session of a manager."""


def _database(state: State) -> Database:
    database: Database = app_services(state).database
    return database


def _now(state: State) -> datetime:
    now: datetime = app_services(state).clock.now()
    return now


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
        headers=_HEADERS,
        cookies=[*(cookies or []), *([csrf_cookie] if csrf_cookie else [])],
    )


async def provide_manager(request: AnyRequest, state: State) -> Manager:
    """The signed-in manager, or ``SignInRequired`` (the console's handler sends the browser
    to the sign-in page). A bearer token opens no console page: only the session cookie."""
    token = session_token(request)
    if token is None:
        raise SignInRequired
    manager = await session_manager(_database(state), token, _now(state))
    if manager is None or manager.role != Role.MANAGER.value:
        raise SignInRequired
    return manager


async def check_request(request: AnyRequest) -> Response[str] | None:
    """Before every console handler: an unsafe request from another site, or without this
    session's CSRF token, is refused (403) before it does anything."""
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
            headers=_HEADERS,
        )
    return None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _sign_in_required(request: AnyRequest, _error: SignInRequired) -> Response[Any]:
    return Redirect(f"{PREFIX}/sign-in", status_code=303, headers=_HEADERS)


async def _form(request: AnyRequest) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


@asynccontextmanager
async def _tenant(state: State, manager: Manager) -> AsyncIterator[AsyncSession]:
    async with _database(state).tenant(manager.tenant_id) as session:
        yield session


def _events(state: State, session: AsyncSession, manager: Manager) -> EventService:
    keys: KeyStore = app_services(state).keys
    principal = Principal(subject=manager.email, tenant_id=manager.tenant_id, role=Role.MANAGER)
    return EventService(session, keys, principal)


# --- signing in and out ------------------------------------------------------------------------


@get("/", sync_to_thread=False)
def home() -> Redirect:
    return Redirect(f"{PREFIX}/events", status_code=303)


@get("/sign-in")
async def sign_in_page(request: AnyRequest) -> Template:
    return render(request, "sign_in.html")


@post("/sign-in", status_code=200)
async def sign_in_submit(request: AnyRequest, state: State) -> Response[Any]:
    form = await _form(request)
    email, password = form.get("email", "").strip(), form.get("password", "")
    values = {"email": email}
    if not email or not password:
        errors = {}
        if not email:
            errors["email"] = "Enter the email address of your manager account."
        if not password:
            errors["password"] = "Enter your password."  # noqa: S105 - a sentence
        return render(request, "sign_in.html", status=400, errors=errors, values=values)
    limits: RateLimits = app_services(state).rate_limits
    for decision in (
        # The email's hash names its count: no address in Redis, and a key of fixed length.
        await limits.attempts(f"sign-in:email:{_digest(email.lower())}", SIGN_INS_PER_EMAIL),
        await limits.attempts(
            f"sign-in:address:{client_address(request.scope)}", SIGN_INS_PER_ADDRESS
        ),
    ):
        if not decision.allowed:
            return render(
                request,
                "sign_in.html",
                status=429,
                errors={
                    "form": "Too many sign-in attempts. Wait "
                    f"{decision.retry_after} seconds and try again."
                },
                values=values,
            )
    now = _now(state)
    too_long = len(password) > MAX_PASSWORD_LENGTH  # no account has one; argon2 need not see it
    token = None if too_long else await sign_in(_database(state), email, password, now)
    if token is None:
        return render(
            request,
            "sign_in.html",
            status=400,
            errors={"password": "That email and password do not match an account. Try again."},
            values=values,
        )
    return Redirect(
        f"{PREFIX}/events",
        status_code=303,
        headers=_HEADERS,
        cookies=[session_cookie(request, token, int(SESSION_TTL.total_seconds()))],
    )


@get("/set-password")
async def set_password_page(
    request: AnyRequest, state: State, token: FromQuery[str] = ""
) -> Template:
    email = await link_email(_database(state), token, _now(state))
    if email is None:
        return render(request, "link_expired.html", status=404)
    return render(request, "set_password.html", email=email, token=token)


@post("/set-password", status_code=200)
async def set_password_submit(request: AnyRequest, state: State) -> Response[Any]:
    form = await _form(request)
    token, password, again = (
        form.get("token", ""),
        form.get("password", ""),
        form.get("password_again", ""),
    )
    database, now = _database(state), _now(state)
    email = await link_email(database, token, now)
    if email is None:
        return render(request, "link_expired.html", status=404)
    problem = password_problem(password)
    errors = {}
    if problem is not None:
        errors["password"] = problem
    elif password != again:
        errors["password_again"] = "The two passwords differ. Type them again."  # noqa: S105
    if errors or not await set_password(database, token, password, now):
        return render(
            request, "set_password.html", status=400, errors=errors, email=email, token=token
        )
    return render(request, "sign_in.html", notice="Your password is set. Sign in with it.")


@post("/sign-out", status_code=303)
async def sign_out_submit(request: AnyRequest, state: State, manager: ManagerDep) -> Redirect:
    await sign_out(_database(state), manager)
    return Redirect(
        f"{PREFIX}/sign-in",
        status_code=303,
        headers=_HEADERS,
        cookies=[ended_session_cookie(request)],
    )


# --- events ------------------------------------------------------------------------------------


async def _event_list(state: State, manager: Manager) -> list[EventOut]:
    async with _tenant(state, manager) as session:
        service, cursor = _events(state, session, manager), None
        found: list[EventOut] = []
        while len(found) < EVENTS_SHOWN:
            page = await service.page(cursor, 100)
            found.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    return sorted(found, key=lambda event: event.starts_at, reverse=True)


@get("/events")
async def events_page(request: AnyRequest, state: State, manager: ManagerDep) -> Template:
    events = await _event_list(state, manager)
    return render(
        request,
        "events.html",
        manager=manager,
        events=events,
        time_zones=TIME_ZONES,
        current="events",
    )


@post("/events", status_code=200)
async def events_create(request: AnyRequest, state: State, manager: ManagerDep) -> Response[Any]:
    form = await _form(request)
    read = event_form(form)
    if read.value is not None:
        try:
            async with _tenant(state, manager) as session:
                created = await _events(state, session, manager).create(read.value)
        except Problem as problem:
            read.errors["ends_at"] = problem.detail
        else:
            return Redirect(f"{PREFIX}/events/{created.id}", status_code=303, headers=_HEADERS)
    events = await _event_list(state, manager)
    return render(
        request,
        "events.html",
        manager=manager,
        status=400,
        events=events,
        time_zones=TIME_ZONES,
        current="events",
        errors=read.errors,
        values=form,
    )


async def _event_page(
    request: AnyRequest,
    state: State,
    manager: Manager,
    event_id: uuid.UUID,
    *,
    status: int = 200,
    errors: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
) -> Template:
    async with _tenant(state, manager) as session:
        service = _events(state, session, manager)
        try:
            event = await service.get(event_id)
        except Problem:
            return render(request, "not_found.html", manager=manager, status=404, current="events")
        types = await service.ticket_types(event_id)
    return render(
        request,
        "event.html",
        manager=manager,
        status=status,
        event=event,
        zone=zoneinfo.ZoneInfo(event.time_zone),
        ticket_types=types,
        current="events",
        errors=errors or {},
        values=values or {},
    )


@get("/events/{event_id:uuid}")
async def event_page(
    request: AnyRequest, state: State, manager: ManagerDep, event_id: FromPath[uuid.UUID]
) -> Template:
    return await _event_page(request, state, manager, event_id)


@post("/events/{event_id:uuid}/ticket-types", status_code=200)
async def ticket_type_create(
    request: AnyRequest, state: State, manager: ManagerDep, event_id: FromPath[uuid.UUID]
) -> Response[Any]:
    form = await _form(request)
    read = ticket_type_form(form)
    if read.value is not None:
        try:
            async with _tenant(state, manager) as session:
                await _events(state, session, manager).add_ticket_type(event_id, read.value)
        except Problem as problem:
            if problem.status == 404:
                return render(
                    request, "not_found.html", manager=manager, status=404, current="events"
                )
            read.errors["name"] = problem.detail
        else:
            return Redirect(f"{PREFIX}/events/{event_id}", status_code=303, headers=_HEADERS)
    return await _event_page(
        request, state, manager, event_id, status=400, errors=read.errors, values=form
    )


def console_router() -> Router:
    """Everything under ``/console``: the pages and their static files."""
    return Router(
        path=PREFIX,
        route_handlers=[
            home,
            sign_in_page,
            sign_in_submit,
            set_password_page,
            set_password_submit,
            sign_out_submit,
            events_page,
            events_create,
            event_page,
            ticket_type_create,
            create_static_files_router(
                path="/static", directories=[STATIC_DIR], include_in_schema=False
            ),
        ],
        dependencies={"manager": Provide(provide_manager)},
        before_request=check_request,
        exception_handlers={SignInRequired: _sign_in_required},
        include_in_schema=False,
    )
