"""``/v1/sync``: what an offline-capable scanner exchanges with the server — its offline scans
up, the changes feed of its event down, and the verdict recorded for one of its scans."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.types import ControllerRouterHandler

from shared import wire
from sync_server.domain.checkin.controllers import CHECKIN_SERVICE, CheckInServiceDep, device_gate
from sync_server.domain.keys.services import KeysDep
from sync_server.domain.sync.feed import DEFAULT_PAGE, MAX_PAGE, read_changes, sequence_pending
from sync_server.http.auth import Role, allow
from sync_server.http.dependencies import (
    ClockDep,
    DatabaseDep,
    PrincipalDep,
    RateLimitsDep,
    SessionDep,
)
from sync_server.http.problems import AUTHENTICATED, DocumentedOperation, problem_responses
from sync_server.http.rate_limiting import refuse_over
from sync_server.observability.metrics import observe_uploads

MSGPACK = "application/msgpack"


@post(
    "/v1/sync/scans",
    guards=[allow(Role.SCANNER)],
    tags=["sync"],
    status_code=200,
    dependencies=CHECKIN_SERVICE,
    operation_class=DocumentedOperation,
    responses=problem_responses(400, 422, *AUTHENTICATED),
)
async def upload_scans(
    data: JSONBody[wire.ScanBatch],
    checkin_service: CheckInServiceDep,
    principal: PrincipalDep,
    rate_limits: RateLimitsDep,
) -> wire.ScanBatchOutcome:
    """Upload offline scans (at most 1000). Safe to repeat: each scan id is recorded once, and
    a repeat returns the same outcomes (``duplicate_upload`` marks them). Scans count for the
    device's enrolled gate; times are bounded (``time_adjusted``); a batch holding another
    device's scan id is refused whole (409 ``scan_id_taken``). A device may upload so many
    scans a minute (429 ``rate_limited`` beyond, with ``Retry-After``); scans whose code does
    not read are stored up to a number a minute, the rest counted (``stored: false``)."""
    refuse_over(await rate_limits.scans(principal, len(data.scans)), what="scans")
    outcome = await checkin_service.ingest(device_gate(principal), data.scans)
    observe_uploads(outcome)
    return outcome


class FeedController(Controller):
    path = "/v1/sync/changes"
    tags = ["sync"]  # noqa: RUF012
    guards = [allow(Role.SCANNER)]  # noqa: RUF012

    @get(
        "/",
        operation_class=DocumentedOperation,
        responses={
            # The handler encodes the page itself (JSON or msgpack): say what it is.
            200: ResponseSpec(
                wire.ChangesPage,
                description="The next page of changes, as JSON; the same page as msgpack "
                f"(`{MSGPACK}`) when the request's `Accept` asks for it.",
                # A random example would break the invariants the structs check on build
                # (a session's start before its end): the schema says it all.
                generate_examples=False,
            ),
            **problem_responses(400, 409, *AUTHENTICATED),
        },
    )
    async def changes(
        self,
        session: SessionDep,
        database: DatabaseDep,
        keys: KeysDep,
        clock: ClockDep,
        principal: PrincipalDep,
        cursor: Annotated[str | None, QueryParameter()] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
        accept: Annotated[str | None, HeaderParameter(name="Accept", required=False)] = None,
        setup_version: Annotated[
            int | None,
            QueryParameter(
                ge=0,
                le=2**63 - 1,
                description="The version of the event's check-in setup the device holds; "
                "the page carries the setup when the event's differs (always without it).",
            ),
        ] = None,
    ) -> Response[bytes]:
        """The next changes for this device's event after ``cursor`` (none: from the start).
        Follow ``next_cursor`` while ``has_more``. JSON, or msgpack with
        ``Accept: application/msgpack``; gzip when asked for. Every page says the event's
        check-in setup version (``checkin_setup_version``) and carries the setup itself
        (``checkin_setup``: lists, days, time zone, ticket types' days) when it differs from
        ``setup_version``. A cursor this database did not number (it was restored from a
        backup since) is answered 409 ``feed_reset``: start again without one."""
        gate = device_gate(principal)
        assert gate.event_id is not None
        await sequence_pending(database, principal.tenant_id)
        page = await read_changes(
            session,
            keys,
            tenant_id=principal.tenant_id,
            event_id=gate.event_id,
            device_id=gate.device_id,
            cursor=cursor,
            limit=limit,
            server_time=clock.now(),
            setup_version=setup_version,
        )
        if accept and MSGPACK in accept:
            return Response(msgspec.msgpack.encode(page), media_type=MSGPACK)
        return Response(msgspec.json.encode(page), media_type="application/json")


@get(
    "/v1/sync/scans/{scan_id:uuid}",
    guards=[allow(Role.SCANNER)],
    tags=["sync"],
    dependencies=CHECKIN_SERVICE,
    operation_class=DocumentedOperation,
    responses=problem_responses(400, 404, *AUTHENTICATED),
)
async def recorded_scan(
    scan_id: FromPath[uuid.UUID], checkin_service: CheckInServiceDep, principal: PrincipalDep
) -> wire.Verdict:
    """The verdict recorded for one of this device's scans; 404 when the server never got it,
    409 ``scan_id_taken`` when the id is another device's scan (of any tenant: never its
    verdict). A scanner that was cut off while asking ``/v1/validate`` asks this to find out
    whether its question arrived."""
    return await checkin_service.recorded(scan_id, device_gate(principal))


SYNC_ROUTES: list[ControllerRouterHandler] = [upload_scans, recorded_scan, FeedController]
