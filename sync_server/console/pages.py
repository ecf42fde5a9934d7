"""The console's first routes: sign-in, the one-time password link, sign-out, and the events
and their ticket types. Every page but sign-in and set-password needs a signed-in manager
(``ManagerDep``), and reads and writes in that manager's tenant transaction, so row-level
security keeps each tenant's console to its own rows, as it does the API. Every POST passes
``web.check_request`` (CSRF and origin) first."""

from __future__ import annotations

import hashlib
import uuid
import zoneinfo
from collections.abc import Mapping
from typing import Any, Final

from litestar import Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from sync_server.console.accounts import (
    MAX_PASSWORD_LENGTH,
    SESSION_TTL,
    Manager,
    link_email,
    password_problem,
    set_password,
    sign_in,
    sign_out,
)
from sync_server.console.forms import event_form, hours_text, ticket_type_form
from sync_server.console.security import ended_session_cookie, session_cookie
from sync_server.console.web import (
    HEADERS,
    PREFIX,
    AnyRequest,
    ManagerDep,
    database,
    event_list,
    event_service,
    not_found,
    now,
    read_form,
    render,
    tenant,
)
from sync_server.http.dependencies import app_services
from sync_server.http.problems import Problem
from sync_server.http.rate_limiting import client_address
from sync_server.redis.rate_limits import RateLimits

#: Sign-in attempts a minute: per email (guessing one manager's password), and per client
#: address (trying many emails).
SIGN_INS_PER_EMAIL: Final = 10
SIGN_INS_PER_ADDRESS: Final = 30
TIME_ZONES: Final = sorted(zoneinfo.available_timezones())


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# --- signing in and out ------------------------------------------------------------------------


@get("/", sync_to_thread=False)
def home() -> Redirect:
    return Redirect(f"{PREFIX}/events", status_code=303)


@get("/sign-in")
async def sign_in_page(request: AnyRequest) -> Template:
    return render(request, "sign_in.html")


@post("/sign-in", status_code=200)
async def sign_in_submit(request: AnyRequest, state: State) -> Response[Any]:
    form = await read_form(request)
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
    moment = now(state)
    too_long = len(password) > MAX_PASSWORD_LENGTH  # no account has one; argon2 need not see it
    token = None if too_long else await sign_in(database(state), email, password, moment)
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
        headers=HEADERS,
        cookies=[session_cookie(request, token, int(SESSION_TTL.total_seconds()))],
    )


@get("/set-password")
async def set_password_page(
    request: AnyRequest, state: State, token: FromQuery[str] = ""
) -> Template:
    email = await link_email(database(state), token, now(state))
    if email is None:
        return render(request, "link_expired.html", status=404)
    return render(request, "set_password.html", email=email, token=token)


@post("/set-password", status_code=200)
async def set_password_submit(request: AnyRequest, state: State) -> Response[Any]:
    form = await read_form(request)
    token, password, again = (
        form.get("token", ""),
        form.get("password", ""),
        form.get("password_again", ""),
    )
    db, moment = database(state), now(state)
    email = await link_email(db, token, moment)
    if email is None:
        return render(request, "link_expired.html", status=404)
    problem = password_problem(password)
    errors = {}
    if problem is not None:
        errors["password"] = problem
    elif password != again:
        errors["password_again"] = "The two passwords differ. Type them again."  # noqa: S105
    if errors or not await set_password(db, token, password, moment):
        return render(
            request, "set_password.html", status=400, errors=errors, email=email, token=token
        )
    return render(request, "sign_in.html", notice="Your password is set. Sign in with it.")


@post("/sign-out", status_code=303)
async def sign_out_submit(request: AnyRequest, state: State, manager: ManagerDep) -> Redirect:
    await sign_out(database(state), manager)
    return Redirect(
        f"{PREFIX}/sign-in",
        status_code=303,
        headers=HEADERS,
        cookies=[ended_session_cookie(request)],
    )


# --- events ------------------------------------------------------------------------------------


@get("/events")
async def events_page(request: AnyRequest, state: State, manager: ManagerDep) -> Template:
    events = await event_list(state, manager)
    return render(
        request,
        "events.html",
        manager=manager,
        events=events,
        time_zones=TIME_ZONES,
        default_grace=hours_text(app_services(state).settings.jobs.expiry_grace),
        current="events",
    )


@post("/events", status_code=200)
async def events_create(request: AnyRequest, state: State, manager: ManagerDep) -> Response[Any]:
    form = await read_form(request)
    read = event_form(form)
    if read.value is not None:
        try:
            async with tenant(state, manager) as session:
                created = await event_service(state, session, manager).create(read.value)
        except Problem as problem:
            read.errors["ends_at"] = problem.detail
        else:
            return Redirect(f"{PREFIX}/events/{created.id}", status_code=303, headers=HEADERS)
    events = await event_list(state, manager)
    return render(
        request,
        "events.html",
        manager=manager,
        status=400,
        events=events,
        time_zones=TIME_ZONES,
        default_grace=hours_text(app_services(state).settings.jobs.expiry_grace),
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
    async with tenant(state, manager) as session:
        service = event_service(state, session, manager)
        try:
            event = await service.get(event_id)
        except Problem:
            return not_found(request, manager, "events")
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
    form = await read_form(request)
    read = ticket_type_form(form)
    if read.value is not None:
        try:
            async with tenant(state, manager) as session:
                await event_service(state, session, manager).add_ticket_type(event_id, read.value)
        except Problem as problem:
            if problem.status == 404:
                return not_found(request, manager, "events")
            read.errors["name"] = problem.detail
        else:
            return Redirect(f"{PREFIX}/events/{event_id}", status_code=303, headers=HEADERS)
    return await _event_page(
        request, state, manager, event_id, status=400, errors=read.errors, values=form
    )


ROUTES: Final = [
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
]
