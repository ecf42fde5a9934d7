"""Devices: one-time enrollment codes, enrolling a scanner for a gate, renewing its tokens, the
device's own view, listing and revocation.

Peer sync (issue 18, docs/peer-sync.md "Trust chain"): a device that sends a peer public key at
enrollment gets a certificate for it, with its event's issuer public key and peer key, at
enrollment and on every ``GET /v1/devices/me`` (``peer``), together with the ids of its
event's revoked devices (``revoked_peers``), whose messages its peers then ignore.

A device's access token is checked against ``devices.revoked_at`` on every request
(``sync_server.http.dependencies.provide_session``), so revoking a device takes effect at once;
it lives ``AuthSettings.device_token_ttl_seconds`` (an hour) and the device renews it with its
refresh token (``renew_tokens``, ``sync_server.domain.devices.refresh``), which a revoked device
cannot.
"""

from __future__ import annotations

import builtins
import hmac
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec
from nacl.bindings import crypto_core_ed25519_is_valid_point
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import Clock
from shared.ids import new_id
from shared.peers import succession_message, verifies_succession
from shared.wire import DeviceTokens, GateEvent, PeerCredentials, TokenRenewal
from sync_server.db.engine import Database
from sync_server.db.models import Device, DeviceEnrollment, Event, JunkScans
from sync_server.domain.devices import refresh
from sync_server.domain.devices.codes import code_hash, new_code
from sync_server.domain.devices.schemas import (
    DeviceHeartbeat,
    DeviceOut,
    DevicePage,
    DeviceSelf,
    EnrolledDevice,
    EnrollmentCreate,
    EnrollmentOut,
    EnrollRequest,
)
from sync_server.domain.devices.status import is_online, status_sentence
from sync_server.domain.keys.services import KeyStore
from sync_server.http.auth import Principal, Role, mint_token
from sync_server.http.dependencies import DEVICE_UNKNOWN_DETAIL
from sync_server.http.pagination import fetch_page
from sync_server.http.problems import BadRequest, NotFound, Unauthorized, Unprocessable
from sync_server.settings import AuthSettings

log = logging.getLogger(__name__)


def _code_invalid() -> Unprocessable:
    return Unprocessable(
        "enrollment_code_invalid",
        "This enrollment code is not valid or has already been used. Ask a manager for a new one.",
    )


def _device_unknown() -> Unauthorized:
    """A device token (valid, signed by this server) naming a device this database does not
    have: it was enrolled after the backup the database was restored from (migration 0021).
    Not ``device_revoked``: nobody switched it off, and enrolling again is the way back."""
    return Unauthorized("device_unknown", DEVICE_UNKNOWN_DETAIL)


def _device_revoked(
    detail: str = "This device has been revoked. Ask a manager to enroll it again.",
) -> Unauthorized:
    return Unauthorized("device_revoked", detail)


#: ``devices.revoked_reason`` of a device a manager revoked.
REVOKED_BY_MANAGER = "manager"
#: ``devices.revoked_reason`` of a device whose spent refresh token was presented again.
REFRESH_TOKEN_REUSED = "refresh_token_reused"  # noqa: S105 - a reason, not a secret
#: ``devices.revoked_reason`` of a device a new enrollment of the same computer took over
#: (``wire.Succession``).
SUCCEEDED = "re_enrolled"
#: At most this many revoked devices in ``DeviceSelf.revoked_peers`` (the newest revocations
#: first): far more than an event has, and a bound on the answer a device fetches every sync.
MAX_REVOKED_PEERS = 10_000


