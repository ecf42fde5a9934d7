"""The console's scan log: one event's scans across all its gates, newest first, narrowed by
gate, check-in list, result, reason, time, ticket or holder, or to double entries; each double
entry explained (who was first, where, when); the same rows as CSV; and undoing an admission
after a confirmation. The API's ``ScanLog`` reads every page and ``export_csv`` writes the
CSV, so the console and ``GET /v1/scans`` show the same scans by the same rules."""

from __future__ import annotations

import re
import uuid
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlencode

from litestar import get, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Redirect, Stream, Template
from sqlalchemy.ext.asyncio import AsyncSession

from shared.domain import Direction, VerdictReason, VerdictResult
from shared.wire import GATE_NAME_MAX, ONE_LINE, TIME_OUT_OF_RANGE, out_of_range
from sync_server.console.accounts import Manager
from sync_server.console.tickets import TicketQuery, keys_of, read_query
from sync_server.console.web import (
    HEADERS,
    PREFIX,
    AnyRequest,
    ManagerDep,
    current_event,
    database,
    event_list,
    not_found,
    now,
    principal,
    read_form,
    render,
    see_other,
    tenant,
)
from sync_server.domain.checkin.schemas import ConflictAction
from sync_server.domain.checkin.services import CheckInService
from sync_server.domain.checkin_lists.services import CheckinListService
from sync_server.domain.events.schemas import EventOut
from sync_server.domain.scans.schemas import ScanFilter, ScanOut
from sync_server.domain.scans.services import ScanLog, export_csv
from sync_server.http.dependencies import app_services
from sync_server.http.pagination import decode_cursor
from sync_server.http.problems import Problem

#: Scans a page of the log shows.
PAGE_SIZE: Final = 50
#: The query parameters the log reads (and carries to its next page and its CSV).
FILTERS: Final = ("event", "gate", "list", "result", "reason", "since", "until", "q", "conflicts")
_TIME_FORMATS: Final = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")


@dataclass
class LogQuery:
    """The log's query string, read: the filter for ``ScanLog``, the values to show back in
    the form, and a sentence for each field that could not be read."""

    events: list[EventOut]
    event: EventOut | None
    filters: ScanFilter | None
    cursor: str | None
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    how: str = ""


def _local_time(text: str, zone: zoneinfo.ZoneInfo) -> datetime | None:
    for pattern in _TIME_FORMATS:
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=zone)
        except ValueError:
            continue
    return None


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _read_fields(  # noqa: PLR0912 - one branch per field, each a sentence
    params: Mapping[str, str], event: EventOut
) -> tuple[dict[str, Any], dict[str, str]]:
    """The filter's fields from the query string and a sentence per field that is wrong."""
    zone = zoneinfo.ZoneInfo(event.time_zone)
    fields: dict[str, Any] = {"event_id": event.id}
    errors: dict[str, str] = {}
    gate = params.get("gate", "").strip()
    if gate:
        if len(gate) > GATE_NAME_MAX or not re.fullmatch(ONE_LINE.pattern or "", gate):
            errors["gate"] = f"A gate's name is one line of at most {GATE_NAME_MAX} characters."
        else:
            fields["gate"] = gate
    if params.get("list"):
        fields["checkin_list_id"] = _uuid(params["list"])
        if fields["checkin_list_id"] is None:
            errors["list"] = "Choose one of the event's check-in lists."
    if params.get("result"):
        if params["result"] not in VerdictResult.__members__.values():
            errors["result"] = "Choose admitted or rejected."
        else:
            fields["result"] = VerdictResult(params["result"])
    if params.get("reason"):
        if params["reason"] not in VerdictReason.__members__.values():
            errors["reason"] = "Choose one of the reasons in the list."
        else:
            fields["reason"] = VerdictReason(params["reason"])
    for name in ("since", "until"):
        if params.get(name):
            when = _local_time(params[name], zone)
            if when is None:
                errors[name] = "A date and time like 2026-12-04T20:15 is needed."
            elif out_of_range(**{name: when}) is not None:
                errors[name] = TIME_OUT_OF_RANGE
            else:
                fields[name] = when
    if fields.get("since") and fields.get("until") and fields["since"] > fields["until"]:
        errors["until"] = "The end must not be before the start."
    fields["conflicts_only"] = params.get("conflicts", "") in {"on", "1", "true"}
    return fields, errors


