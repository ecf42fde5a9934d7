"""Every SQL statement of check-in, by name, with typed rows.

They run on the request transaction's own asyncpg connection (``sync_server.db.raw.driver``):
one prepared statement each, the tenant's row-level security and the transaction's locks
shared with the rest of the request, no ORM session in between. The texts are constants; no
input ever reaches them (values travel as parameters).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from sync_server.domain.checkin.claims import CLOCK_TOLERANCE

# --- rows -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LockedTicket:
    """A ticket row locked for a decision, with what the decision needs from its event and
    type (``LOCK_TICKETS``). Also what ``standing`` and ``change_rows`` read."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    event_id: uuid.UUID
    ticket_type_id: uuid.UUID
    purchase_id: uuid.UUID
    user_id: str
    status: str
    secret_version: int
    holder_name: str
    holder_wallet: str | None
    nft_mint: str | None
    blockchain_sync_status: str
    ticket_type: str
    allow_reentry: bool
    admission_opens_at: datetime | None
    ends_at: datetime
    #: The event's access-setup version (migration 0013): which cached plan decides.
    setup_version: int = 0


@dataclass(frozen=True, slots=True)
class HistoryScan:
    """One admitted, not annulled scan of a ticket (``ADMITTED_SCANS``). ``online``: recorded by
    POST /v1/validate on the server's clock, never what a device says of itself."""

    id: uuid.UUID
    ticket_id: uuid.UUID
    scanned_at: datetime
    direction: str
    gate: str
    device_id: uuid.UUID | None
    conflict_of: uuid.UUID | None
    online: bool
    #: The check-in list it counted on and that list's zone (issue 16).
    checkin_list_id: uuid.UUID | None = None
    zone: str | None = None
    #: A double entry a manager accepted (migration 0019): it stands, and lists count it.
    conflict_accepted: bool = False


@dataclass(frozen=True, slots=True)
class StoredScan:
    """A recorded scan, as a recorded verdict or an annulment needs it (``STORED_SCAN``)."""

    id: uuid.UUID
    ticket_id: uuid.UUID | None
    event_id: uuid.UUID
    device_id: uuid.UUID | None
    scanned_by: str
    gate: str
    direction: str
    result: str
    reason: str | None
    scanned_at: datetime
    annulled_at: datetime | None
    #: The check-in list that counted it or refused it (issue 16).
    checkin_list_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class ConflictScan:
    """A scan as resolving a conflict needs it (``CONFLICT_SCAN``)."""

    id: uuid.UUID
    ticket_id: uuid.UUID | None
    gate: str
    direction: str
    result: str
    conflict_of: uuid.UUID | None
    annulled_at: datetime | None
    conflict_resolution: str | None
    conflict_resolved_at: datetime | None
    conflict_resolved_by: str | None
    conflict_resolution_note: str | None


@dataclass(frozen=True, slots=True)
class ScanOutcomeRow:
    """What an upload's answer says of a stored scan (``OUTCOMES``)."""

    id: uuid.UUID
    device_id: uuid.UUID | None
    result: str
    reason: str | None
    conflict_of: uuid.UUID | None
    server_reason: str | None
    time_adjusted: str | None


@dataclass(frozen=True, slots=True)
class DeviceRow:
    gate: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewScan:
    """A scan row to insert (online or uploaded)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    ticket_id: uuid.UUID | None
    event_id: uuid.UUID
    device_id: uuid.UUID | None
    scanned_by: str
    gate: str
    direction: str
    result: str
    reason: str | None
    scanned_at: datetime
    device_scanned_at: datetime | None
    clock_offset_ms: int | None
    offline: bool
    device_result: str | None
    device_reason: str | None
    server_reason: str | None
    code_secret_version: int | None
    received_at: datetime
    #: The check-in list it counted on (or that refused it) and, for an admission, that
    #: list's zone (issue 16); None without lists.
    checkin_list_id: uuid.UUID | None = None
    zone: str | None = None

    def online_columns(self) -> tuple[object, ...]:
        """The columns an online scan's insert takes (``INSERT_SCAN``, ``ADMIT``: $1-$14)."""
        return (
            self.id,
            self.tenant_id,
            self.ticket_id,
            self.event_id,
            self.device_id,
            self.scanned_by,
            self.gate,
            self.direction,
            self.result,
            self.reason,
            self.scanned_at,
            self.code_secret_version,
            self.checkin_list_id,
            self.zone,
        )


@dataclass(frozen=True, slots=True)
class ChangeRows:
    """A ticket change's history row and outbox event (``tickets.services.change_rows``)."""

    history: dict[str, Any]
    event: dict[str, Any]