class DeviceService:
    """What managers do with devices, and what a device asks about itself."""

    def __init__(
        self, session: AsyncSession, keys: KeyStore, clock: Clock, principal: Principal
    ) -> None:
        self._session = session
        self._keys = keys
        self._clock = clock
        self._principal = principal

    async def create_enrollment(
        self, data: EnrollmentCreate, *, default_ttl_seconds: int
    ) -> EnrollmentOut:
        """A one-time code that enrolls one device for ``data.gate`` of ``data.event_id``.

        Raises ``NotFound`` when the event is not the tenant's.
        """
        if await self._session.get(Event, data.event_id) is None:
            raise NotFound("event")
        code = new_code()
        hashed = code_hash(code)
        assert hashed is not None, "a fresh code always reads back"
        ttl = data.ttl_seconds if data.ttl_seconds is not None else default_ttl_seconds
        enrollment = DeviceEnrollment(
            id=new_id(),
            tenant_id=self._principal.tenant_id,
            event_id=data.event_id,
            gate=data.gate,
            code_hash=hashed,
            expires_at=self._clock.now() + timedelta(seconds=ttl),
            created_by=self._principal.actor,
        )
        self._session.add(enrollment)
        await self._session.flush()
        return EnrollmentOut(
            enrollment_id=enrollment.id,
            code=code,
            event_id=enrollment.event_id,
            gate=enrollment.gate,
            expires_at=enrollment.expires_at,
        )

    async def list(self, event_id: uuid.UUID | None, cursor: str | None, limit: int) -> DevicePage:
        """The tenant's devices, revoked ones included, oldest first; only ``event_id``'s when
        given (``NotFound`` when that event is not the tenant's)."""
        where = []
        if event_id is not None:
            if await self._session.get(Event, event_id) is None:
                raise NotFound("event")
            where.append(Device.event_id == event_id)
        devices, next_cursor = await fetch_page(self._session, Device, cursor, limit, *where)
        return DevicePage(items=await self._out(devices), next_cursor=next_cursor)

    async def get(self, device_id: uuid.UUID) -> DeviceOut:
        """One of the tenant's devices, as in the list. Raises ``NotFound``."""
        device = await self._session.get(Device, device_id)
        if device is None:
            raise NotFound("device")
        (found,) = await self._out([device])
        return found

    async def _out(self, devices: Sequence[Device]) -> builtins.list[DeviceOut]:
        not_stored: dict[uuid.UUID, int] = {}
        if devices:
            counted = await self._session.execute(
                select(JunkScans.device_id, func.sum(JunkScans.dropped))
                .where(JunkScans.device_id.in_([d.id for d in devices]))
                .group_by(JunkScans.device_id)
            )
            not_stored = {device_id: int(total) for device_id, total in counted.all()}
        now = self._clock.now()
        return [
            msgspec.structs.replace(
                device_out(d, now), junk_scans_not_stored=not_stored.get(d.id, 0)
            )
            for d in devices
        ]

    async def heartbeat(self, data: DeviceHeartbeat) -> None:
        """Keep what the calling device says about itself (its row only: the id comes from its
        token) and count it as contact. One statement. Raises ``Unauthorized``
        (``device_revoked``) for a device gone or revoked."""
        device_id = self._principal.device_id
        now = self._clock.now()
        written = (
            await self._session.scalar(
                update(Device)
                .where(Device.id == device_id, Device.revoked_at.is_(None))
                .values(
                    last_seen_at=now,
                    heartbeat_at=now,
                    queued_scans=data.queued_scans,
                    queued_annulments=data.queued_annulments,
                    oldest_queued_at=data.oldest_queued_at,
                    clock_offset_ms=data.clock_offset_ms,
                    app_version=data.app_version,
                    setup_version=data.setup_version,
                    last_sync_at=data.last_sync_at,
                    sync_interval_seconds=data.sync_interval_seconds,
                    lab_mode=data.lab_mode,
                    peers_heard=data.peers_heard,
                )
                .returning(Device.id)
                .execution_options(synchronize_session=False)
            )
            if device_id is not None
            else None
        )
        if written is None:
            gone = device_id is None or await self._session.get(Device, device_id) is None
            raise _device_unknown() if gone else _device_revoked()

    async def revoke(self, device_id: uuid.UUID) -> None:
        """Revoke a device; revoking it again changes nothing. Raises ``NotFound``."""
        revoked = await self._session.scalar(
            update(Device)
            .where(Device.id == device_id)
            .values(
                revoked_at=func.coalesce(Device.revoked_at, self._clock.now()),
                revoked_reason=func.coalesce(Device.revoked_reason, REVOKED_BY_MANAGER),
            )
            .returning(Device.id)
            .execution_options(synchronize_session=False)
        )
        if revoked is None:
            raise NotFound("device")

    async def me(self) -> DeviceSelf:
        """The calling device with its event's current keys (so it can pick up a rotation).

        Raises ``Unauthorized``: ``device_unknown`` when this database has no such device (a
        restore from a backup older than its enrollment), ``device_revoked`` when revoked.
        """
        device_id = self._principal.device_id
        device = await self._session.get(Device, device_id) if device_id else None
        if device is None:
            raise _device_unknown()
        if device.revoked_at is not None:
            raise _device_revoked()
        now = self._clock.now()
        device.last_seen_at = now
        ring = await self._keys.scanner_ring(
            self._session, device.event_id, tenant_id=device.tenant_id
        )
        gate_event = await _gate_event(self._session, device.event_id)
        return DeviceSelf(
            device_id=device.id,
            name=device.name,
            event_id=device.event_id,
            gate=device.gate,
            revoked=False,
            keys=ring.to_wire(),
            server_time=now,
            event=gate_event,
            peer=_peer(self._keys, device, gate_event, now),
            revoked_peers=await _revoked_peers(self._session, device.event_id),
        )


