"""Editing an event's setup in the console: the event itself (names, times, time zone, days,
re-entry), its ticket types, and its check-in lists (their rules, and importing one from
pretix). Every change goes through the domain's services, the ones the API uses, so the rules
(capacity not below sold, the event ends after it starts, a rule the evaluator can run) are
the same in both; a refusal comes back as a sentence next to the field it is about."""

from __future__ import annotations

import json
import uuid
import zoneinfo
from collections.abc import Mapping
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec
from litestar import Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from shared import wire
from sync_server.console.accounts import Manager
from sync_server.console.forms import (
    checkin_list_form,
    days_text,
    event_update_form,
    hours_text,
    pretix_import_form,
    ticket_type_update_form,
)
from sync_server.console.web import (
    AnyRequest,
    ManagerDep,
    event_service,
    not_found,
    now,
    principal,
    read_form,
    render,
    see_other,
    tenant,
)
from sync_server.db.models import Event
from sync_server.domain.checkin_lists.schemas import CheckinListPatch
from sync_server.domain.checkin_lists.services import CheckinListService
from sync_server.domain.events.schemas import TicketTypeOut
from sync_server.domain.events.services import ADMISSION_AFTER_END, event_out
from sync_server.http.dependencies import app_services
from sync_server.http.problems import Problem

PREFIX: Final = "/console/events"
TIME_ZONES: Final = sorted(zoneinfo.available_timezones())
_LOCAL: Final = "%Y-%m-%dT%H:%M"
#: Which field a problem of the event service is about, by its code.
_EVENT_FIELDS: Final = {
    "invalid_time_window": "ends_at",
    "invalid_time_zone": "time_zone",
    "duplicate_day": "days",
}


def _lists(state: State, session: AsyncSession, manager: Manager) -> CheckinListService:
    return CheckinListService(session, principal(manager), now(state))


# --- the event ---------------------------------------------------------------------------------


def _event_values(event: Event) -> dict[str, str]:
    zone = ZoneInfo(event.time_zone)
    out = event_out(event)
    days = days_text(out.days, zone)
    return {
        "name": event.name,
        "venue": event.venue,
        "starts_at": event.starts_at.astimezone(zone).strftime(_LOCAL),
        "ends_at": event.ends_at.astimezone(zone).strftime(_LOCAL),
        "admission_opens_at": (
            event.admission_opens_at.astimezone(zone).strftime(_LOCAL)
            if event.admission_opens_at is not None
            else ""
        ),
        "time_zone": event.time_zone,
        "allow_reentry": "on" if event.allow_reentry else "",
        "expiry_grace_hours": hours_text(event.expiry_grace_seconds),
        "days": days,
        "days_shown": days,
    }