# --- statements -------------------------------------------------------------------------------

_TICKET_FACTS = """
SELECT t.id, t.tenant_id, t.event_id, t.ticket_type_id, t.purchase_id, t.user_id, t.status,
       t.secret_version, t.holder_name, t.holder_wallet, t.nft_mint, t.blockchain_sync_status,
       tt.name AS ticket_type,
       e.allow_reentry, e.admission_opens_at, e.ends_at, e.setup_version
FROM tickets t
JOIN events e ON e.id = t.event_id
JOIN ticket_types tt ON tt.id = t.ticket_type_id
WHERE t.id = ANY($1::uuid[])
ORDER BY t.id
"""
# The facts, read without a lock: only to ask the chain before locking (online.py).
TICKET_FACTS = _TICKET_FACTS
LOCK_TICKETS = _TICKET_FACTS + "FOR UPDATE OF t\n"

# Migration 0011: the ticket locked, its facts, and (unless active) its admitted scans, read by
# a second statement inside the function so that they include every admission committed
# before the lock was granted. One round trip for what LOCK_TICKETS + ADMITTED_SCANS do in two.
CHECKIN_TICKET = "SELECT * FROM gatehouse_checkin_ticket($1)"

ADMITTED_SCANS = """
SELECT id, ticket_id, scanned_at, direction, gate, device_id, conflict_of,
       device_scanned_at IS NULL AS online, checkin_list_id, zone,
       conflict_resolution IS NOT DISTINCT FROM 'accepted' AS conflict_accepted
FROM ticket_scans
WHERE ticket_id = ANY($1::uuid[]) AND result = 'admitted' AND annulled_at IS NULL
"""

STORED_SCAN = """
SELECT id, ticket_id, event_id, device_id, scanned_by, gate, direction, result, reason,
       scanned_at, annulled_at, checkin_list_id
FROM ticket_scans WHERE id = $1
"""

SCAN_DEVICES = "SELECT id, device_id FROM ticket_scans WHERE id = ANY($1::uuid[])"

# The stored scan's ``TimeAdjustment`` is derived from its columns (claims.py): how much later
# the device claimed than the scan was placed, beyond the tolerance either way.
# A conflict a manager resolved is none (migration 0019).
OUTCOMES = """
SELECT id, device_id, result, reason,
       CASE WHEN conflict_resolution IS NULL THEN conflict_of END AS conflict_of, server_reason,
       CASE WHEN device_scanned_at - scanned_at + clock_offset_ms * INTERVAL '1 millisecond'
                 > $2::interval THEN 'clock_ahead'
            WHEN device_scanned_at - scanned_at + clock_offset_ms * INTERVAL '1 millisecond'
                 < -$2::interval THEN 'clock_behind'
       END AS time_adjusted
FROM ticket_scans WHERE id = ANY($1::uuid[])
"""

DEVICE = "SELECT gate, created_at FROM devices WHERE id = $1"

# Two devices of one lineage: the same computer enrolled again (migration 0023).
SAME_GATE = """
SELECT COALESCE(a.lineage_id, a.id) = COALESCE(b.lineage_id, b.id)
FROM devices a, devices b WHERE a.id = $1 AND b.id = $2
"""

INSERT_SCAN = """
INSERT INTO ticket_scans (id, tenant_id, ticket_id, event_id, device_id, scanned_by, gate,
                          direction, result, reason, scanned_at, received_at, code_secret_version,
                          checkin_list_id, zone)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14)
ON CONFLICT DO NOTHING
RETURNING id
"""

# Takes ``scan_id`` if no scan of any tenant has it (the caller rolls it back at once).
PROBE_SCAN_ID = """
INSERT INTO ticket_scans (id, tenant_id, event_id, device_id, scanned_by, gate, direction, result,
                          scanned_at, received_at)
VALUES ($1, $2, $3, $4, $5, $6, 'entry', 'rejected', $7, $7)
ON CONFLICT DO NOTHING
RETURNING id
"""

