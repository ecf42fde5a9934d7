"""The Devices page: every scanner of the tenant with its health (what it reported in its
latest heartbeat, and whether it is online: ``sync_server.domain.devices.status``), enrolling a
gate by a QR code shown on screen, and revoking a device after a confirmation.

Everything goes through ``DeviceService``, the service behind ``/v1/devices``, in the manager's
tenant transaction, so the console and the API keep one set of rules. The enrollment code is
shown once, on the page answering the form's POST (no redirect: only its hash is kept), and
never logged."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import msgspec
import segno
from litestar import Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from shared.enrollment_link import EnrollmentLink, insecure_server
from shared.wire import GATE_NAME_MAX
from sync_server.console.accounts import Manager
from sync_server.console.forms import FormResult
from sync_server.console.web import (
    PREFIX,
    AnyRequest,
    ManagerDep,
    event_list,
    not_found,
    principal,
    read_form,
    render,
    see_other,
    tenant,
)
from sync_server.domain.devices.schemas import DeviceOut, EnrollmentCreate
from sync_server.domain.devices.services import DeviceService
from sync_server.domain.events.schemas import EventOut
from sync_server.http.dependencies import app_services
from sync_server.http.problems import Problem

CURRENT: Final = "devices"
#: The most devices the page lists; paging comes with more.
SHOWN: Final = 500
#: How long an enrollment code shown on screen may work: (seconds, label). The first is the
#: default: short, since a code on a screen may be seen by anyone passing it.
VALIDITIES: Final = (
    (15 * 60, "15 minutes"),
    (3600, "1 hour"),
    (12 * 3600, "12 hours"),
    (24 * 3600, "24 hours"),
)
#: Pixels per QR module: big enough for a gate's camera held at arm's length from a screen.
QR_SCALE: Final = 8


def _service(state: State, session: Any, manager: Manager) -> DeviceService:
    services = app_services(state)
    return DeviceService(session, services.keys, services.clock, principal(manager))


def _event_filter(text: str) -> tuple[uuid.UUID | None, str | None]:
    """The ``event`` query parameter: none, an event id, or a sentence (never raises)."""
    if not text.strip():
        return None, None
    try:
        return uuid.UUID(text.strip()), None
    except ValueError:
        return None, "Choose an event from the list."


async def _devices(
    state: State, manager: Manager, event_id: uuid.UUID | None
) -> list[DeviceOut] | None:
    """The tenant's devices (of ``event_id`` when given), or None when that event is not the
    tenant's."""
    async with tenant(state, manager) as session:
        service, cursor = _service(state, session, manager), None
        found: list[DeviceOut] = []
        while len(found) < SHOWN:
            try:
                page = await service.list(event_id, cursor, 100)
            except Problem:
                return None
            found.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    return found


def _offset(milliseconds: int | None) -> str:
    """A clock offset as managers read it: which way and how far (server minus device)."""
    if milliseconds is None:
        return "not reported"
    if abs(milliseconds) < 1000:
        return "in step (under 1 s)"
    seconds = abs(milliseconds) // 1000
    amount = f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"
    return f"{amount} {'behind' if milliseconds > 0 else 'ahead'}"


def _peers(device: DeviceOut) -> str:
    """How many other gates it hears (peer sync, issue 18), from its latest heartbeat."""
    if device.heartbeat_at is None:
        return "not reported"
    heard = device.peers_heard
    if heard is None:
        return "Peer sync off"
    if heard == 0:
        return "Hears no other gate"
    return f"Hears {heard} other gate{'' if heard == 1 else 's'}"


def _when(moment: datetime | None) -> str:
    return "never" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


async def _list_context(
    state: State, manager: Manager, event_text: str
) -> tuple[int, dict[str, Any]]:
    events = await event_list(state, manager)
    event_id, problem = _event_filter(event_text)
    devices = None if problem else await _devices(state, manager, event_id)
    if devices is None:
        problem = problem or "That event is not one of yours. Choose an event from the list."
        devices, event_id = [], None
    names = {event.id: event.name for event in events}
    return (400 if problem else 200), {
        "events": events,
        "event_names": names,
        "chosen": event_id,
        "active": [d for d in devices if d.revoked_at is None],
        "revoked": [d for d in devices if d.revoked_at is not None],
        "errors": {"event": problem} if problem else {},
        "offset": _offset,
        "peers": _peers,
        "when": _when,
        "current": CURRENT,
    }


@get("/devices")
async def devices_page(
    request: AnyRequest, state: State, manager: ManagerDep, event: FromQuery[str] = ""
) -> Template:
    status, context = await _list_context(state, manager, event)
    return render(request, "devices.html", manager=manager, status=status, **context)


@get("/devices/table")
async def devices_table(
    request: AnyRequest, state: State, manager: ManagerDep, event: FromQuery[str] = ""
) -> Template:
    """The tables alone, which the page fetches again every few seconds (htmx)."""
    status, context = await _list_context(state, manager, event)
    return render(request, "devices_table.html", manager=manager, status=status, **context)


# --- enrolling a gate --------------------------------------------------------------------------