async def enroll_device(
    database: Database,
    keys: KeyStore,
    clock: Clock,
    auth: AuthSettings,
    request: EnrollRequest,
) -> EnrolledDevice:
    """Redeem a one-time code: create the device, mint its token, hand it the event's keys.

    The caller knows no tenant: the code's enrollment row names it. Of several devices racing
    with one code exactly one gets through. Raises ``Unprocessable`` with
    ``enrollment_code_invalid`` (unknown or used code) or ``enrollment_code_expired``.
    """
    hashed = code_hash(request.code)
    if hashed is None:
        raise _code_invalid()
    _check_peer_key(request.peer_public_key)
    now = clock.now()
    async with database.enrollment(hashed) as session:
        found = (
            await session.execute(
                select(
                    DeviceEnrollment.id,
                    DeviceEnrollment.tenant_id,
                    DeviceEnrollment.event_id,
                    DeviceEnrollment.gate,
                    DeviceEnrollment.expires_at,
                    DeviceEnrollment.used_at,
                ).where(DeviceEnrollment.code_hash == hashed)
            )
        ).first()
        if found is None or found.used_at is not None:
            raise _code_invalid()
        if found.expires_at <= now:
            raise Unprocessable(
                "enrollment_code_expired",
                "This enrollment code has expired. Ask a manager for a new one.",
            )
        await database.set_tenant(session, found.tenant_id)
        device = Device(
            id=new_id(),
            tenant_id=found.tenant_id,
            event_id=found.event_id,
            gate=found.gate,
            name=request.device_name,
            peer_public_key=request.peer_public_key,
        )
        first = refresh.first_token(found.tenant_id, device.id)
        _hold(device, first, previous=None, now=now)
        if request.succeeds is not None:
            await _take_over(session, device, request, now)
        session.add(device)
        await session.flush()
        # The claim: a second device racing with the same code waits for this row's lock, then
        # finds it used and matches nothing (its transaction, device row included, rolls back).
        claimed = await session.scalar(
            update(DeviceEnrollment)
            .where(DeviceEnrollment.id == found.id, DeviceEnrollment.used_at.is_(None))
            .values(used_at=now, device_id=device.id)
            .returning(DeviceEnrollment.id)
            .execution_options(synchronize_session=False)
        )
        if claimed is None:
            raise _code_invalid()
        ring = await keys.scanner_ring(session, found.event_id, tenant_id=found.tenant_id)
        gate_event = await _gate_event(session, found.event_id)
    token, expires_at = _access_token(auth, device, now)
    return EnrolledDevice(
        device_id=device.id,
        device_token=token,
        refresh_token=str(first),
        device_token_expires_at=expires_at,
        tenant_id=found.tenant_id,
        event_id=found.event_id,
        gate=found.gate,
        keys=ring.to_wire(),
        server_time=now,
        event=gate_event,
        peer=_peer(keys, device, gate_event, now),
        succeeds=device.succeeds_id,
    )


