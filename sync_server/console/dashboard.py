"""The live dashboard of an event: admitted, inside now (per zone), rejected by reason,
conflicts and undone admissions, per gate, and a chart of entries per minute per gate over the
last hours — updated in the browser within about a second of a scan reaching the server.

* ``GET /console/dashboard``: the event running now (or the next one); a list to choose from
  when several run or none is running or coming; a sentence when there are no events.
* ``GET /console/events/{id}/dashboard``: the page. Every number is in the HTML (the page makes
  sense without JavaScript; the chart's sentence says what it shows).
* ``GET /console/events/{id}/dashboard/stream``: server-sent events, ``event: counts`` with
  ``{"html": <the counts' fragment>, "chart": <the chart's data>, "caption": <its sentence>}``,
  which ``static/dashboard.js`` puts in the page. Checked under row-level security before
  anything is sent (another tenant's event is a 404, no session a 401); the feeds and why they
  cost what they cost: ``live``.

The numbers come from the counts migration 0020 keeps (``ScanLog.counts``): a page or a
message costs a few small queries at a million scans, not a pass over them.
"""

from __future__ import annotations

import json
import re
import uuid
import zoneinfo
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from litestar import Response, get
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sync_server.console.accounts import Manager
from sync_server.console.live import RETRY_MS, LiveDashboards
from sync_server.console.web import (
    HEADERS,
    AnyRequest,
    ManagerDep,
    SignInRequired,
    database,
    now,
    render,
    tenant,
)
from sync_server.db.models import Event
from sync_server.domain.scans.schemas import EventCounts, GateCounts
from sync_server.domain.scans.services import ScanLog
from sync_server.http.dependencies import app_services

#: The chart covers this much time, up to now (or to the end of an event that is over).
CHART_HOURS: Final = 3
#: The gate table's "lately" column: entries in this many last minutes.
RECENT_MINUTES: Final = 15
#: The most events the chooser lists (the newest first).
EVENTS_LISTED: Final = 200

#: Rejection reasons as a manager reads them in a table (the gate's sentences are longer).
REASON_LABELS: Final = {
    "already_checked_in": "Already checked in",
    "invalid_code": "Not a valid ticket code",
    "unknown_key": "Code the scanner could not read yet",
    "wrong_event": "Ticket for another event",
    "not_found": "Not on the guest list",
    "revoked": "Ticket cancelled",
    "expired": "Ticket expired",
    "superseded": "Replaced by a newer code",
    "not_yet_valid": "Not valid yet",
    "no_longer_valid": "No longer valid",
    "ownership_mismatch": "Ticket belongs to someone else",
    "device_revoked": "Scanner switched off",
    "not_on_list": "Not for this gate",
    "rule_failed": "Refused by the gate's rule or hours",
    "unspecified": "No reason recorded",
}
GENERAL_AREA: Final = "General area"


def gate_order(name: str) -> tuple[tuple[int, str], ...]:
    """Gate names in the order people count them: "Gate 2" before "Gate 10"."""
    return tuple(
        (int(part), "") if part.isdigit() else (-1, part.casefold())
        for part in re.split(r"(\d+)", name)
        if part
    )


def reason_label(reason: str) -> str:
    return REASON_LABELS.get(reason, reason.replace("_", " ").capitalize())


@dataclass(frozen=True, slots=True)
class GateRow:
    counts: GateCounts
    #: Entries in the last ``RECENT_MINUTES`` minutes.
    recent: int
    #: The latest scan's time, in the event's time zone; None without scans.
    last_scan: str | None


@dataclass(frozen=True, slots=True)
class DashboardView:
    """Everything the page and its live fragment show of one event at one moment."""

    event_id: uuid.UUID
    counts: EventCounts
    gates: list[GateRow]
    #: (label, count), by count.
    reasons: list[tuple[str, int]]
    #: (label, count): every zone someone is inside, the general area first.
    zones: list[tuple[str, int]]
    chart: dict[str, Any]
    caption: str
    as_of: str
    recent_total: int = field(default=0)


def _phase(event: Event, moment: datetime) -> str:
    opens = event.admission_opens_at or event.starts_at
    if moment < opens:
        return "upcoming"
    if moment >= event.ends_at:
        return "over"
    return "running"


def _clock(moment: datetime, zone: zoneinfo.ZoneInfo, *, seconds: bool = False) -> str:
    return moment.astimezone(zone).strftime("%H:%M:%S" if seconds else "%H:%M")