def enrollment_form(
    form: Mapping[str, str], events: list[EventOut]
) -> FormResult[EnrollmentCreate]:
    """The "Enroll a gate" form as the service's ``EnrollmentCreate``, or a sentence per field.
    Total: never raises."""
    result: FormResult[EnrollmentCreate] = FormResult()
    event_id = None
    try:
        event_id = uuid.UUID(form.get("event_id", "").strip())
    except ValueError:
        result.errors["event_id"] = "Choose the event this gate scans for."
    if event_id is not None and event_id not in {event.id for event in events}:
        result.errors["event_id"] = "That event is not one of yours. Choose one from the list."
    gate = " ".join(form.get("gate", "").split())
    if not gate:
        result.errors["gate"] = "Name the gate, such as North or VIP entrance."
    elif len(gate) > GATE_NAME_MAX:
        result.errors["gate"] = f"A gate's name has at most {GATE_NAME_MAX} characters."
    ttl = {str(seconds): seconds for seconds, _ in VALIDITIES}.get(form.get("ttl", ""))
    if ttl is None:
        result.errors["ttl"] = "Choose how long the code may be used."
    if result.errors or event_id is None or ttl is None:
        return result
    try:
        result.value = msgspec.convert(
            {"event_id": str(event_id), "gate": gate, "ttl_seconds": ttl}, EnrollmentCreate
        )
    except msgspec.ValidationError:
        result.errors["gate"] = "A gate's name is one line of letters, digits and spaces."
    return result


async def _enroll_form(
    request: AnyRequest,
    state: State,
    manager: Manager,
    *,
    status: int = 200,
    errors: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
    events: list[EventOut] | None = None,
) -> Template:
    return render(
        request,
        "devices_enroll.html",
        manager=manager,
        status=status,
        events=events if events is not None else await event_list(state, manager),
        validities=VALIDITIES,
        errors=errors or {},
        values=values or {"ttl": str(VALIDITIES[0][0])},
        gate_max=GATE_NAME_MAX,
        current=CURRENT,
    )


@get("/devices/enroll")
async def enroll_page(
    request: AnyRequest, state: State, manager: ManagerDep, event: FromQuery[str] = ""
) -> Template:
    values = {"ttl": str(VALIDITIES[0][0]), "event_id": event}
    return await _enroll_form(request, state, manager, values=values)


def qr_data_uri(text: str) -> str:
    """``text`` as a QR code, an SVG ``data:`` URI (the page's CSP allows ``data:`` images)."""
    return str(segno.make(text, error="m").svg_data_uri(scale=QR_SCALE, border=4))


@post("/devices/enroll", status_code=200)
async def enroll_submit(request: AnyRequest, state: State, manager: ManagerDep) -> Response[Any]:
    form = await read_form(request)
    events = await event_list(state, manager)
    read = enrollment_form(form, events)
    if read.value is None:
        return await _enroll_form(
            request, state, manager, status=400, errors=read.errors, values=form, events=events
        )
    try:
        async with tenant(state, manager) as session:
            created = await _service(state, session, manager).create_enrollment(
                read.value,
                default_ttl_seconds=app_services(state).settings.auth.enrollment_ttl_seconds,
            )
    except Problem as problem:  # the event went between the form and now
        errors = {"event_id": problem.detail}
        return await _enroll_form(
            request, state, manager, status=400, errors=errors, values=form, events=events
        )
    # The server as the scanners reach it: the configured public address, else as this
    # manager's browser reached it.
    server = (
        app_services(state).settings.http.public_url
        or f"{request.url.scheme}://{request.url.netloc}"
    )
    link = EnrollmentLink(server_url=server, code=created.code).text()
    names = {event.id: event.name for event in events}
    return render(
        request,
        "devices_enrolled.html",
        manager=manager,
        enrollment=created,
        event_name=names.get(created.event_id, ""),
        link=link,
        qr=qr_data_uri(link),
        insecure=insecure_server(server),
        expires=_when(created.expires_at),
        current=CURRENT,
    )


# --- one device, and revoking it ---------------------------------------------------------------


async def _device(state: State, manager: Manager, device_id: uuid.UUID) -> DeviceOut | None:
    async with tenant(state, manager) as session:
        try:
            return await _service(state, session, manager).get(device_id)
        except Problem:
            return None


async def _device_page(
    request: AnyRequest, state: State, manager: Manager, device_id: uuid.UUID, template: str
) -> Template:
    device = await _device(state, manager, device_id)
    if device is None:
        return not_found(request, manager, CURRENT)
    events = await event_list(state, manager)
    return render(
        request,
        template,
        manager=manager,
        device=device,
        event_name={event.id: event.name for event in events}.get(device.event_id, ""),
        offset=_offset,
        peers=_peers,
        when=_when,
        current=CURRENT,
    )


@get("/devices/{device_id:uuid}")
async def device_page(
    request: AnyRequest, state: State, manager: ManagerDep, device_id: FromPath[uuid.UUID]
) -> Template:
    return await _device_page(request, state, manager, device_id, "devices_detail.html")


@get("/devices/{device_id:uuid}/revoke")
async def revoke_page(
    request: AnyRequest, state: State, manager: ManagerDep, device_id: FromPath[uuid.UUID]
) -> Template:
    """The confirmation: which device, and what revoking it does."""
    return await _device_page(request, state, manager, device_id, "devices_revoke.html")


@post("/devices/{device_id:uuid}/revoke", status_code=303)
async def revoke_submit(
    request: AnyRequest, state: State, manager: ManagerDep, device_id: FromPath[uuid.UUID]
) -> Response[Any]:
    """Revoke (again: nothing changes), then the device's page says so."""
    try:
        async with tenant(state, manager) as session:
            await _service(state, session, manager).revoke(device_id)
    except Problem:
        return not_found(request, manager, CURRENT)
    return see_other(f"{PREFIX}/devices/{device_id}")


ROUTES: Final = [
    devices_page,
    devices_table,
    enroll_page,
    enroll_submit,
    device_page,
    revoke_page,
    revoke_submit,
]