async def _take_over(
    session: AsyncSession, device: Device, request: EnrollRequest, now: datetime
) -> None:
    """Let ``device`` take over the device ``request.succeeds`` names, when that is this
    tenant's device of the same event, not revoked, and the signature is its peer key's over
    this enrollment (``shared.peers.succession_message``): the new device joins the old one's
    lineage (their scans are one gate's) and the old one is revoked (``re_enrolled``: its
    tokens are on the same computer, replaced). Anything else takes over nothing and is not an
    error: the enrollment goes on as a new gate (a computer moved to another event, or a gate
    whose old device the restored database does not know — its scans are new to it anyway)."""
    claim = request.succeeds
    assert claim is not None
    old = await session.get(Device, claim.device_id, with_for_update=True)
    proven = (
        old is not None
        and old.event_id == device.event_id
        and old.revoked_at is None
        and old.peer_public_key is not None
        and verifies_succession(
            old.peer_public_key,
            claim.signature,
            succession_message(claim.device_id, request.peer_public_key, request.code),
        )
    )
    if not proven:
        log.info(
            "enrollment named a previous device that it does not take over "
            "(unknown, another event's, revoked or not proven)"
        )
        return
    assert old is not None
    device.succeeds_id = old.id
    device.lineage_id = old.lineage_id or old.id
    old.revoked_at = now
    old.revoked_reason = SUCCEEDED


def _check_peer_key(key: bytes | None) -> None:
    """Refuse a peer public key that is not an Ed25519 point (its length is the schema's): a
    key no signature can verify with would leave the gate unheard by its peers, silently."""
    if key is not None and not crypto_core_ed25519_is_valid_point(key):
        raise BadRequest(
            "peer_public_key_invalid",
            "peer_public_key is not an Ed25519 public key (32 bytes, base64). Make a new key "
            "pair on the device and enroll again.",
        )


def _peer(
    keys: KeyStore, device: Device, event: GateEvent, now: datetime
) -> PeerCredentials | None:
    """The device's peer certificate and its event's peer keys; None without a peer key."""
    if device.peer_public_key is None:
        return None
    return keys.peer_credentials(
        tenant_id=device.tenant_id,
        event_id=device.event_id,
        event_ends_at=event.ends_at,
        device_id=device.id,
        gate=device.gate,
        public_key=device.peer_public_key,
        now=now,
    )


async def _revoked_peers(session: AsyncSession, event_id: uuid.UUID) -> builtins.list[uuid.UUID]:
    """The event's revoked devices that had a peer key (others never held a certificate),
    newest revocations first, at most ``MAX_REVOKED_PEERS``."""
    found = await session.scalars(
        select(Device.id)
        .where(
            Device.event_id == event_id,
            Device.revoked_at.is_not(None),
            Device.peer_public_key.is_not(None),
        )
        .order_by(Device.revoked_at.desc(), Device.id)
        .limit(MAX_REVOKED_PEERS)
    )
    return builtins.list(found)