async def dashboard_view(session: AsyncSession, event: Event, moment: datetime) -> DashboardView:
    """The event's dashboard as of ``moment`` (in the tenant's transaction ``session``)."""
    log = ScanLog(session)
    counts = await log.counts(event.id)
    zone = zoneinfo.ZoneInfo(event.time_zone)
    # The chart ends now, or at the end of an event that is over (with its late scans).
    last_scan = max((g.last_scan_at for g in counts.per_gate if g.last_scan_at), default=None)
    end = moment
    if _phase(event, moment) == "over":
        end = max(event.ends_at, last_scan) if last_scan else event.ends_at
    # The chart's last minute is the last whole one (the minute under way would dip).
    now_minute = end.replace(second=0, microsecond=0)
    last_minute = now_minute - timedelta(minutes=1)
    start = last_minute - timedelta(hours=CHART_HOURS) + timedelta(minutes=1)
    minutes = await log.gate_minutes(event.id, start)
    chart, caption = _chart([m for m in minutes if m[0] <= last_minute], start, last_minute, zone)
    recent_since = now_minute - timedelta(minutes=RECENT_MINUTES - 1)
    recent: dict[str, int] = {}
    for minute, gate, admitted, _ in minutes:
        if minute >= recent_since:
            recent[gate] = recent.get(gate, 0) + admitted
    gates = [
        GateRow(
            counts=g,
            recent=recent.get(g.gate, 0),
            last_scan=_clock(g.last_scan_at, zone, seconds=True) if g.last_scan_at else None,
        )
        for g in sorted(counts.per_gate, key=lambda g: gate_order(g.gate))
    ]
    reasons = sorted(
        ((reason_label(r), n) for r, n in counts.rejected_by_reason.items()),
        key=lambda item: (-item[1], item[0]),
    )
    zones = sorted(
        ((name or GENERAL_AREA, n) for name, n in counts.inside_by_zone.items()),
        key=lambda item: (item[0] != GENERAL_AREA, item[0]),
    )
    return DashboardView(
        event_id=event.id,
        counts=counts,
        gates=gates,
        reasons=reasons,
        zones=zones,
        chart=chart,
        caption=caption,
        as_of=_clock(moment, zone, seconds=True),
        recent_total=sum(recent.values()),
    )


