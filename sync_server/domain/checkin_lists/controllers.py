"""``/v1/events/{event_id}/checkin-lists``: an event's check-in lists (docs/checkin-lists.md),
for managers and services, as ticket types are."""

from __future__ import annotations

import uuid
from typing import TypeAlias

from litestar import Controller, Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from shared import wire
from sync_server.domain.checkin_lists.schemas import (
    CheckinListPatch,
    CheckinListRemoval,
    PretixImport,
)
from sync_server.domain.checkin_lists.services import CheckinListService
from sync_server.http.auth import Role, allow
from sync_server.http.dependencies import ClockDep, PrincipalDep, SessionDep
from sync_server.http.idempotency import (
    REPLAYED,
    IdempotencyHeader,
    IdempotentRequest,
    run_idempotent,
)
from sync_server.http.problems import AUTHENTICATED, DocumentedOperation, problem_responses


async def provide_checkin_list_service(
    session: SessionDep, principal: PrincipalDep, clock: ClockDep
) -> CheckinListService:
    return CheckinListService(session, principal, clock.now())


CheckinListServiceDep: TypeAlias = NamedDependency[CheckinListService]


class CheckinListController(Controller):
    path = "/v1/events/{event_id:uuid}/checkin-lists"
    tags = ["checkin-lists"]  # noqa: RUF012
    guards = [allow(Role.MANAGER, Role.SERVICE)]  # noqa: RUF012
    dependencies = {  # noqa: RUF012
        "checkin_list_service": Provide(provide_checkin_list_service)
    }

    @post(
        "/",
        status_code=201,
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, 422, *AUTHENTICATED),
        response_headers=[REPLAYED],
    )
    async def create(
        self,
        event_id: FromPath[uuid.UUID],
        data: JSONBody[wire.CheckinListCreate],
        session: SessionDep,
        principal: PrincipalDep,
        checkin_list_service: CheckinListServiceDep,
        idempotency_key: IdempotencyHeader = None,
    ) -> Response[wire.CheckinListOut]:
        """Add a check-in list to the event. 400 ``unknown_ticket_types`` names ticket type ids
        the event does not have. With an ``Idempotency-Key``, a retry answers the list made
        the first time."""
        if idempotency_key is None:
            return Response(await checkin_list_service.create(event_id, data), status_code=201)
        request = IdempotentRequest.of(
            principal, f"events/{event_id}/checkin-lists", idempotency_key, data
        )
        return await run_idempotent(
            session,
            request,
            201,
            wire.CheckinListOut,
            lambda: checkin_list_service.create(event_id, data),
        )

    @post(
        "/import-pretix",
        status_code=201,
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, 422, *AUTHENTICATED),
        response_headers=[REPLAYED],
    )
    async def import_pretix(
        self,
        event_id: FromPath[uuid.UUID],
        data: JSONBody[PretixImport],
        session: SessionDep,
        principal: PrincipalDep,
        checkin_list_service: CheckinListServiceDep,
        idempotency_key: IdempotencyHeader = None,
    ) -> Response[wire.CheckinListOut]:
        """Import a check-in list exported from pretix (its API's JSON), its rule as it is but
        for product, variation and gate ids, which ``mapping`` maps to ours. 400
        ``pretix_import_failed`` says what could not be carried over (naming every unmapped
        id). With an ``Idempotency-Key``, a retry answers the list made the first time."""
        if idempotency_key is None:
            made = await checkin_list_service.import_pretix(event_id, data)
            return Response(made, status_code=201)
        request = IdempotentRequest.of(
            principal, f"events/{event_id}/checkin-lists/import-pretix", idempotency_key, data
        )
        return await run_idempotent(
            session,
            request,
            201,
            wire.CheckinListOut,
            lambda: checkin_list_service.import_pretix(event_id, data),
        )

    @get(
        "/",
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, *AUTHENTICATED),
    )
    async def list_all(
        self, event_id: FromPath[uuid.UUID], checkin_list_service: CheckinListServiceDep
    ) -> list[wire.CheckinListOut]:
        """The event's check-in lists, archived ones included, in id order."""
        return await checkin_list_service.all(event_id)

    @get(
        "/{list_id:uuid}",
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, *AUTHENTICATED),
    )
    async def read(
        self,
        event_id: FromPath[uuid.UUID],
        list_id: FromPath[uuid.UUID],
        checkin_list_service: CheckinListServiceDep,
    ) -> wire.CheckinListOut:
        return await checkin_list_service.one(event_id, list_id)

    @patch(
        "/{list_id:uuid}",
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, *AUTHENTICATED),
    )
    async def change(
        self,
        event_id: FromPath[uuid.UUID],
        list_id: FromPath[uuid.UUID],
        data: JSONBody[CheckinListPatch],
        checkin_list_service: CheckinListServiceDep,
    ) -> wire.CheckinListOut:
        """Change some of a list's fields; the result is checked as a new list is. Repeating
        it changes nothing more."""
        return await checkin_list_service.change(event_id, list_id, data)

    @delete(
        "/{list_id:uuid}",
        status_code=200,
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, *AUTHENTICATED),
    )
    async def remove(
        self,
        event_id: FromPath[uuid.UUID],
        list_id: FromPath[uuid.UUID],
        checkin_list_service: CheckinListServiceDep,
    ) -> CheckinListRemoval:
        """Delete a list; one that has scans is archived instead (``outcome``): it stays in the
        event's setup, so its scans still name it, and decides nothing. Repeating the delete
        of an archived list answers ``archived`` again."""
        return await checkin_list_service.remove(event_id, list_id)
