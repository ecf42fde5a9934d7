"""An event's access setup (issue 16) as the check-in decides with it: its check-in lists,
days, time zone and ticket types' days, read in one statement, and the ``EventPlan`` that
``shared.checkin_lists.decide`` takes, cached per event and setup version.

The setup is read as the changes feed sends it to scanners (``wire.CheckinSetup``) and the plan
is made from that, so the server decides with exactly what the scanners receive. Every change
to the setup grows the event's ``setup_version`` in its own transaction (migration 0013's
triggers); the locked ticket carries the version, so a cached plan is used only while it is
current.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import msgspec

from shared import wire
from shared.checkin_lists import EventPlan, TicketKind, plan_from_setup

# The whole setup as one JSON document (text, so that asyncpg and SQLAlchemy connections read
# it alike), lists and ticket types in id order.
SETUP = """
SELECT jsonb_build_object(
    'setup', jsonb_build_object(
        'event_id', e.id, 'version', e.setup_version, 'time_zone', e.time_zone, 'days', e.days,
        'ticket_types', (
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                'id', tt.id::text, 'name', tt.name, 'days', tt.days) ORDER BY tt.id), '[]')
            FROM ticket_types tt WHERE tt.event_id = e.id),
        'lists', (
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                'id', l.id, 'event_id', l.event_id, 'name', l.name,
                'ticket_type_ids', l.ticket_type_ids, 'gates', l.gates, 'zone', l.zone,
                'allow_reentry', l.allow_reentry,
                'allow_multiple_entries', l.allow_multiple_entries, 'windows', l.windows,
                'rules', l.rules, 'explanation', l.explanation,
                'archived', l.archived_at IS NOT NULL) ORDER BY l.id), '[]')
            FROM checkin_lists l WHERE l.event_id = e.id)),
    'starts_at', e.starts_at, 'ends_at', e.ends_at, 'admission_at', e.admission_opens_at,
    'allow_reentry', e.allow_reentry)::text
FROM events e WHERE e.id = $1
"""


class SetupRow(msgspec.Struct, kw_only=True, frozen=True):
    """``SETUP``'s document: the setup and the event's own times and re-entry setting."""

    setup: wire.CheckinSetup
    starts_at: datetime
    ends_at: datetime
    admission_at: datetime | None
    allow_reentry: bool


@dataclass(frozen=True, slots=True)
class Plan:
    """An event's plan and its ticket types as decisions see them."""

    version: int
    plan: EventPlan
    kinds: dict[str, TicketKind] = field(default_factory=dict)

    @property
    def has_lists(self) -> bool:
        return bool(self.plan.lists)

    def kind(self, ticket_type_id: uuid.UUID, name: str) -> TicketKind:
        return self.kinds.get(str(ticket_type_id)) or TicketKind(id=str(ticket_type_id), name=name)


def plan_of(row: SetupRow) -> Plan:
    """The plan ``decide`` takes, from the setup as scanners receive it."""
    setup = row.setup
    plan, kinds = plan_from_setup(
        setup,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        admission_at=row.admission_at,
        allow_reentry=row.allow_reentry,
    )
    return Plan(version=setup.version, plan=plan, kinds=kinds)


async def read_setup(connection: Any, event_id: uuid.UUID) -> SetupRow | None:
    """The event's setup (None: no such event of the tenant), on an asyncpg connection."""
    text = await connection.fetchval(SETUP, event_id)
    return None if text is None else msgspec.json.decode(text, type=SetupRow)


#: Plans held per (tenant, event): at most this many; beyond it the cache starts over.
CACHED_PLANS: Final = 4096
_plans: dict[tuple[uuid.UUID, uuid.UUID], Plan] = {}


async def event_plan(
    connection: Any, *, tenant_id: uuid.UUID, event_id: uuid.UUID, version: int
) -> Plan | None:
    """The event's plan at ``version`` (the locked ticket's reading of it) or newer: from the
    cache when it holds that version, else read (one statement) and cached under the version
    read. None when the tenant has no such event."""
    key = (tenant_id, event_id)
    cached = _plans.get(key)
    if cached is not None and cached.version >= version:
        return cached
    row = await read_setup(connection, event_id)
    if row is None:
        return None
    plan = plan_of(row)
    if len(_plans) >= CACHED_PLANS:
        _plans.clear()
    _plans[key] = plan
    return plan