# An online admission in one round trip: the scan, and — only if the scan was inserted (its
# id free) — the outbox event and, for a first entry ($17), the ticket's new status and
# history row. Returns the scan's id, or no row when the id was taken.
ADMIT = """
WITH scan AS (
    INSERT INTO ticket_scans (id, tenant_id, ticket_id, event_id, device_id, scanned_by, gate,
                              direction, result, reason, scanned_at, received_at,
                              code_secret_version, checkin_list_id, zone)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14)
    ON CONFLICT DO NOTHING
    RETURNING id
), ticket AS (
    UPDATE tickets SET status = 'checked_in', updated_at = $11
    WHERE id = $3 AND $17 AND EXISTS (SELECT FROM scan)
    RETURNING id, tenant_id, secret_version
), history AS (
    INSERT INTO ticket_state_transitions (id, tenant_id, ticket_id, kind, from_status, to_status,
                                          secret_version, actor, details, occurred_at)
    SELECT $18, tenant_id, id, 'checked_in', 'active', 'checked_in', secret_version, $6,
           $19::text::jsonb, $11
    FROM ticket
), event AS (
    INSERT INTO outbox (id, tenant_id, routing_key, ticket_id, payload, created_at)
    SELECT $15, $2, $16, $3, $20::text::jsonb, $11 FROM scan
)
SELECT id FROM scan
"""

# Outbox rows and history rows of a batch, one statement each (one array per column).
EVENTS = """
INSERT INTO outbox (id, tenant_id, routing_key, ticket_id, payload, created_at)
SELECT id, tenant_id, routing_key, ticket_id, payload::jsonb, created_at
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::timestamptz[])
     AS e(id, tenant_id, routing_key, ticket_id, payload, created_at)
"""

HISTORY = """
INSERT INTO ticket_state_transitions (id, tenant_id, ticket_id, kind, from_status, to_status,
                                      secret_version, actor, reason, details, occurred_at)
SELECT id, tenant_id, ticket_id, kind, from_status, to_status, secret_version, actor, reason,
       details::jsonb, occurred_at
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
            $7::integer[], $8::text[], $9::text[], $10::text[], $11::timestamptz[])
     AS h(id, tenant_id, ticket_id, kind, from_status, to_status, secret_version, actor,
          reason, details, occurred_at)
"""

FLAG_OUT_OF_SYNC = """
UPDATE tickets SET blockchain_sync_status = $3, updated_at = $2 WHERE id = $1
"""

SET_STATUS = "UPDATE tickets SET status = $2, updated_at = $3 WHERE id = ANY($1::uuid[])"

# A scan that stops being a double entry loses an accepted resolution with it (migration 0019):
# a later conflict of it is a new one.
SET_CONFLICT = """
UPDATE ticket_scans SET conflict_of = $2,
    conflict_resolved_at = CASE WHEN $2::uuid IS NULL THEN NULL ELSE conflict_resolved_at END,
    conflict_resolved_by = CASE WHEN $2::uuid IS NULL THEN NULL ELSE conflict_resolved_by END,
    conflict_resolution = CASE WHEN $2::uuid IS NULL THEN NULL ELSE conflict_resolution END,
    conflict_resolution_note =
        CASE WHEN $2::uuid IS NULL THEN NULL ELSE conflict_resolution_note END
WHERE id = $1
"""

CONFLICT_SCAN = """
SELECT id, ticket_id, gate, direction, result, conflict_of, annulled_at, conflict_resolution,
       conflict_resolved_at, conflict_resolved_by, conflict_resolution_note
FROM ticket_scans WHERE id = $1
"""

RESOLVE_CONFLICT = """
UPDATE ticket_scans SET conflict_resolution = $2, conflict_resolved_at = $3,
    conflict_resolved_by = $4, conflict_resolution_note = $5
WHERE id = $1
"""

ANNUL_SCAN = "UPDATE ticket_scans SET annulled_at = $2, annulled_by = $3 WHERE id = $1"

# The device's row for this minute, made if new and locked either way; its stored count.
LOCK_JUNK_MINUTE = """
INSERT INTO junk_scans AS j (tenant_id, device_id, minute, stored, dropped)
VALUES ($1, $2, $3, 0, 0)
ON CONFLICT (tenant_id, device_id, minute) DO UPDATE SET stored = j.stored
RETURNING stored
"""
COUNT_JUNK = """
UPDATE junk_scans SET stored = stored + $4, dropped = dropped + $5
WHERE tenant_id = $1 AND device_id = $2 AND minute = $3
"""