async def _gate_event(session: AsyncSession, event_id: uuid.UUID) -> GateEvent:
    event = await session.get(Event, event_id)
    if event is None:  # the foreign key makes this impossible short of a broken database
        raise NotFound("event")
    return GateEvent(
        event_id=event.id,
        name=event.name,
        venue=event.venue,
        starts_at=event.starts_at,
        ends_at=event.ends_at,
        admission_opens_at=event.admission_opens_at,
        allow_reentry=event.allow_reentry,
    )


def device_out(device: Device, now: datetime) -> DeviceOut:
    """The device as managers see it at ``now`` (server time): ``online`` and ``status`` are
    worked out from its last contact and latest heartbeat (``status.py``)."""
    revoked = device.revoked_at is not None
    online = is_online(device.last_seen_at, device.sync_interval_seconds, revoked, now)
    return DeviceOut(
        id=device.id,
        name=device.name,
        event_id=device.event_id,
        gate=device.gate,
        created_at=device.created_at,
        revoked_at=device.revoked_at,
        revoked_reason=device.revoked_reason,
        last_seen_at=device.last_seen_at,
        succeeds_id=device.succeeds_id,
        online=online,
        status=status_sentence(
            online=online,
            revoked=revoked,
            revoked_reason=device.revoked_reason,
            last_seen_at=device.last_seen_at,
            heartbeat_at=device.heartbeat_at,
            queued_scans=device.queued_scans,
            queued_annulments=device.queued_annulments,
            oldest_queued_at=device.oldest_queued_at,
            clock_offset_ms=device.clock_offset_ms,
            now=now,
        ),
        heartbeat_at=device.heartbeat_at,
        queued_scans=device.queued_scans,
        queued_annulments=device.queued_annulments,
        oldest_queued_at=device.oldest_queued_at,
        clock_offset_ms=device.clock_offset_ms,
        app_version=device.app_version,
        setup_version=device.setup_version,
        last_sync_at=device.last_sync_at,
        sync_interval_seconds=device.sync_interval_seconds,
        lab_mode=device.lab_mode,
        peers_heard=device.peers_heard,
    )


def _access_token(auth: AuthSettings, device: Device, now: datetime) -> tuple[str, datetime]:
    """A new access token for ``device`` and when it expires."""
    token = mint_token(
        auth.jwt_secret,
        tenant_id=device.tenant_id,
        role=Role.SCANNER,
        subject=str(device.id),
        ttl_seconds=auth.device_token_ttl_seconds,
        device_id=device.id,
        event_id=device.event_id,
        gate=device.gate,
        issuer=auth.issuer,
        audience=auth.audience,
        now=now,
    )
    return token, now + timedelta(seconds=auth.device_token_ttl_seconds)


def _hold(
    device: Device, current: refresh.RefreshToken, *, previous: bytes | None, now: datetime
) -> None:
    """Make ``current`` the device's refresh token (only its hashes are kept)."""
    device.refresh_family_hash = current.family_hash
    device.refresh_hash = current.token_hash
    device.refresh_previous_hash = previous
    device.refresh_generation = current.generation
    device.refresh_renewed_at = now


def _refresh_invalid() -> Unauthorized:
    return Unauthorized(
        "refresh_token_invalid",
        "This refresh token is not one of this server's. Ask a manager to enroll the device again.",
    )


@dataclass(frozen=True, slots=True)
class _Renewed:
    tokens: DeviceTokens | None
    refused: Unauthorized | None


