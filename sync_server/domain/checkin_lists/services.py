"""Check-in lists: create, read, change, delete (or archive), import from pretix.

Every write changes the event's setup version in its own transaction (migration 0013's
triggers), which is how the lists reach scanners through the changes feed within one sync and
how the check-in knows its cached plan is stale.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import wire
from shared.ids import new_id
from shared.pretix_import import PretixImportError, PretixMapping, import_pretix_list
from sync_server.db.models import CheckinList, Event, TicketScan, TicketType
from sync_server.domain.checkin_lists.schemas import (
    CheckinListPatch,
    CheckinListRemoval,
    PretixImport,
)
from sync_server.http.auth import Principal
from sync_server.http.problems import BadRequest, NotFound


def list_out(row: CheckinList) -> wire.CheckinListOut:
    return wire.CheckinListOut(
        id=row.id,
        event_id=row.event_id,
        name=row.name,
        ticket_type_ids=list(row.ticket_type_ids),
        gates=list(row.gates),
        zone=row.zone,
        allow_reentry=row.allow_reentry,
        allow_multiple_entries=row.allow_multiple_entries,
        windows=msgspec.convert(row.windows, list[wire.CheckinWindow], strict=False),
        rules=row.rules,
        explanation=row.explanation,
        archived=row.archived_at is not None,
    )


def _request_of(row: CheckinList) -> dict[str, Any]:
    """A stored list as the create request that would make it (what a PATCH starts from)."""
    return {
        "name": row.name,
        "ticket_type_ids": list(row.ticket_type_ids),
        "gates": list(row.gates),
        "zone": row.zone,
        "allow_reentry": row.allow_reentry,
        "allow_multiple_entries": row.allow_multiple_entries,
        "windows": list(row.windows),
        "rules": row.rules,
        "explanation": row.explanation,
    }


class CheckinListService:
    def __init__(self, session: AsyncSession, principal: Principal, now: datetime) -> None:
        self._session = session
        self._principal = principal
        self._now = now

    async def _event(self, event_id: uuid.UUID) -> Event:
        event = await self._session.get(Event, event_id)
        if event is None:
            raise NotFound("event")
        return event

    async def _row(self, event_id: uuid.UUID, list_id: uuid.UUID) -> CheckinList:
        row = await self._session.get(CheckinList, list_id)
        if row is None or row.event_id != event_id:
            raise NotFound("check-in list")
        return row

    async def _check_ticket_types(self, event_id: uuid.UUID, ids: list[str]) -> None:
        """400 naming every id that is not one of the event's ticket types."""
        if not ids:
            return
        known = {
            str(found)
            for found in await self._session.scalars(
                select(TicketType.id).where(TicketType.event_id == event_id)
            )
        }
        unknown = sorted(set(ids) - known)
        if unknown:
            raise BadRequest(
                "unknown_ticket_types",
                f"ticket_type_ids: the event has no ticket type {', '.join(unknown[:20])}.",
                ticket_type_ids=unknown[:100],
            )

    async def create(
        self, event_id: uuid.UUID, data: wire.CheckinListCreate
    ) -> wire.CheckinListOut:
        await self._event(event_id)
        await self._check_ticket_types(event_id, data.ticket_type_ids)
        row = CheckinList(id=new_id(), tenant_id=self._principal.tenant_id, event_id=event_id)
        self._apply(row, data)
        self._session.add(row)
        await self._session.flush()
        return list_out(row)

    def _apply(self, row: CheckinList, data: wire.CheckinListCreate) -> None:
        row.name = data.name
        row.ticket_type_ids = sorted(set(data.ticket_type_ids))
        row.gates = sorted(set(data.gates))
        row.zone = data.zone
        row.allow_reentry = data.allow_reentry
        row.allow_multiple_entries = data.allow_multiple_entries
        row.windows = msgspec.to_builtins(data.windows)
        row.rules = data.rules
        row.explanation = data.explanation
        row.updated_at = self._now

    async def all(self, event_id: uuid.UUID) -> list[wire.CheckinListOut]:
        await self._event(event_id)
        rows = await self._session.scalars(
            select(CheckinList).where(CheckinList.event_id == event_id).order_by(CheckinList.id)
        )
        return [list_out(row) for row in rows]

    async def one(self, event_id: uuid.UUID, list_id: uuid.UUID) -> wire.CheckinListOut:
        return list_out(await self._row(event_id, list_id))

    async def change(
        self, event_id: uuid.UUID, list_id: uuid.UUID, patch: CheckinListPatch
    ) -> wire.CheckinListOut:
        row = await self._row(event_id, list_id)
        merged = _request_of(row)
        for name in patch.__struct_fields__:
            value = getattr(patch, name)
            if value is not msgspec.UNSET:
                merged[name] = msgspec.to_builtins(value)
        try:
            data = msgspec.convert(merged, wire.CheckinListCreate, strict=False)
        except msgspec.ValidationError as error:
            raise BadRequest("invalid_checkin_list", str(error)) from None
        await self._check_ticket_types(event_id, data.ticket_type_ids)
        self._apply(row, data)
        await self._session.flush()
        return list_out(row)

    async def remove(self, event_id: uuid.UUID, list_id: uuid.UUID) -> CheckinListRemoval:
        row = await self._row(event_id, list_id)
        scanned = await self._session.scalar(
            select(
                exists().where(
                    TicketScan.event_id == event_id, TicketScan.checkin_list_id == row.id
                )
            )
        )
        if scanned:
            if row.archived_at is None:
                row.archived_at = self._now
                row.updated_at = self._now
                await self._session.flush()
            return CheckinListRemoval(id=row.id, outcome="archived")
        await self._session.delete(row)
        await self._session.flush()
        return CheckinListRemoval(id=row.id, outcome="deleted")

    async def import_pretix(self, event_id: uuid.UUID, data: PretixImport) -> wire.CheckinListOut:
        mapping = PretixMapping(
            products=data.mapping.products,
            variations=data.mapping.variations,
            gates=data.mapping.gates,
        )
        try:
            request = import_pretix_list(data.list, mapping)
        except PretixImportError as error:
            raise BadRequest("pretix_import_failed", str(error)) from None
        return await self.create(event_id, request)
