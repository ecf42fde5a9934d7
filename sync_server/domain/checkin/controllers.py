from __future__ import annotations

import uuid
from typing import TypeAlias

from litestar import Response, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.types import ControllerRouterHandler

from shared import wire
from shared.clock import Clock
from sync_server.domain.checkin.admission import Gate, http_status
from sync_server.domain.checkin.code_check import check_code
from sync_server.domain.checkin.ownership import OwnershipCheck
from sync_server.domain.checkin.schemas import (
    CodeCheckOut,
    CodeCheckRequest,
    ConflictResolutionOut,
    ConflictResolveRequest,
)
from sync_server.domain.checkin.services import CheckInService
from sync_server.domain.checkin_lists.controllers import CheckinListController
from sync_server.domain.keys.services import KeysDep, KeyStore
from sync_server.http.auth import Principal, Role, allow
from sync_server.http.dependencies import ClockDep, PrincipalDep, SessionDep, app_services
from sync_server.http.problems import (
    AUTHENTICATED,
    BadRequest,
    DocumentedOperation,
    Forbidden,
    problem_responses,
)
from sync_server.observability.metrics import observe_verdict
from sync_server.settings import Settings


async def provide_checkin_service(
    session: SessionDep, principal: PrincipalDep, state: State
) -> CheckInService:
    # The app's objects from its state, not by name: on every verdict's path, where each
    # named dependency would cost an anyio task (``app_services`` says why).
    built = app_services(state)
    keys: KeyStore = built.keys
    ownership: OwnershipCheck = built.ownership
    clock: Clock = built.clock
    settings: Settings = built.settings
    return CheckInService(
        session,
        keys,
        ownership,
        tenant_id=principal.tenant_id,
        now=clock.now(),
        junk_per_minute=settings.rate_limits.junk_per_minute,
    )


CheckInServiceDep: TypeAlias = NamedDependency[CheckInService]
#: What a handler declares to receive ``checkin_service``.
CHECKIN_SERVICE = {"checkin_service": Provide(provide_checkin_service)}


def device_gate(principal: Principal) -> Gate:
    """The gate of a device token. Raises ``Forbidden`` for any other token."""
    if principal.device_id is None or principal.event_id is None or principal.gate is None:
        raise Forbidden("device_token_required", "This needs an enrolled device's token.")
    return Gate(
        name=principal.gate,
        actor=principal.actor,
        event_id=principal.event_id,
        device_id=principal.device_id,
    )


@post(
    "/v1/validate",
    guards=[allow(Role.SCANNER, Role.MANAGER)],
    tags=["check-in"],
    dependencies=CHECKIN_SERVICE,
    status_code=200,
    operation_class=DocumentedOperation,
    # The verdict is the body of every answer but the request's own errors.
    responses={
        **problem_responses(400, *AUTHENTICATED),
        409: ResponseSpec(
            wire.Verdict, description="Already checked in: `prior` names the first entry."
        ),
        422: ResponseSpec(wire.Verdict, description="Rejected: `reason` says why."),
    },
    response_description="Admitted.",
)
async def validate(
    data: JSONBody[wire.ValidateRequest],
    checkin_service: CheckInServiceDep,
    principal: PrincipalDep,
) -> Response[wire.Verdict]:
    """The online check-in: 200 admitted, 409 already checked in (``prior`` names the first
    entry), 422 any other rejection. The body is always the verdict. Send a ``scan_id`` so a
    retry after a lost answer gets the same verdict instead of a second scan."""
    if principal.role is Role.SCANNER:
        gate = device_gate(principal)
    else:
        if data.gate is None:
            raise BadRequest("gate_required", "Say at which gate this check-in happens.")
        gate = Gate(name=data.gate, actor=principal.actor, event_id=None)
    verdict = await checkin_service.validate(gate, data)
    observe_verdict(verdict)
    return Response(verdict, status_code=http_status(verdict))


@post(
    "/v1/scans/{scan_id:uuid}/annul",
    guards=[allow(Role.SCANNER, Role.MANAGER)],
    tags=["check-in"],
    status_code=200,
    dependencies=CHECKIN_SERVICE,
    operation_class=DocumentedOperation,
    responses=problem_responses(400, 404, 422, *AUTHENTICATED),
)
async def annul(
    scan_id: FromPath[uuid.UUID],
    checkin_service: CheckInServiceDep,
    principal: PrincipalDep,
    data: JSONBody[wire.AnnulRequest | None] = None,
) -> wire.Verdict:
    """Undo an admission: by a manager, or by the device that admitted. The body is optional:
    ``reason`` says why (it goes to the ticket's history)."""
    reason = data.reason if data is not None else None
    return await checkin_service.annul(scan_id, principal.actor, principal.device_id, reason)


@post(
    "/v1/scans/{scan_id:uuid}/resolve",
    guards=[allow(Role.MANAGER)],
    tags=["check-in"],
    status_code=200,
    dependencies=CHECKIN_SERVICE,
    operation_class=DocumentedOperation,
    responses=problem_responses(400, 404, 409, *AUTHENTICATED),
)
async def resolve(
    scan_id: FromPath[uuid.UUID],
    data: JSONBody[ConflictResolveRequest],
    checkin_service: CheckInServiceDep,
    principal: PrincipalDep,
) -> ConflictResolutionOut:
    """Resolve a double entry: ``accept`` (both admissions stand; it counts as an admission from
    now on) or ``annul`` (undone, as ``/annul`` does); ``note`` goes to the ticket's history.
    Recorded in the history, sent to the scanners through the feed and to other services as
    ``ticket.conflict_resolved``. Asking again answers the same; 409 ``already_resolved`` for
    the other action, 409 ``not_a_conflict`` for a scan that is no standing double entry."""
    return await checkin_service.resolve(scan_id, data.action, principal.actor, data.note)


@post(
    "/v1/codes/check",
    guards=[allow(Role.SERVICE, Role.MANAGER)],
    tags=["tickets"],
    status_code=200,
    operation_class=DocumentedOperation,
    responses=problem_responses(400, *AUTHENTICATED),
)
async def check(
    data: JSONBody[CodeCheckRequest],
    session: SessionDep,
    keys: KeysDep,
    clock: ClockDep,
    principal: PrincipalDep,
) -> CodeCheckOut:
    """What a code says and whether a gate would accept it now (earlier scans aside). Records
    nothing: for box offices and support, not for gates."""
    return await check_code(
        session,
        keys,
        tenant_id=principal.tenant_id,
        text=data.code,
        gate_event_id=data.event_id,
        now=clock.now(),
    )


#: With the event's check-in list API (issue 16), so that the app registers both as one.
CHECKIN_ROUTES: list[ControllerRouterHandler] = [
    validate,
    annul,
    resolve,
    check,
    CheckinListController,
]