async def renew_tokens(
    database: Database, clock: Clock, auth: AuthSettings, request: TokenRenewal
) -> DeviceTokens:
    """Spend a device's refresh token: a new access token and the next refresh token.

    One row lock per device, so renewals of one device are decided one at a time. The token
    presented may be:

    * the current one: it is spent; the answer carries generation + 1;
    * the one before it, while the current one has never been used: the answer to that earlier
      renewal was lost (the gate never got it), so the lost token is replaced by a new one of
      the same generation and the gate goes on. Nobody else can have used the lost token — had
      anybody, the presented one would be two generations old;
    * any other of the device's family (an older one, or one of the current generation that is
      not the current one): two holders of the device's tokens — a copy of its disk racing the
      gate. The device is revoked (``revoked_reason`` ``refresh_token_reused``): both lose
      access, and a manager sees why and enrolls the gate again.

    Raises ``Unauthorized``: ``refresh_token_invalid`` (not a token of this device's family, or
    a device enrolled before refresh tokens), ``refresh_token_expired`` (unused longer than
    ``device_refresh_idle_seconds``), ``refresh_token_ahead`` (a generation this database has
    not issued yet: it was restored from a backup taken before the device renewed; the device
    is not revoked for it), ``device_revoked``.
    """
    token = refresh.parse(request.refresh_token)
    if token is None:
        raise _refresh_invalid()
    now = clock.now()
    async with database.tenant(token.tenant_id) as session:
        outcome = await _renew(session, auth, token, now)
    # A reuse revokes the device in the transaction above, which commits before the refusal.
    if outcome.refused is not None:
        raise outcome.refused
    assert outcome.tokens is not None
    return outcome.tokens


async def _renew(
    session: AsyncSession, auth: AuthSettings, token: refresh.RefreshToken, now: datetime
) -> _Renewed:
    device = await session.get(Device, token.device_id, with_for_update=True)
    if (
        device is None
        or device.refresh_family_hash is None
        or device.refresh_hash is None
        or not hmac.compare_digest(device.refresh_family_hash, token.family_hash)
    ):
        return _Renewed(None, _refresh_invalid())
    if device.revoked_at is not None:
        detail = (
            "This device was revoked because one of its refresh tokens was used twice: a copy "
            "of its tokens is in other hands. Ask a manager to enroll it again."
            if device.revoked_reason == REFRESH_TOKEN_REUSED
            else None
        )
        return _Renewed(None, _device_revoked(detail) if detail else _device_revoked())
    presented = token.token_hash
    if token.generation == device.refresh_generation and hmac.compare_digest(
        presented, device.refresh_hash
    ):
        following, previous = token.next(), device.refresh_hash
    elif (
        token.generation == device.refresh_generation - 1
        and device.refresh_previous_hash is not None
        and hmac.compare_digest(presented, device.refresh_previous_hash)
    ):
        following = refresh.RefreshToken(
            token.tenant_id, token.device_id, device.refresh_generation, token.family, ""
        ).again()
        previous = device.refresh_previous_hash
    elif token.generation > device.refresh_generation:
        # Not a reuse: a token this database has not issued yet. The database is behind the
        # device (restored from a backup taken before it renewed). Its secret cannot be checked
        # (each generation's is random), so nothing is renewed — but nothing is revoked either.
        return _Renewed(
            None,
            Unauthorized(
                "refresh_token_ahead",
                "This refresh token is newer than this server's records (the server was "
                "restored from a backup). Ask a manager for a new code and enroll the device "
                "again.",
            ),
        )
    else:
        device.revoked_at = now
        device.revoked_reason = REFRESH_TOKEN_REUSED
        return _Renewed(
            None,
            _device_revoked(
                "This device has been revoked: one of its refresh tokens was used twice, so a "
                "copy of its tokens is in other hands. Ask a manager to enroll it again."
            ),
        )
    renewed_at = device.refresh_renewed_at
    if renewed_at is not None and now - renewed_at > timedelta(
        seconds=auth.device_refresh_idle_seconds
    ):
        return _Renewed(
            None,
            Unauthorized(
                "refresh_token_expired",
                "This device has not renewed its token for too long. Ask a manager to enroll it "
                "again.",
            ),
        )
    _hold(device, following, previous=previous, now=now)
    device.last_seen_at = now
    access, expires_at = _access_token(auth, device, now)
    return _Renewed(
        DeviceTokens(
            device_token=access,
            refresh_token=str(following),
            device_token_expires_at=expires_at,
            server_time=now,
        ),
        None,
    )