_SCAN_TYPES = {
    "id": "uuid",
    "tenant_id": "uuid",
    "ticket_id": "uuid",
    "event_id": "uuid",
    "device_id": "uuid",
    "scanned_by": "text",
    "gate": "text",
    "direction": "text",
    "result": "text",
    "reason": "text",
    "scanned_at": "timestamptz",
    "device_scanned_at": "timestamptz",
    "clock_offset_ms": "integer",
    "offline": "boolean",
    "device_result": "text",
    "device_reason": "text",
    "server_reason": "text",
    "code_secret_version": "integer",
    "received_at": "timestamptz",
    "checkin_list_id": "uuid",
    "zone": "text",
}
_SCAN_COLUMNS = tuple(NewScan.__dataclass_fields__)
assert set(_SCAN_COLUMNS) == set(_SCAN_TYPES)
# A whole batch of scans in one statement: one array per column. Built from the constant
# column list above; no input reaches the text.
INSERT_SCANS = (
    f"INSERT INTO ticket_scans ({', '.join(_SCAN_COLUMNS)}) "  # noqa: S608
    "SELECT * FROM unnest("
    + ", ".join(f"${i}::{_SCAN_TYPES[c]}[]" for i, c in enumerate(_SCAN_COLUMNS, start=1))
    + ") ON CONFLICT DO NOTHING RETURNING id"
)


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


