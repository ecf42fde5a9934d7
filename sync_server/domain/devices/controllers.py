from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from sync_server.domain.devices.schemas import (
    DevicePage,
    DeviceSelf,
    EnrolledDevice,
    EnrollmentCreate,
    EnrollmentOut,
    EnrollRequest,
)
from sync_server.domain.devices.services import DeviceService, enroll_device
from sync_server.http.auth import Principal, Role, allow
from sync_server.http.pagination import DEFAULT_LIMIT
from sync_server.runtime import PrincipalDep, Runtime, RuntimeDep, SessionDep


def _service(session: AsyncSession, rt: Runtime, principal: Principal) -> DeviceService:
    return DeviceService(session, rt.keys, rt.clock, principal)


class DeviceController(Controller):
    path = "/v1/devices"
    tags = ["devices"]  # noqa: RUF012

    @post("/enrollments", guards=[allow(Role.MANAGER)])
    async def create_enrollment(
        self,
        data: JSONBody[EnrollmentCreate],
        session: SessionDep,
        rt: RuntimeDep,
        principal: PrincipalDep,
    ) -> EnrollmentOut:
        """A one-time code that enrolls one scanner for a gate of an event."""
        return await _service(session, rt, principal).create_enrollment(
            data, default_ttl_seconds=rt.settings.auth.enrollment_ttl_seconds
        )

    @post("/enroll", opt={"exclude_from_auth": True})
    async def enroll(self, data: JSONBody[EnrollRequest], rt: RuntimeDep) -> EnrolledDevice:
        """Redeem an enrollment code (no token needed): the device's id, token and keys."""
        return await enroll_device(rt.database, rt.keys, rt.clock, rt.settings.auth, data)

    @get("/me", guards=[allow(Role.SCANNER)])
    async def me(self, session: SessionDep, rt: RuntimeDep, principal: PrincipalDep) -> DeviceSelf:
        """The calling scanner and its event's current keys."""
        return await _service(session, rt, principal).me()

    @get("/", guards=[allow(Role.MANAGER)])
    async def list_devices(
        self,
        session: SessionDep,
        rt: RuntimeDep,
        principal: PrincipalDep,
        event_id: FromQuery[uuid.UUID | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = DEFAULT_LIMIT,
    ) -> DevicePage:
        return await _service(session, rt, principal).list(event_id, cursor, limit)

    @delete("/{device_id:uuid}", guards=[allow(Role.MANAGER)])
    async def revoke(
        self,
        device_id: FromPath[uuid.UUID],
        session: SessionDep,
        rt: RuntimeDep,
        principal: PrincipalDep,
    ) -> None:
        """Revoke a device: its token is refused from its next request on."""
        await _service(session, rt, principal).revoke(device_id)
