"""Outbox rows: a ticket event is written in the same transaction as the change it reports,
as a CloudEvents 1.0 JSON envelope, and relayed to the ``tickets`` exchange afterwards. A
rolled-back change therefore never publishes, and a committed one always will."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.ids import new_id
from sync_server.db.models import Outbox

SOURCE = "/gatehouse"
TYPE_PREFIX = "dev.gatehouse."


def cloud_event(
    *,
    event_id: uuid.UUID,
    routing_key: str,
    tenant_id: uuid.UUID,
    subject: str,
    time: datetime,
    data: dict[str, Any],
) -> dict[str, Any]:
    """The CloudEvents 1.0 envelope (JSON format). ``tenantid`` is an extension attribute."""
    return {
        "specversion": "1.0",
        "id": str(event_id),
        "source": f"{SOURCE}/tenants/{tenant_id}",
        "type": TYPE_PREFIX + routing_key,
        "time": time.isoformat(),
        "subject": subject,
        "tenantid": str(tenant_id),
        "datacontenttype": "application/json",
        "data": data,
    }


def ticket_event_row(
    *,
    routing_key: str,
    tenant_id: uuid.UUID,
    ticket_id: uuid.UUID,
    time: datetime,
    data: dict[str, Any],
) -> dict[str, Any]:
    """The outbox row (as column values) for one ticket event."""
    event_id = new_id()
    return {
        "id": event_id,
        "tenant_id": tenant_id,
        "routing_key": routing_key,
        "ticket_id": ticket_id,
        "payload": cloud_event(
            event_id=event_id,
            routing_key=routing_key,
            tenant_id=tenant_id,
            subject=f"tickets/{ticket_id}",
            time=time,
            data=data,
        ),
        "created_at": time,
    }


def add_ticket_event(
    session: AsyncSession,
    *,
    routing_key: str,
    tenant_id: uuid.UUID,
    ticket_id: uuid.UUID,
    time: datetime,
    data: dict[str, Any],
) -> uuid.UUID:
    """Queue a ticket event in the current transaction; returns its CloudEvents id."""
    row = ticket_event_row(
        routing_key=routing_key, tenant_id=tenant_id, ticket_id=ticket_id, time=time, data=data
    )
    session.add(Outbox(**row))
    event_id: uuid.UUID = row["id"]
    return event_id
