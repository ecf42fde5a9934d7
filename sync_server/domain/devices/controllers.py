from __future__ import annotations

import uuid
from typing import Annotated, TypeAlias

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from sync_server.domain.devices.schemas import (
    DeviceHeartbeat,
    DeviceOut,
    DevicePage,
    DeviceSelf,
    DeviceTokens,
    EnrolledDevice,
    EnrollmentCreate,
    EnrollmentOut,
    EnrollRequest,
    TokenRenewal,
)
from sync_server.domain.devices.services import DeviceService, enroll_device, renew_tokens
from sync_server.domain.keys.services import KeysDep
from sync_server.http.auth import Role, allow
from sync_server.http.dependencies import (
    ClockDep,
    DatabaseDep,
    PrincipalDep,
    SessionDep,
    SettingsDep,
)
from sync_server.http.pagination import DEFAULT_LIMIT
from sync_server.http.problems import (
    AUTHENTICATED,
    DocumentedOperation,
    PublicOperation,
    problem_responses,
)


async def provide_device_service(
    session: SessionDep, keys: KeysDep, clock: ClockDep, principal: PrincipalDep
) -> DeviceService:
    return DeviceService(session, keys, clock, principal)


DeviceServiceDep: TypeAlias = NamedDependency[DeviceService]

#: A heartbeat is a few hundred bytes; room for fields later versions add, and no more.
HEARTBEAT_MAX_BYTES = 16 * 1024


class DeviceController(Controller):
    path = "/v1/devices"
    tags = ["devices"]  # noqa: RUF012
    dependencies = {"device_service": Provide(provide_device_service)}  # noqa: RUF012

    @post(
        "/enrollments",
        guards=[allow(Role.MANAGER)],
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, *AUTHENTICATED),
    )
    async def create_enrollment(
        self,
        data: JSONBody[EnrollmentCreate],
        device_service: DeviceServiceDep,
        settings: SettingsDep,
    ) -> EnrollmentOut:
        """A one-time code that enrolls one scanner for a gate of an event."""
        return await device_service.create_enrollment(
            data, default_ttl_seconds=settings.auth.enrollment_ttl_seconds
        )

    @post(
        "/enroll",
        opt={"exclude_from_auth": True},
        operation_class=PublicOperation,
        responses=problem_responses(400, 422, 429, 503),
    )
    async def enroll(
        self,
        data: JSONBody[EnrollRequest],
        database: DatabaseDep,
        keys: KeysDep,
        clock: ClockDep,
        settings: SettingsDep,
    ) -> EnrolledDevice:
        """Redeem an enrollment code (no token needed): the device's id, token and keys. With
        a ``peer_public_key`` (32-byte Ed25519, base64), also its peer certificate and the
        event's peer keys (``peer``); a key that is not an Ed25519 point is 400
        ``peer_public_key_invalid``."""
        return await enroll_device(database, keys, clock, settings.auth, data)

    @post(
        "/token",
        opt={"exclude_from_auth": True},
        operation_class=PublicOperation,
        status_code=200,
        responses=problem_responses(400, 401, 503),
    )
    async def renew(
        self,
        data: JSONBody[TokenRenewal],
        database: DatabaseDep,
        clock: ClockDep,
        settings: SettingsDep,
    ) -> DeviceTokens:
        """Renew a device's tokens with its refresh token (no bearer token needed): a new
        access token and the next refresh token; the one sent is spent. A spent one sent again
        revokes the device (401 ``device_revoked``); ``refresh_token_invalid`` and
        ``refresh_token_expired`` mean the device must be enrolled again."""
        return await renew_tokens(database, clock, settings.auth, data)

    @get(
        "/me",
        guards=[allow(Role.SCANNER)],
        operation_class=DocumentedOperation,
        responses=problem_responses(*AUTHENTICATED),
    )
    async def me(self, device_service: DeviceServiceDep) -> DeviceSelf:
        """The calling scanner and its event's current keys; for a device with a peer key, a
        fresh peer certificate (``peer``) and the event's revoked devices (``revoked_peers``,
        newest first, at most 10,000), whose peer messages gates then ignore."""
        return await device_service.me()

    @post(
        "/me/heartbeat",
        guards=[allow(Role.SCANNER)],
        operation_class=DocumentedOperation,
        status_code=204,
        request_max_body_size=HEARTBEAT_MAX_BYTES,
        responses=problem_responses(400, 413, *AUTHENTICATED),
    )
    async def heartbeat(
        self, data: JSONBody[DeviceHeartbeat], device_service: DeviceServiceDep
    ) -> None:
        """The calling scanner's state, sent once a sync cycle: scans and annulments queued on
        it, its clock offset, app version, setup version, last sync. The server keeps the
        latest (one row per device: the device's own) and counts it as contact. Fields it does
        not know are ignored, so newer scanners may send more; a value out of bounds is 400
        naming the field. Safe to repeat."""
        await device_service.heartbeat(data)

    @get(
        "/{device_id:uuid}",
        guards=[allow(Role.MANAGER)],
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, *AUTHENTICATED),
    )
    async def get_device(
        self, device_id: FromPath[uuid.UUID], device_service: DeviceServiceDep
    ) -> DeviceOut:
        """One device as in the list: last contact, ``online``, ``status`` and its heartbeat."""
        return await device_service.get(device_id)

    @get(
        "/",
        guards=[allow(Role.MANAGER)],
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, *AUTHENTICATED),
    )
    async def list_devices(
        self,
        device_service: DeviceServiceDep,
        event_id: FromQuery[uuid.UUID | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = DEFAULT_LIMIT,
    ) -> DevicePage:
        """The tenant's devices (revoked ones too), each with its last contact, ``online``,
        a ``status`` sentence and its latest heartbeat."""
        return await device_service.list(event_id, cursor, limit)

    @delete(
        "/{device_id:uuid}",
        guards=[allow(Role.MANAGER)],
        operation_class=DocumentedOperation,
        responses=problem_responses(400, 404, *AUTHENTICATED),
    )
    async def revoke(
        self,
        device_id: FromPath[uuid.UUID],
        device_service: DeviceServiceDep,
    ) -> None:
        """Revoke a device: its token is refused from its next request on."""
        await device_service.revoke(device_id)
