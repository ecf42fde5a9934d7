from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, TypeAlias

from litestar import Request, get
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Stream
from litestar.types import ControllerRouterHandler

from shared.domain import Direction, VerdictReason, VerdictResult
from shared.wire import GATE_NAME_MAX, ONE_LINE
from sync_server.domain.scans.schemas import EventStats, ScanFilter, ScanPage
from sync_server.domain.scans.services import ScanLog, export_csv
from sync_server.http.auth import Role, allow
from sync_server.http.dependencies import ClockDep, DatabaseDep, PrincipalDep, SessionDep
from sync_server.http.pagination import DEFAULT_LIMIT
from sync_server.http.problems import AUTHENTICATED, DocumentedOperation, problem_responses

CSV = "text/csv"
_MANAGERS = [allow(Role.MANAGER)]
#: A gate name, as ``shared.wire.GateName`` has it. Litestar takes a query parameter's
#: constraints from its ``QueryParameter`` only (a msgspec ``Meta`` inside an optional type is
#: dropped), so they are spelled here.
GateFilter: TypeAlias = Annotated[
    str | None, QueryParameter(min_length=1, max_length=GATE_NAME_MAX, pattern=ONE_LINE.pattern)
]


async def provide_scan_log(session: SessionDep) -> ScanLog:
    return ScanLog(session)


ScanLogDep: TypeAlias = NamedDependency[ScanLog]
_SCAN_LOG = {"scan_log": Provide(provide_scan_log)}


@get(
    "/v1/scans",
    guards=_MANAGERS,
    tags=["scans"],
    dependencies=_SCAN_LOG,
    operation_class=DocumentedOperation,
    # The JSON page's schema; the CSV download is described in words.
    responses={
        **problem_responses(400, *AUTHENTICATED),
        200: ResponseSpec(
            data_container=ScanPage,
            description="A page of scans; with Accept: text/csv, all matching scans as CSV.",
        ),
    },
)
async def list_scans(
    request: Request[Any, Any, Any],
    scan_log: ScanLogDep,
    database: DatabaseDep,
    principal: PrincipalDep,
    event_id: FromQuery[uuid.UUID | None] = None,
    ticket_id: FromQuery[uuid.UUID | None] = None,
    gate: GateFilter = None,
    device_id: FromQuery[uuid.UUID | None] = None,
    result: FromQuery[VerdictResult | None] = None,
    reason: FromQuery[VerdictReason | None] = None,
    direction: FromQuery[Direction | None] = None,
    conflicts_only: FromQuery[bool] = False,
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
    checkin_list_id: FromQuery[uuid.UUID | None] = None,
    zone: Annotated[
        str | None,
        QueryParameter(
            max_length=64,
            pattern=ONE_LINE.pattern,
            description="Admissions into this zone; empty for the event's general area.",
        ),
    ] = None,
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = DEFAULT_LIMIT,
) -> ScanPage | Stream:
    """The scan log, newest scans last; ``since`` (inclusive) and ``until`` (exclusive) are
    RFC 3339 times with an offset, on the authoritative scan time. With ``Accept: text/csv``,
    every matching scan (not one page: ``cursor`` and ``limit`` are ignored) as a CSV
    download with a header row. ``checkin_list_id`` and ``zone`` narrow it to the scans
    counted on (or refused by) a check-in list, and to the admissions into a zone."""
    filters = ScanFilter(
        event_id=event_id,
        ticket_id=ticket_id,
        gate=gate,
        device_id=device_id,
        result=result,
        reason=reason,
        direction=direction,
        conflicts_only=conflicts_only,
        since=since,
        until=until,
        checkin_list_id=checkin_list_id,
        zone=zone,
    )
    if request.accept.best_match(["application/json", CSV], default="application/json") == CSV:
        filename = f"scans-{event_id or 'all'}.csv"
        return Stream(
            await export_csv(database, principal.tenant_id, filters),
            media_type=CSV,
            # Set explicitly: Litestar would otherwise label a returned Stream with the
            # handler's default media type (JSON).
            headers={
                "Content-Type": f"{CSV}; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{filename}"',
            },
        )
    return await scan_log.page(filters, cursor, limit)


@get(
    "/v1/events/{event_id:uuid}/stats",
    guards=_MANAGERS,
    tags=["scans"],
    dependencies=_SCAN_LOG,
    operation_class=DocumentedOperation,
    responses=problem_responses(400, 404, *AUTHENTICATED),
)
async def event_stats(
    event_id: FromPath[uuid.UUID], scan_log: ScanLogDep, clock: ClockDep
) -> EventStats:
    """Admitted, rejected (by reason), inside now, double entries, undone admissions, per gate
    and per minute. 404 when the event is not the caller's."""
    return await scan_log.stats(event_id, clock.now())


SCAN_ROUTES: list[ControllerRouterHandler] = [list_scans, event_stats]