class CheckinQueries:
    """The statements above on one transaction's asyncpg connection (untyped: asyncpg ships no
    annotations), each returning typed rows."""

    def __init__(self, connection: Any) -> None:
        self._db = connection

    @property
    def connection(self) -> Any:
        """The transaction's connection, for statements kept elsewhere (``setup.SETUP``)."""
        return self._db

    async def lock_tickets(self, ticket_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, LockedTicket]:
        """Lock the tickets in id order (so two writers never deadlock), with their facts."""
        ids = sorted(set(ticket_ids))
        if not ids:
            return {}
        rows = await self._db.fetch(LOCK_TICKETS, ids)
        return {row["id"]: LockedTicket(*row.values()) for row in rows}

    async def checkin_ticket(
        self, ticket_id: uuid.UUID
    ) -> tuple[LockedTicket | None, list[HistoryScan] | None]:
        """Lock one ticket for an online verdict (``CHECKIN_TICKET``): its facts, and its
        admitted scans unless it is active (None then: an active ticket has none standing)."""
        row = await self._db.fetchrow(CHECKIN_TICKET, ticket_id)
        if row is None:
            return None, None
        *facts, history = row.values()
        ticket = LockedTicket(*facts)
        if history is None:
            return ticket, None
        # The session's connections decode jsonb already (SQLAlchemy's codec); a bare asyncpg
        # connection hands over the text.
        if isinstance(history, str | bytes):
            return ticket, msgspec.json.decode(history, type=list[HistoryScan])
        return ticket, msgspec.convert(history, type=list[HistoryScan])

    async def ticket_facts(self, ticket_id: uuid.UUID) -> LockedTicket | None:
        """A ticket's facts as ``lock_tickets`` reads them, without locking it."""
        row = await self._db.fetchrow(TICKET_FACTS, [ticket_id])
        return None if row is None else LockedTicket(*row.values())

    async def admitted_scans(self, ticket_ids: Iterable[uuid.UUID]) -> list[HistoryScan]:
        rows = await self._db.fetch(ADMITTED_SCANS, list(ticket_ids))
        return [HistoryScan(*row.values()) for row in rows]

    async def stored_scan(self, scan_id: uuid.UUID) -> StoredScan | None:
        row = await self._db.fetchrow(STORED_SCAN, scan_id)
        return None if row is None else StoredScan(*row.values())

    async def scan_devices(
        self, scan_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, uuid.UUID | None]:
        """The device of each scan of these ids the tenant has."""
        return {row["id"]: row["device_id"] for row in await self._db.fetch(SCAN_DEVICES, scan_ids)}

    async def outcomes(self, scan_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ScanOutcomeRow]:
        rows = await self._db.fetch(OUTCOMES, list(scan_ids), CLOCK_TOLERANCE)
        return {row["id"]: ScanOutcomeRow(*row.values()) for row in rows}

    async def same_gate(self, one: uuid.UUID, other: uuid.UUID) -> bool:
        """Whether two of the tenant's devices are of one lineage (``SAME_GATE``)."""
        return bool(await self._db.fetchval(SAME_GATE, one, other))

    async def device(self, device_id: uuid.UUID) -> DeviceRow:
        row = await self._db.fetchrow(DEVICE, device_id)
        return DeviceRow(*row.values())

    async def insert_scan(self, scan: NewScan) -> bool:
        """One online scan; False when its id is taken (by any tenant)."""
        inserted = await self._db.fetchval(
            INSERT_SCAN,
            *scan.online_columns(),
        )
        return inserted is not None

    async def admit(
        self,
        scan: NewScan,
        event: dict[str, Any],
        first: ChangeRows | None,
        details: dict[str, Any] | None,
    ) -> bool:
        """An online admission (``ADMIT``): the scan, its outbox ``event``, and for a first
        entry (``first``) the status change and history row. False when the scan's id is
        taken (by any tenant): then nothing was written."""
        inserted = await self._db.fetchval(
            ADMIT,
            *scan.online_columns(),
            event["id"],
            event["routing_key"],
            first is not None,
            first.history["id"] if first else None,
            _json(details) if first else None,
            _json(event["payload"]),
        )
        return inserted is not None

    async def insert_scans(self, scans: Sequence[NewScan]) -> set[uuid.UUID]:
        """A batch of scans in one statement; the ids inserted (a taken id is skipped)."""
        if not scans:
            return set()
        columns = ([getattr(s, c) for s in scans] for c in _SCAN_COLUMNS)
        return {row["id"] for row in await self._db.fetch(INSERT_SCANS, *columns)}

    async def scan_id_is_free(self, scan: NewScan) -> bool:
        """Whether no scan of any tenant holds ``scan.id``. Row-level security hides another
        tenant's row but not its id, which the primary key still holds: try to take the id in a
        savepoint that is always rolled back."""
        await self._db.execute("SAVEPOINT scan_id_probe")
        try:
            free = await self._db.fetchval(
                PROBE_SCAN_ID,
                scan.id,
                scan.tenant_id,
                scan.event_id,
                scan.device_id,
                scan.scanned_by,
                scan.gate,
                scan.received_at,
            )
        finally:
            await self._db.execute("ROLLBACK TO SAVEPOINT scan_id_probe")
            await self._db.execute("RELEASE SAVEPOINT scan_id_probe")
        return free is not None

    async def events(self, events: Sequence[dict[str, Any]]) -> None:
        """Outbox rows (``outbox.ticket_event_row``), one statement."""
        if not events:
            return
        await self._db.execute(
            EVENTS,
            [e["id"] for e in events],
            [e["tenant_id"] for e in events],
            [e["routing_key"] for e in events],
            [e["ticket_id"] for e in events],
            [_json(e["payload"]) for e in events],
            [e["created_at"] for e in events],
        )

    async def changes(self, changes: Sequence[ChangeRows]) -> None:
        """History rows and outbox events of ticket changes, one statement each."""
        if not changes:
            return
        rows = [c.history for c in changes]
        await self._db.execute(
            HISTORY,
            [h["id"] for h in rows],
            [h["tenant_id"] for h in rows],
            [h["ticket_id"] for h in rows],
            [h["kind"] for h in rows],
            [h["from_status"] for h in rows],
            [h["to_status"] for h in rows],
            [h["secret_version"] for h in rows],
            [h["actor"] for h in rows],
            [h["reason"] for h in rows],
            [_json(h["details"]) for h in rows],
            [h["occurred_at"] for h in rows],
        )
        await self.events([c.event for c in changes])

    async def set_status(self, ticket_ids: Sequence[uuid.UUID], status: str, now: datetime) -> None:
        await self._db.execute(SET_STATUS, list(ticket_ids), status, now)

    async def flag_out_of_sync(self, ticket_id: uuid.UUID, now: datetime, status: str) -> None:
        await self._db.execute(FLAG_OUT_OF_SYNC, ticket_id, now, status)

    async def set_conflicts(self, changes: Sequence[tuple[uuid.UUID, uuid.UUID | None]]) -> None:
        if changes:
            await self._db.executemany(SET_CONFLICT, changes)

    async def annul_scan(self, scan_id: uuid.UUID, now: datetime, actor: str) -> None:
        await self._db.execute(ANNUL_SCAN, scan_id, now, actor)

    async def conflict_scan(self, scan_id: uuid.UUID) -> ConflictScan | None:
        row = await self._db.fetchrow(CONFLICT_SCAN, scan_id)
        return None if row is None else ConflictScan(*row.values())

    async def resolve_conflict(
        self, scan_id: uuid.UUID, resolution: str, now: datetime, actor: str, note: str | None
    ) -> None:
        await self._db.execute(RESOLVE_CONFLICT, scan_id, resolution, now, actor, note)

    async def junk_allowance(
        self, tenant_id: uuid.UUID, device_id: uuid.UUID, minute: datetime, count: int, limit: int
    ) -> int:
        """How many of ``count`` unreadable scans the device may still have stored this minute;
        all are counted. The minute's row is locked by the first statement, so concurrent
        uploads of one device share one allowance."""
        already = await self._db.fetchval(LOCK_JUNK_MINUTE, tenant_id, device_id, minute)
        kept = max(0, min(count, limit - int(already)))
        await self._db.execute(COUNT_JUNK, tenant_id, device_id, minute, kept, count - kept)
        return kept
