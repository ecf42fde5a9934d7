"""Key-rotation reminders: an event's active ticket-code key older than the configured age
(``GATEHOUSE_KEY_MAX_AGE``) is due for rotation (``POST /v1/events/{id}/keys/rotate``: new codes
are issued with fresh keys, codes already issued keep working).

The worker's ``key-rotation`` job logs one line per such event and sets
``gatehouse_keys_rotation_due_events``; ``GET /v1/events/{id}/keys`` marks the key
``rotation_due``. Events that have ended are left out: their codes no longer admit anyone."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from sync_server.db.engine import Database
from sync_server.db.models import Event, TicketKey

log = logging.getLogger(__name__)


def rotation_due(*, active: bool, created_at: datetime, now: datetime, max_age: timedelta) -> bool:
    """Whether a key is due for rotation: it is the active one and older than ``max_age``."""
    return active and created_at <= now - max_age


@dataclass(frozen=True, slots=True)
class RotationDue:
    tenant_id: uuid.UUID
    event_id: uuid.UUID
    #: When the oldest of its active keys was made.
    key_created_at: datetime


async def keys_due_for_rotation(
    database: Database, now: datetime, max_age: timedelta
) -> list[RotationDue]:
    """Every tenant's events, not yet ended, whose active key (of either kind) is older than
    ``max_age``; each is logged."""
    async with database.untenanted() as session:
        tenant_ids = list(await session.scalars(select(func.gatehouse_tenant_ids())))
    found: list[RotationDue] = []
    for tenant_id in tenant_ids:
        async with database.tenant(tenant_id) as session:
            rows = await session.execute(
                select(TicketKey.event_id, func.min(TicketKey.created_at))
                .join(Event, Event.id == TicketKey.event_id)
                .where(
                    TicketKey.active,
                    TicketKey.created_at <= now - max_age,
                    Event.ends_at > now,
                )
                .group_by(TicketKey.event_id)
                .order_by(TicketKey.event_id)
            )
            for event_id, created_at in rows:
                found.append(RotationDue(tenant_id, event_id, created_at))
    for due in found:
        log.warning(
            "ticket key due for rotation: event %s, active key made %s",
            due.event_id,
            due.key_created_at.isoformat(),
            extra={
                "tenant_id": str(due.tenant_id),
                "event_id": str(due.event_id),
                "key_created_at": due.key_created_at.isoformat(),
            },
        )
    return found
