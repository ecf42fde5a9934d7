"""Outbox rows: a ticket event is written in the same transaction as the change it reports,
as a CloudEvents 1.0 JSON envelope, and relayed to the ``tickets`` exchange afterwards. A
rolled-back change therefore never publishes, and a committed one always will.

:func:`outbox_backlog` says how far behind the relays are, for the relay's stats and
``/metrics``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

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


# Counts and the oldest time only, across tenants, through a SECURITY DEFINER function of
# migration 0005 (the application role cannot read other tenants' outbox rows itself).
_BACKLOG = text(
    "SELECT unsent, greatest(extract(epoch FROM clock_timestamp() - oldest), 0)::float8 AS age "
    "FROM gatehouse_outbox_backlog()"
)


@dataclass(frozen=True, slots=True)
class OutboxBacklog:
    """Rows not yet published, across all tenants, and how old the oldest is (0 when none)."""

    unsent: int
    oldest_age_seconds: float


async def outbox_backlog(connection: AsyncConnection | AsyncSession) -> OutboxBacklog:
    """The outbox backlog, over every tenant, through ``gatehouse_outbox_backlog()`` (counts
    only, no payloads; the application role and the relay role may both call it). The one
    query for the relay's stats and ``/metrics``' ``gatehouse_outbox_unsent`` and
    ``gatehouse_outbox_lag_seconds``.

    The age is measured with ``clock_timestamp()``, the time of the reading, not ``now()``, the
    start of the reader's transaction (the relay's connection may have begun it earlier). It is
    clamped at 0 (``greatest``, which also turns the ``NULL`` of an empty outbox into 0):
    ``created_at`` comes from the writer's clock and the age from the database's, and a writer
    clock slightly ahead must not report a negative lag — both callers promise an age >= 0.

    Raises ``sqlalchemy.exc.DBAPIError`` when the database cannot answer (``ProgrammingError``
    when it lacks the function: the migrations have not reached it).
    """
    row = (await connection.execute(_BACKLOG)).one()
    return OutboxBacklog(unsent=int(row.unsent), oldest_age_seconds=float(row.age))