async def read_log_query(state: State, manager: Manager, params: Mapping[str, str]) -> LogQuery:
    """Read the log's query string (never raises: what is wrong is a sentence by its field)."""
    values = {name: params.get(name, "") for name in FILTERS}
    events = await event_list(state, manager)
    chosen: EventOut | None
    errors: dict[str, str] = {}
    if values["event"]:
        wanted = _uuid(values["event"])
        chosen = next((e for e in events if e.id == wanted), None)
        if chosen is None:
            errors["event"] = "Choose one of your events."
    else:
        chosen = current_event(events, now(state))
    if chosen is None:
        return LogQuery(
            events=events, event=None, filters=None, cursor=None, values=values, errors=errors
        )
    values["event"] = str(chosen.id)
    fields, field_errors = _read_fields(params, chosen)
    errors.update(field_errors)
    cursor = params.get("after") or None
    try:
        decode_cursor(cursor)
    except Problem:
        errors["form"] = "That page of the log is not one this console made: start again."
        cursor = None
    query = LogQuery(
        events=events, event=chosen, filters=None, cursor=cursor, values=values, errors=errors
    )
    if values["q"].strip():
        async with tenant(state, manager) as session:
            found = await read_query(session, keys_of(state), manager.tenant_id, values["q"])
        if isinstance(found, str):
            errors["q"] = found
        else:
            query.how = found.how
            fields.update(_ticket_fields(found))
    if not errors:
        query.filters = ScanFilter(**fields)
    return query


def _ticket_fields(found: TicketQuery) -> dict[str, Any]:
    return {"ticket_id_prefix": found.id_prefix, "holder_prefix": found.holder}