def _chart(
    minutes: list[tuple[datetime, str, int, int]],
    start: datetime,
    end: datetime,
    zone: zoneinfo.ZoneInfo,
) -> tuple[dict[str, Any], str]:
    """uPlot's data (a minute axis in Unix seconds, one series of entries per gate) and the
    sentence that says what the chart shows, for those who cannot see it."""
    first = int(start.timestamp())
    count = int((end - start).total_seconds() // 60) + 1
    by_gate: dict[str, list[int]] = {}
    for minute, gate, admitted, _ in minutes:
        if admitted <= 0:
            continue
        index = (int(minute.timestamp()) - first) // 60
        if 0 <= index < count:
            by_gate.setdefault(gate, [0] * count)[index] += admitted
    gates = sorted(by_gate, key=gate_order)
    totals = [sum(by_gate[g][i] for g in gates) for i in range(count)]
    chart = {
        "start": first,
        "step": 60,
        "count": count,
        "zone": zone.key,
        "gates": gates,
        "series": [by_gate[g] for g in gates],
    }
    span = f"from {_clock(start, zone)} to {_clock(end, zone)}"
    entered = sum(totals)
    if not entered:
        return chart, f"No entries {span}."
    peak = max(range(count), key=lambda i: totals[i])
    peak_at = _clock(start + timedelta(minutes=peak), zone)
    lately = sum(totals[-5:]) / min(5, count)
    busiest = max(gates, key=lambda g: sum(by_gate[g]))
    entries = "entry" if entered == 1 else "entries"
    at_gates = f"{len(gates)} gate{'s' if len(gates) != 1 else ''}"
    caption = (
        f"{entered:,} {entries} {span} at {at_gates}; "
        f"the busiest minute was {peak_at} with {totals[peak]:,}; "
        f"the last five minutes averaged {lately:,.0f} a minute; "
        f"{busiest} admitted the most ({sum(by_gate[busiest]):,})."
    )
    return chart, caption


def _context(view: DashboardView) -> dict[str, Any]:
    return {"view": view, "chart_json": json.dumps(view.chart, separators=(",", ":"))}


# --- choosing an event -------------------------------------------------------------------------


async def _events(session: AsyncSession) -> list[Event]:
    found = await session.scalars(
        select(Event).order_by(Event.starts_at.desc(), Event.id).limit(EVENTS_LISTED)
    )
    return list(found)


def _current(events: list[Event], moment: datetime) -> tuple[Event | None, list[Event]]:
    """The event to show, or None and the events to choose from (running ones first)."""
    running = [e for e in events if _phase(e, moment) == "running"]
    if len(running) == 1:
        return running[0], []
    if running:
        return None, running + [e for e in events if e not in running]
    upcoming = [e for e in events if _phase(e, moment) == "upcoming"]
    if upcoming:
        return min(upcoming, key=lambda e: (e.admission_opens_at or e.starts_at, e.starts_at)), []
    return None, events


async def _page(
    request: AnyRequest, state: State, manager: Manager, event_id: uuid.UUID | None
) -> Template:
    moment = now(state)
    async with tenant(state, manager) as session:
        events = await _events(session)
        if event_id is None:
            event, choices = _current(events, moment)
            if event is None:
                return render(
                    request,
                    "dashboard_choose.html",
                    manager=manager,
                    current="dashboard",
                    events=choices,
                    several=any(_phase(e, moment) == "running" for e in choices),
                    phase=lambda e: _phase(e, moment),
                )
        else:
            event = await session.get(Event, event_id)
            if event is None:
                return render(
                    request, "not_found.html", manager=manager, status=404, current="dashboard"
                )
        view = await dashboard_view(session, event, moment)
    zone = zoneinfo.ZoneInfo(event.time_zone)
    return render(
        request,
        "dashboard.html",
        manager=manager,
        current="dashboard",
        event=event,
        zone=zone,
        phase=_phase(event, moment),
        others=[e for e in events if e.id != event.id][:20],
        **_context(view),
    )


@get("/dashboard")
async def dashboard_home(request: AnyRequest, state: State, manager: ManagerDep) -> Template:
    return await _page(request, state, manager, None)


@get("/events/{event_id:uuid}/dashboard")
async def event_dashboard(
    request: AnyRequest, state: State, manager: ManagerDep, event_id: FromPath[uuid.UUID]
) -> Template:
    return await _page(request, state, manager, event_id)


# --- the live stream ---------------------------------------------------------------------------


def live_dashboards(state: State) -> LiveDashboards:
    """The process's dashboard feeds (made by the app's lifespan)."""
    found: LiveDashboards = app_services(state).live_dashboards
    return found


def _stream_refused(_request: AnyRequest, _error: SignInRequired) -> Response[str]:
    """A stream without a live session: 401, not the sign-in page (EventSource gives up)."""
    return Response(
        "Sign in to the console to see this dashboard.",
        status_code=401,
        media_type="text/plain",
        headers=HEADERS,
    )


@get(
    "/events/{event_id:uuid}/dashboard/stream",
    exception_handlers={SignInRequired: _stream_refused},
)
async def dashboard_stream(
    request: AnyRequest, state: State, manager: ManagerDep, event_id: FromPath[uuid.UUID]
) -> Response[Any]:
    async with tenant(state, manager) as session:
        event = await session.get(Event, event_id)
    if event is None:
        return Response("No such event.", status_code=404, media_type="text/plain", headers=HEADERS)
    live = live_dashboards(state)
    if live.ended:
        return Response(
            "The server is restarting.", status_code=503, media_type="text/plain", headers=HEADERS
        )
    engine = request.app.template_engine
    assert engine is not None  # the app's template config (sync_server.app)
    db, tenant_id = database(state), manager.tenant_id

    async def snapshot() -> str:
        async with db.tenant(tenant_id) as session:
            found = await session.get(Event, event_id)
            if found is None:
                raise LookupError(f"event {event_id} is gone")
            view = await dashboard_view(session, found, now(state))
        html = engine.get_template("dashboard_live.html").render(**_context(view))
        return json.dumps(
            {"html": html, "chart": view.chart, "caption": view.caption},
            separators=(",", ":"),
        )

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        async for message in live.stream(event_id, snapshot):
            yield message

    return ServerSentEvent(
        messages(),
        headers={**HEADERS, "X-Accel-Buffering": "no"},
        retry_duration=RETRY_MS,
    )


ROUTES: Final = [dashboard_home, event_dashboard, dashboard_stream]
