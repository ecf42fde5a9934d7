from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from shared import wire
from sync_server.domain.checkin.services import CheckInService, Gate, http_status
from sync_server.domain.sync.feed import DEFAULT_PAGE, MAX_PAGE, read_changes, sequence_pending
from sync_server.http.auth import Principal, Role, allow
from sync_server.http.problems import BadRequest, Forbidden
from sync_server.observability.metrics import observe_uploads, observe_verdict
from sync_server.runtime import PrincipalDep, Runtime, RuntimeDep, SessionDep

MSGPACK = "application/msgpack"


def _service(session: AsyncSession, rt: Runtime, principal: Principal) -> CheckInService:
    return CheckInService(
        session, rt.keys, rt.ownership, tenant_id=principal.tenant_id, now=rt.clock.now()
    )


def _device_gate(principal: Principal) -> Gate:
    if principal.device_id is None or principal.event_id is None or principal.gate is None:
        raise Forbidden("device_token_required", "This needs an enrolled device's token.")
    return Gate(
        name=principal.gate,
        actor=principal.actor,
        event_id=principal.event_id,
        device_id=principal.device_id,
    )


@post("/v1/validate", guards=[allow(Role.SCANNER, Role.MANAGER)], tags=["check-in"])
async def validate(
    data: JSONBody[wire.ValidateRequest],
    session: SessionDep,
    rt: RuntimeDep,
    principal: PrincipalDep,
) -> Response[wire.Verdict]:
    """The online check-in: 200 admitted, 409 already checked in (``prior`` names the first
    entry), 422 any other rejection. The body is always the verdict. Send a ``scan_id`` so a
    retry after a lost answer gets the same verdict instead of a second scan."""
    if principal.role is Role.SCANNER:
        gate = _device_gate(principal)
    else:
        if data.gate is None:
            raise BadRequest("gate_required", "Say at which gate this check-in happens.")
        gate = Gate(name=data.gate, actor=principal.actor, event_id=None)
    verdict = await _service(session, rt, principal).validate(gate, data)
    observe_verdict(verdict)
    return Response(verdict, status_code=http_status(verdict))


@post(
    "/v1/scans/{scan_id:uuid}/annul",
    guards=[allow(Role.SCANNER, Role.MANAGER)],
    tags=["check-in"],
    status_code=200,
)
async def annul(
    scan_id: FromPath[uuid.UUID], session: SessionDep, rt: RuntimeDep, principal: PrincipalDep
) -> wire.Verdict:
    """Undo an admission: by a manager, or by the device that admitted."""
    return await _service(session, rt, principal).annul(
        scan_id, principal.actor, principal.device_id
    )


@post("/v1/sync/scans", guards=[allow(Role.SCANNER)], tags=["sync"], status_code=200)
async def upload_scans(
    data: JSONBody[wire.ScanBatch], session: SessionDep, rt: RuntimeDep, principal: PrincipalDep
) -> wire.ScanBatchOutcome:
    """Upload offline scans (at most 1000). Safe to repeat: each scan id is recorded once, and
    a repeat returns the same outcomes (``duplicate_upload`` marks them)."""
    outcome = await _service(session, rt, principal).ingest(_device_gate(principal), data.scans)
    observe_uploads(outcome)
    return outcome


class FeedController(Controller):
    path = "/v1/sync/changes"
    tags = ["sync"]  # noqa: RUF012
    guards = [allow(Role.SCANNER)]  # noqa: RUF012

    @get("/")
    async def changes(
        self,
        session: SessionDep,
        rt: RuntimeDep,
        principal: PrincipalDep,
        cursor: Annotated[str | None, QueryParameter()] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
        accept: Annotated[str | None, HeaderParameter(name="Accept", required=False)] = None,
    ) -> Response[bytes]:
        """The next changes for this device's event after ``cursor`` (none: from the start).
        Follow ``next_cursor`` while ``has_more``. JSON, or msgpack with
        ``Accept: application/msgpack``; gzip when asked for."""
        gate = _device_gate(principal)
        assert gate.event_id is not None
        await sequence_pending(rt.database, principal.tenant_id)
        page = await read_changes(
            session,
            rt.keys,
            tenant_id=principal.tenant_id,
            event_id=gate.event_id,
            device_id=gate.device_id,
            cursor=cursor,
            limit=limit,
            server_time=rt.clock.now(),
        )
        if accept and MSGPACK in accept:
            return Response(msgspec.msgpack.encode(page), media_type=MSGPACK)
        return Response(msgspec.json.encode(page), media_type="application/json")


@get("/v1/sync/scans/{scan_id:uuid}", guards=[allow(Role.SCANNER)], tags=["sync"])
async def recorded_scan(
    scan_id: FromPath[uuid.UUID], session: SessionDep, rt: RuntimeDep, principal: PrincipalDep
) -> wire.Verdict:
    """The verdict recorded for one of this device's scans; 404 when the server never got it.
    A scanner that was cut off while asking ``/v1/validate`` asks this to find out whether its
    question arrived."""
    gate = _device_gate(principal)
    assert gate.device_id is not None
    return await _service(session, rt, principal).recorded(scan_id, gate.device_id)


CHECKIN_ROUTES: list[ControllerRouterHandler] = [
    validate,
    annul,
    upload_scans,
    recorded_scan,
    FeedController,
]