def _duration(seconds: float) -> str:
    whole = round(abs(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _where(scan: ScanOut, devices: Mapping[uuid.UUID, str]) -> str:
    if scan.device_id is None:
        return f"{scan.gate} (by hand, {scan.scanned_by})"
    return f"{scan.gate} (device {devices.get(scan.device_id, 'removed')})"


def explain_conflict(
    scan: ScanOut,
    first: ScanOut | None,
    devices: Mapping[uuid.UUID, str],
    zone: zoneinfo.ZoneInfo,
) -> str:
    """A double entry in one sentence: who admitted the ticket first, where and when, how long
    before this scan, and which of the two gates were offline."""
    if first is None:
        return "A double entry: this ticket had already been admitted."
    gap = (scan.scanned_at - first.scanned_at).total_seconds()
    order = "before" if gap >= 0 else "after"
    if first.offline and scan.offline:
        offline = "both gates were offline"
    elif scan.offline:
        offline = "this gate was offline"
    elif first.offline:
        offline = "the first gate was offline"
    else:
        offline = "both gates were online"
    at = first.scanned_at.astimezone(zone).strftime("%H:%M:%S")
    return (
        f"Already admitted at {at} at {_where(first, devices)}, {_duration(gap)} {order} "
        f"this scan at {_where(scan, devices)}; {offline}."
    )


def standing_conflict(scan: ScanOut) -> bool:
    """A double entry nobody annulled or resolved: a manager can mark it resolved."""
    return (
        scan.conflict_of is not None
        and scan.annulled_at is None
        and scan.conflict_resolution is None
    )


def _link(values: Mapping[str, str], **changes: str) -> str:
    query = {k: v for k, v in {**values, **changes}.items() if v}
    return urlencode(query)


def _params(request: AnyRequest) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if isinstance(v, str)}


@get("/scans")
async def scans_page(request: AnyRequest, state: State, manager: ManagerDep) -> Template:
    return await _log_page(
        request, state, manager, await read_log_query(state, manager, _params(request))
    )


async def _log_page(
    request: AnyRequest, state: State, manager: Manager, query: LogQuery
) -> Template:
    rows: list[dict[str, Any]] = []
    next_link = None
    lists: list[Any] = []
    if query.event is not None:
        zone = zoneinfo.ZoneInfo(query.event.time_zone)
        async with tenant(state, manager) as session:
            lists = await CheckinListService(session, principal(manager), now(state)).all(
                query.event.id
            )
            if query.filters is not None:
                log = ScanLog(session)
                try:
                    page = await log.page(query.filters, query.cursor, PAGE_SIZE, newest_first=True)
                except Problem as problem:
                    query.errors["form"] = problem.detail
                else:
                    firsts = await log.scans({s.conflict_of for s in page.items if s.conflict_of})
                    devices = await log.device_names(
                        {
                            s.device_id
                            for s in [*page.items, *firsts.values()]
                            if s.device_id is not None
                        }
                    )
                    rows = [
                        {
                            "scan": scan,
                            "when": scan.scanned_at.astimezone(zone),
                            "device": devices.get(scan.device_id) if scan.device_id else None,
                            "conflict": explain_conflict(
                                scan, firsts.get(scan.conflict_of), devices, zone
                            )
                            if scan.conflict_of and scan.conflict_resolution != "accepted"
                            else None,
                            "can_annul": scan.result == VerdictResult.ADMITTED
                            and scan.direction == Direction.ENTRY
                            and scan.annulled_at is None,
                            "can_resolve": standing_conflict(scan),
                        }
                        for scan in page.items
                    ]
                    if page.next_cursor:
                        next_link = f"{PREFIX}/scans?" + _link(query.values, after=page.next_cursor)
    return render(
        request,
        "scans.html",
        manager=manager,
        status=400 if query.errors else 200,
        current="scans",
        events=query.events,
        event=query.event,
        lists=lists,
        reasons=[reason.value for reason in VerdictReason],
        rows=rows,
        how=query.how,
        errors=query.errors,
        values=query.values,
        next_link=next_link,
        first_link=f"{PREFIX}/scans?" + _link(query.values) if query.cursor else None,
        csv_link=f"{PREFIX}/scans.csv?" + _link(query.values),
        here=f"{PREFIX}/scans?" + _link(query.values, after=query.cursor or ""),
    )


@get("/scans.csv", response_model=None)
async def scans_csv(request: AnyRequest, state: State, manager: ManagerDep) -> Stream | Template:
    """The log's scans as the API's CSV (every match, oldest first), with the page's filters."""
    query = await read_log_query(state, manager, _params(request))
    if query.filters is None or query.event is None:
        return await _log_page(request, state, manager, query)  # the sentences, by the fields
    chunks = await export_csv(database(state), manager.tenant_id, query.filters)
    return Stream(
        chunks,
        media_type="text/csv",
        headers={
            **HEADERS,
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="scans-{query.event.id}.csv"',
        },
    )


def _back(text: str) -> str:
    """Where to go after annulling: the log page the manager came from, or the log."""
    if text.startswith(f"{PREFIX}/scans?") or text == f"{PREFIX}/scans":
        return text
    return f"{PREFIX}/scans"


async def _scan(state: State, manager: Manager, scan_id: uuid.UUID) -> tuple[ScanOut, Any] | None:
    async with tenant(state, manager) as session:
        log = ScanLog(session)
        found = (await log.scans([scan_id])).get(scan_id)
        if found is None:
            return None
        names = await log.device_names([found.device_id] if found.device_id else [])
    return found, names.get(found.device_id) if found.device_id else None


def _checkin(state: State, session: AsyncSession, manager: Manager) -> CheckInService:
    """The API's check-in service in the manager's tenant transaction."""
    built = app_services(state)
    return CheckInService(
        session, built.keys, built.ownership, tenant_id=manager.tenant_id, now=now(state)
    )


async def _zone_of(state: State, manager: Manager, scan: ScanOut) -> zoneinfo.ZoneInfo | None:
    events = {e.id: e for e in await event_list(state, manager)}
    return zoneinfo.ZoneInfo(events[scan.event_id].time_zone) if scan.event_id in events else None


async def _confirmation(
    request: AnyRequest,
    state: State,
    manager: Manager,
    scan_id: uuid.UUID,
    template: str,
    *,
    back: str,
    status: int = 200,
    refused: Problem | None = None,
) -> Template:
    """The page that says what annulling or resolving a scan does (again with the service's
    sentence when it refused)."""
    found = await _scan(state, manager, scan_id)
    if found is None:
        return not_found(request, manager, "scans")
    scan, device = found
    return render(
        request,
        template,
        manager=manager,
        status=status,
        current="scans",
        scan=scan,
        device=device,
        standing=standing_conflict(scan),
        when=scan.scanned_at.astimezone(await _zone_of(state, manager, scan)),
        back=back,
        errors={"form": refused.detail} if refused is not None else {},
    )


@get("/scans/{scan_id:uuid}/annul")
async def annul_page(
    request: AnyRequest, state: State, manager: ManagerDep, scan_id: FromPath[uuid.UUID]
) -> Template:
    back = _back(request.query_params.get("back", ""))
    return await _confirmation(request, state, manager, scan_id, "scan_annul.html", back=back)


@post("/scans/{scan_id:uuid}/annul", status_code=303)
async def annul_submit(
    request: AnyRequest, state: State, manager: ManagerDep, scan_id: FromPath[uuid.UUID]
) -> Redirect | Template:
    """Undo the admission through the API's check-in service, recorded as this manager's.
    Sent again (a second tab, a reload), it changes nothing and shows the log again."""
    back = _back((await read_form(request)).get("back", ""))
    refused: Problem | None = None
    async with tenant(state, manager) as session:
        try:
            await _checkin(state, session, manager).annul(scan_id, principal(manager).actor, None)
        except Problem as problem:
            refused = problem
    if refused is None or refused.code == "already_annulled":
        return see_other(back)
    return await _confirmation(
        request, state, manager, scan_id, "scan_annul.html", back=back, status=422, refused=refused
    )


@get("/scans/{scan_id:uuid}/resolve")
async def resolve_page(
    request: AnyRequest, state: State, manager: ManagerDep, scan_id: FromPath[uuid.UUID]
) -> Template:
    """What marking a double entry resolved means, and the button that does it."""
    back = _back(request.query_params.get("back", ""))
    return await _confirmation(request, state, manager, scan_id, "scan_resolve.html", back=back)


@post("/scans/{scan_id:uuid}/resolve", status_code=303)
async def resolve_submit(
    request: AnyRequest, state: State, manager: ManagerDep, scan_id: FromPath[uuid.UUID]
) -> Redirect | Template:
    """Accept the double entry (both admissions stand) through the API's check-in service,
    recorded as this manager's. Sent again, it changes nothing and shows the log again."""
    back = _back((await read_form(request)).get("back", ""))
    refused: Problem | None = None
    async with tenant(state, manager) as session:
        try:
            await _checkin(state, session, manager).resolve(
                scan_id, ConflictAction.ACCEPT, principal(manager).actor
            )
        except Problem as problem:
            refused = problem
    if refused is None:
        return see_other(back)
    return await _confirmation(
        request,
        state,
        manager,
        scan_id,
        "scan_resolve.html",
        back=back,
        status=409,
        refused=refused,
    )


ROUTES: Final = [
    scans_page,
    scans_csv,
    annul_page,
    annul_submit,
    resolve_page,
    resolve_submit,
]
