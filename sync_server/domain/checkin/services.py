"""Check-in, composed: one request's ``Admission`` (decode → standing → timeline → write, on
the transaction's own connection) serving the online check-in (``online``), offline uploads
(``upload``) and annulment (``annul``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from shared import wire
from sync_server.db.raw import driver
from sync_server.domain.checkin.admission import Admission, Gate
from sync_server.domain.checkin.annul import annul
from sync_server.domain.checkin.online import OnlineCheckIn
from sync_server.domain.checkin.ownership import OwnershipCheck
from sync_server.domain.checkin.queries import CheckinQueries
from sync_server.domain.checkin.resolve import resolve
from sync_server.domain.checkin.schemas import ConflictAction, ConflictResolutionOut
from sync_server.domain.checkin.upload import Upload
from sync_server.domain.keys.services import KeyStore


class CheckInService:
    """What the check-in endpoints call, one per request."""

    def __init__(
        self,
        session: AsyncSession,
        keys: KeyStore,
        ownership: OwnershipCheck,
        *,
        tenant_id: uuid.UUID,
        now: datetime,
        junk_per_minute: int = 100,
    ) -> None:
        self._session = session
        self._keys = keys
        self._ownership = ownership
        self._tenant_id = tenant_id
        self._now = now
        self._junk_per_minute = junk_per_minute

    async def _admission(self) -> Admission:
        queries = CheckinQueries(await driver(self._session))
        return Admission(
            self._session, queries, self._keys, tenant_id=self._tenant_id, now=self._now
        )

    async def validate(self, gate: Gate, request: wire.ValidateRequest) -> wire.Verdict:
        return await OnlineCheckIn(await self._admission(), self._ownership).validate(gate, request)

    async def recorded(self, scan_id: uuid.UUID, gate: Gate) -> wire.Verdict:
        return await OnlineCheckIn(await self._admission(), self._ownership).recorded(scan_id, gate)

    async def ingest(self, gate: Gate, scans: Sequence[wire.ScanUpload]) -> wire.ScanBatchOutcome:
        upload = Upload(await self._admission(), junk_per_minute=self._junk_per_minute)
        return await upload.ingest(gate, scans)

    async def annul(
        self,
        scan_id: uuid.UUID,
        actor: str,
        device_id: uuid.UUID | None,
        reason: str | None = None,
    ) -> wire.Verdict:
        return await annul(await self._admission(), scan_id, actor, device_id, reason)

    async def resolve(
        self, scan_id: uuid.UUID, action: ConflictAction, actor: str, note: str | None = None
    ) -> ConflictResolutionOut:
        return await resolve(await self._admission(), scan_id, action, actor, note)