async def _edit_event_page(
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
        try:
            event = await event_service(state, session, manager).get(event_id)
        except Problem:
            return not_found(request, manager, "events")
        shown = _event_values(event)
    return render(
        request,
        "event_edit.html",
        manager=manager,
        status=status,
        event=event,
        time_zones=TIME_ZONES,
        default_grace=hours_text(app_services(state).settings.jobs.expiry_grace),
        current="events",
        errors=errors or {},
        # What was typed, when it comes back with sentences; what the event has, otherwise.
        values={**shown, **values, "days_shown": shown["days_shown"]} if values else shown,
    )


@get("/events/{event_id:uuid}/edit")
async def event_edit_page(
    request: AnyRequest, state: State, manager: ManagerDep, event_id: FromPath[uuid.UUID]
) -> Template:
    return await _edit_event_page(request, state, manager, event_id)


@post("/events/{event_id:uuid}/edit", status_code=200)
async def event_edit_submit(
    request: AnyRequest, state: State, manager: ManagerDep, event_id: FromPath[uuid.UUID]
) -> Response[Any]:
    form = await read_form(request)
    read = event_update_form(form)
    if read.value is not None:
        try:
            async with tenant(state, manager) as session:
                await event_service(state, session, manager).update(event_id, read.value)
        except Problem as problem:
            if problem.status == 404:
                return not_found(request, manager, "events")
            key = _EVENT_FIELDS.get(problem.code, "form")
            if problem.detail == ADMISSION_AFTER_END:
                key = "admission_opens_at"
            read.errors[key] = problem.detail
        else:
            return see_other(f"{PREFIX}/{event_id}")
    values = {**form, "allow_reentry": "on" if form.get("allow_reentry") == "on" else ""}
    return await _edit_event_page(
        request, state, manager, event_id, status=400, errors=read.errors, values=values
    )


# --- ticket types ------------------------------------------------------------------------------


def _type_values(kind: TicketTypeOut) -> dict[str, str]:
    return {
        "name": kind.name,
        "capacity": str(kind.capacity),
        "days": ", ".join(day.isoformat() for day in kind.days),
        "release_seat": "on" if kind.release_seat else "",
    }


async def _edit_type_page(
    request: AnyRequest,
    state: State,
    manager: Manager,
    event_id: uuid.UUID,
    type_id: uuid.UUID,
    *,
    status: int = 200,
    errors: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
) -> Template:
    async with tenant(state, manager) as session:
        service = event_service(state, session, manager)
        try:
            event = await service.get(event_id)
            kinds = await service.ticket_types(event_id)
        except Problem:
            return not_found(request, manager, "events")
    kind = next((k for k in kinds if k.id == type_id), None)
    if kind is None:
        return not_found(request, manager, "events")
    return render(
        request,
        "ticket_type_edit.html",
        manager=manager,
        status=status,
        event=event,
        kind=kind,
        current="events",
        errors=errors or {},
        values=values or _type_values(kind),
    )


@get("/events/{event_id:uuid}/ticket-types/{type_id:uuid}/edit")
async def ticket_type_edit_page(
    request: AnyRequest,
    state: State,
    manager: ManagerDep,
    event_id: FromPath[uuid.UUID],
    type_id: FromPath[uuid.UUID],
) -> Template:
    return await _edit_type_page(request, state, manager, event_id, type_id)


@post("/events/{event_id:uuid}/ticket-types/{type_id:uuid}/edit", status_code=200)
async def ticket_type_edit_submit(
    request: AnyRequest,
    state: State,
    manager: ManagerDep,
    event_id: FromPath[uuid.UUID],
    type_id: FromPath[uuid.UUID],
) -> Response[Any]:
    form = await read_form(request)
    read = ticket_type_update_form(form)
    if read.value is not None:
        try:
            async with tenant(state, manager) as session:
                await event_service(state, session, manager).update_ticket_type(
                    event_id, type_id, read.value
                )
        except Problem as problem:
            if problem.status == 404:
                return not_found(request, manager, "events")
            key = {"capacity_below_sold": "capacity", "ticket_type_exists": "name"}
            read.errors[key.get(problem.code, "form")] = problem.detail
        else:
            return see_other(f"{PREFIX}/{event_id}")
    return await _edit_type_page(
        request, state, manager, event_id, type_id, status=400, errors=read.errors, values=form
    )


# --- check-in lists ----------------------------------------------------------------------------


def _list_values(found: wire.CheckinListOut, zone: ZoneInfo) -> dict[str, str]:
    def local(moment: Any) -> str:
        return "" if moment is None else moment.astimezone(zone).strftime(_LOCAL)

    reentry = {None: "event", True: "yes", False: "no"}[found.allow_reentry]
    return {
        "name": found.name,
        "gates": ", ".join(found.gates),
        "zone": found.zone or "",
        "allow_reentry": reentry,
        "allow_multiple_entries": "on" if found.allow_multiple_entries else "",
        "windows": "\n".join(
            f"{local(w.opens_at)} to {local(w.closes_at)}".strip() for w in found.windows
        ),
        "rules": "" if found.rules is None else json.dumps(found.rules, indent=2),
        "explanation": found.explanation or "",
        **{f"ticket_type_{kind}": "on" for kind in found.ticket_type_ids},
    }


async def _lists_page(
    request: AnyRequest,
    state: State,
    manager: Manager,
    event_id: uuid.UUID,
    *,
    status: int = 200,
    notice: str | None = None,
    errors: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
    import_errors: Mapping[str, str] | None = None,
    import_values: Mapping[str, str] | None = None,
) -> Template:
    async with tenant(state, manager) as session:
        service = event_service(state, session, manager)
        try:
            event = await service.get(event_id)
            kinds = await service.ticket_types(event_id)
            lists = await _lists(state, session, manager).all(event_id)
        except Problem:
            return not_found(request, manager, "events")
    return render(
        request,
        "checkin_lists.html",
        manager=manager,
        status=status,
        event=event,
        kinds=kinds,
        kind_names={str(k.id): k.name for k in kinds},
        lists=lists,
        notice=notice,
        current="events",
        errors=errors or {},
        values=values or {"allow_reentry": "event"},
        import_errors=import_errors or {},
        import_values=import_values or {},
    )


@get("/events/{event_id:uuid}/checkin-lists")
async def checkin_lists_page(
    request: AnyRequest,
    state: State,
    manager: ManagerDep,
    event_id: FromPath[uuid.UUID],
    done: FromQuery[str] = "",
) -> Template:
    notices = {
        "created": "The check-in list is created.",
        "saved": "The check-in list is saved.",
        "imported": "The pretix list is imported: it is in the table below.",
        "deleted": "The check-in list is deleted.",
        "archived": "The check-in list has scans, so it is archived: it decides nothing now.",
    }
    return await _lists_page(request, state, manager, event_id, notice=notices.get(done))


async def _event_zone_and_types(
    state: State, manager: Manager, event_id: uuid.UUID
) -> tuple[ZoneInfo, list[TicketTypeOut]] | None:
    async with tenant(state, manager) as session:
        service = event_service(state, session, manager)
        try:
            event = await service.get(event_id)
            return ZoneInfo(event.time_zone), await service.ticket_types(event_id)
        except Problem:
            return None


@post("/events/{event_id:uuid}/checkin-lists", status_code=200)
async def checkin_list_create(
    request: AnyRequest, state: State, manager: ManagerDep, event_id: FromPath[uuid.UUID]
) -> Response[Any]:
    form = await read_form(request)
    found = await _event_zone_and_types(state, manager, event_id)
    if found is None:
        return not_found(request, manager, "events")
    zone, kinds = found
    read = checkin_list_form(form, [str(k.id) for k in kinds], zone)
    if read.value is not None:
        try:
            async with tenant(state, manager) as session:
                await _lists(state, session, manager).create(event_id, read.value)
        except Problem as problem:
            read.errors["form"] = problem.detail
        else:
            return see_other(f"{PREFIX}/{event_id}/checkin-lists?done=created")
    return await _lists_page(
        request, state, manager, event_id, status=400, errors=read.errors, values=form
    )


@post("/events/{event_id:uuid}/checkin-lists/import-pretix", status_code=200)
async def checkin_list_import(
    request: AnyRequest, state: State, manager: ManagerDep, event_id: FromPath[uuid.UUID]
) -> Response[Any]:
    form = await read_form(request)
    found = await _event_zone_and_types(state, manager, event_id)
    if found is None:
        return not_found(request, manager, "events")
    read = pretix_import_form(form, {k.name: str(k.id) for k in found[1]})
    if read.value is not None:
        try:
            async with tenant(state, manager) as session:
                await _lists(state, session, manager).import_pretix(event_id, read.value)
        except Problem as problem:
            read.errors["pretix_list"] = problem.detail
        else:
            return see_other(f"{PREFIX}/{event_id}/checkin-lists?done=imported")
    return await _lists_page(
        request,
        state,
        manager,
        event_id,
        status=400,
        import_errors=read.errors,
        import_values=form,
    )


async def _list_page(
    request: AnyRequest,
    state: State,
    manager: Manager,
    event_id: uuid.UUID,
    list_id: uuid.UUID,
    *,
    status: int = 200,
    errors: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
) -> Template:
    async with tenant(state, manager) as session:
        service = event_service(state, session, manager)
        try:
            event = await service.get(event_id)
            kinds = await service.ticket_types(event_id)
            found = await _lists(state, session, manager).one(event_id, list_id)
        except Problem:
            return not_found(request, manager, "events")
    return render(
        request,
        "checkin_list.html",
        manager=manager,
        status=status,
        event=event,
        kinds=kinds,
        found=found,
        current="events",
        errors=errors or {},
        values=values or _list_values(found, ZoneInfo(event.time_zone)),
    )


@get("/events/{event_id:uuid}/checkin-lists/{list_id:uuid}")
async def checkin_list_page(
    request: AnyRequest,
    state: State,
    manager: ManagerDep,
    event_id: FromPath[uuid.UUID],
    list_id: FromPath[uuid.UUID],
) -> Template:
    return await _list_page(request, state, manager, event_id, list_id)


@post("/events/{event_id:uuid}/checkin-lists/{list_id:uuid}", status_code=200)
async def checkin_list_submit(
    request: AnyRequest,
    state: State,
    manager: ManagerDep,
    event_id: FromPath[uuid.UUID],
    list_id: FromPath[uuid.UUID],
) -> Response[Any]:
    form = await read_form(request)
    found = await _event_zone_and_types(state, manager, event_id)
    if found is None:
        return not_found(request, manager, "events")
    zone, kinds = found
    read = checkin_list_form(form, [str(k.id) for k in kinds], zone)
    if read.value is not None:
        patch = msgspec.convert(msgspec.to_builtins(read.value), CheckinListPatch)
        try:
            async with tenant(state, manager) as session:
                await _lists(state, session, manager).change(event_id, list_id, patch)
        except Problem as problem:
            if problem.status == 404:
                return not_found(request, manager, "events")
            read.errors["form"] = problem.detail
        else:
            return see_other(f"{PREFIX}/{event_id}/checkin-lists?done=saved")
    return await _list_page(
        request, state, manager, event_id, list_id, status=400, errors=read.errors, values=form
    )


@post("/events/{event_id:uuid}/checkin-lists/{list_id:uuid}/delete", status_code=200)
async def checkin_list_delete(
    request: AnyRequest,
    state: State,
    manager: ManagerDep,
    event_id: FromPath[uuid.UUID],
    list_id: FromPath[uuid.UUID],
) -> Response[Any]:
    try:
        async with tenant(state, manager) as session:
            removal = await _lists(state, session, manager).remove(event_id, list_id)
    except Problem:
        return not_found(request, manager, "events")
    return see_other(f"{PREFIX}/{event_id}/checkin-lists?done={removal.outcome}")


ROUTES: Final = [
    event_edit_page,
    event_edit_submit,
    ticket_type_edit_page,
    ticket_type_edit_submit,
    checkin_lists_page,
    checkin_list_create,
    checkin_list_import,
    checkin_list_page,
    checkin_list_submit,
    checkin_list_delete,
]
