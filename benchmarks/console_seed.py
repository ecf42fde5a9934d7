"""A busy event's scans, written in bulk: what ``benchmarks/console.py`` measures the console
against (and what a developer can load to look at a full dashboard).

Everything is set-based SQL as the owner, in one transaction: tickets, then each ticket's
admission and what follows it, then the rejections, with ``session_replication_role = replica``
so that neither the feed's pending-change trigger nor the ``conflict_of`` foreign key runs per
row (the rows are numbered for the changes feed as they are written, as if the sequencer had
kept up). A million scans take about a minute here.

The shape, per ticket (``Layout``): one admitted entry at a gate of its check-in list, in the
list's zone; a tenth go out again and half of those come back; one in two hundred is scanned
twice at two gates while offline (the later one a standing conflict); one in a thousand
admissions is undone by a manager. The rest of the scans are rejections at random gates, by a
realistic mix of reasons. Scans spread over the ``hours`` before ``now``, most of them early
(doors open, the crowd arrives), and each scan's id is a UUIDv7 of its time, as the server's
are.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

#: Rejections by reason, in parts of the rejected scans (sums to 100).
REJECTION_MIX: tuple[tuple[str, int], ...] = (
    ("already_checked_in", 40),
    ("invalid_code", 15),
    ("not_found", 8),
    ("wrong_event", 8),
    ("not_on_list", 12),
    ("revoked", 6),
    ("superseded", 4),
    ("rule_failed", 4),
    ("not_yet_valid", 3),
)
#: Of all scans: admitted entries (one per ticket), exits, re-entries, double entries; the
#: rest are rejections.
ENTRY_SHARE = 0.70
EXIT_EVERY = 10  # one ticket in ten goes out again ...
REENTRY_EVERY = 20  # ... and one in twenty comes back in
CONFLICT_EVERY = 200
ANNUL_EVERY = 1000


@dataclass(frozen=True, slots=True)
class ListLayout:
    """A check-in list of the event: its ticket type, zone and gates, and the part of the
    tickets (in twentieths) that are of its type."""

    name: str
    ticket_type_id: uuid.UUID
    list_id: uuid.UUID
    zone: str | None
    gates: tuple[str, ...]
    twentieths: int


@dataclass(frozen=True, slots=True)
class SeedPlan:
    tenant_id: uuid.UUID
    event_id: uuid.UUID
    lists: tuple[ListLayout, ...]
    #: Each gate's device (the scans name it, as the server's do).
    devices: dict[str, uuid.UUID]
    scans: int
    hours: float
    now: datetime

    @property
    def tickets(self) -> int:
        return int(self.scans * ENTRY_SHARE)


# A UUIDv7 of the instant ``ts``: 48 bits of Unix milliseconds, version 7, 74 random bits.
_UUID7 = """(
    lpad(to_hex(floor(extract(epoch FROM {ts}) * 1000)::bigint), 12, '0')
    || '7' || substr(md5(random()::text), 1, 3)
    || to_hex(8 + floor(random() * 4)::int) || substr(md5(random()::text), 1, 15)
)::uuid"""

_FIRST = [
    "Ada",
    "Amira",
    "Ben",
    "Camille",
    "Chen",
    "Dara",
    "Elif",
    "Emil",
    "Farah",
    "Finn",
    "Grace",
    "Hana",
    "Ines",
    "Ivan",
    "Jonas",
    "Kai",
    "Lena",
    "Leila",
    "Lucas",
    "Maya",
    "Mateo",
    "Nia",
    "Noah",
    "Olga",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Sofia",
]
_LAST = [
    "Abebe",
    "Andersen",
    "Bauer",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ito",
    "Jensen",
    "Kowalski",
    "Kim",
    "Larsen",
    "Moreau",
    "Nakamura",
    "Novak",
    "Okafor",
    "Oliveira",
    "Petrov",
    "Quispe",
    "Rossi",
    "Santos",
    "Schmidt",
    "Silva",
]


def _array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


async def seed(dsn: str, plan: SeedPlan) -> dict[str, int]:
    """Write ``plan``'s tickets and scans; returns how many rows of each kind. ``dsn``: the
    owner's (a superuser's, for ``session_replication_role``)."""
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await connection.execute("SET LOCAL session_replication_role = replica")
            await connection.execute("SET LOCAL work_mem = '256MB'")
            counts = await _seed(connection, plan)
        for table in ("tickets", "ticket_scans"):
            await connection.execute(f"VACUUM ANALYZE {table}")
        return counts
    finally:
        await connection.close()


async def _seed(db: Any, plan: SeedPlan) -> dict[str, int]:
    # Each list's gates and its share of tickets, as a small table.
    await db.execute(
        "CREATE TEMP TABLE seed_lists (list_n int, list_id uuid, ticket_type_id uuid, zone text,"
        " gates text[], low int, high int) ON COMMIT DROP"
    )
    low = 0
    rows = []
    for n, layout in enumerate(plan.lists):
        rows.append(
            (
                n,
                layout.list_id,
                layout.ticket_type_id,
                layout.zone,
                list(layout.gates),
                low,
                low + layout.twentieths,
            )
        )
        low += layout.twentieths
    assert low == 20, "the lists' shares must add up to twenty twentieths"
    await db.executemany("INSERT INTO seed_lists VALUES ($1, $2, $3, $4, $5, $6, $7)", rows)
    await db.execute(
        "CREATE TEMP TABLE seed_devices (gate text PRIMARY KEY, device_id uuid) ON COMMIT DROP"
    )
    await db.executemany("INSERT INTO seed_devices VALUES ($1, $2)", list(plan.devices.items()))
    seconds = plan.hours * 3600
    sold_id = _UUID7.format(ts="($1::timestamptz - interval '30 days' * random())")
    # Tickets: their list (by n mod 20), their gate in it, the time of their entry (early in
    # the window more often than late: a power below 1 bunches them towards the start).
    await db.execute(
        f"""
        CREATE TEMP TABLE seed_tickets ON COMMIT DROP AS
        SELECT n, {sold_id} AS id, l.list_id, l.ticket_type_id, l.zone,
               l.gates[1 + (n / 20) % array_length(l.gates, 1)] AS gate,
               l.gates[1 + (n / 20 + 1) % array_length(l.gates, 1)] AS other_gate,
               $1::timestamptz - make_interval(secs => $2 * power(random(), 0.6))
                   AS entered_at
        FROM generate_series(1, $3) AS n
        JOIN seed_lists l ON n % 20 >= l.low AND n % 20 < l.high
        """,  # noqa: S608 - this module's constants; values are parameters
        plan.now,
        seconds,
        plan.tickets,
    )
    await db.execute("CREATE UNIQUE INDEX ON seed_tickets (n)")
    await db.execute("ANALYZE seed_tickets")
    await db.execute(
        f"""
        INSERT INTO tickets (id, tenant_id, event_id, ticket_type_id, purchase_id, user_id,
                             holder_name, status, secret_version, created_at, updated_at,
                             change_seq)
        SELECT id, $1, $2, ticket_type_id, id, 'user-' || n,
               ({_array(_FIRST)})[1 + n % {len(_FIRST)}] || ' '
                   || ({_array(_LAST)})[1 + (n / {len(_FIRST)}) % {len(_LAST)}],
               'checked_in', 0, entered_at - interval '20 days', entered_at,
               nextval('gatehouse_changes')
        FROM seed_tickets
        """,  # noqa: S608 - this module's constants; values are parameters
        plan.tenant_id,
        plan.event_id,
    )
    for layout in plan.lists:
        await db.execute(
            "UPDATE ticket_types SET sold = sold + (SELECT count(*) FROM seed_tickets"
            " WHERE ticket_type_id = $1), capacity = greatest(capacity, 10000000)"
            " WHERE id = $1",
            layout.ticket_type_id,
        )
    scan_columns = (
        "id, tenant_id, ticket_id, event_id, device_id, scanned_by, gate, direction, result,"
        " reason, scanned_at, received_at, conflict_of, device_scanned_at, clock_offset_ms,"
        " offline, device_result, annulled_at, annulled_by, change_seq, checkin_list_id, zone"
    )
    # Admitted entries, one per ticket: kept in a temp table, for what refers to them.
    await db.execute(
        f"""
        CREATE TEMP TABLE seed_entries ON COMMIT DROP AS
        SELECT {_UUID7.format(ts="t.entered_at")} AS scan_id, t.*
        FROM seed_tickets t
        """  # noqa: S608 - this module's constants; values are parameters
    )
    await db.execute(
        f"""
        INSERT INTO ticket_scans ({scan_columns})
        SELECT e.scan_id, $1, e.id, $2, d.device_id, 'device:' || d.device_id, e.gate, 'entry',
               'admitted', NULL, e.entered_at, e.entered_at, NULL, NULL, 0, false, NULL,
               CASE WHEN e.n % {ANNUL_EVERY} = 7 THEN e.entered_at + interval '2 minutes' END,
               CASE WHEN e.n % {ANNUL_EVERY} = 7 THEN 'manager:ops@example.org' END,
               nextval('gatehouse_changes'), e.list_id, e.zone
        FROM seed_entries e JOIN seed_devices d ON d.gate = e.gate
        """,  # noqa: S608 - this module's constants; values are parameters
        plan.tenant_id,
        plan.event_id,
    )
    # Exits (one ticket in ten, 5 to 65 minutes after its entry) and re-entries (half of
    # those, 5 to 35 minutes after the exit), if they happened before now.
    await db.execute(
        f"""
        INSERT INTO ticket_scans ({scan_columns})
        SELECT {_UUID7.format(ts="x.at")}, $1, x.id, $2, d.device_id, 'device:' || d.device_id,
               x.gate, x.direction, 'admitted', NULL, x.at, x.at, NULL, NULL, 0, false, NULL,
               NULL, NULL, nextval('gatehouse_changes'), x.list_id,
               CASE WHEN x.direction = 'entry' THEN x.zone END
        FROM (
            SELECT e.id, e.gate, e.list_id, e.zone, 'exit' AS direction,
                   e.entered_at + make_interval(mins => 5 + (e.n / 20) % 60) AS at
            FROM seed_entries e WHERE e.n % {EXIT_EVERY} = 3
            UNION ALL
            SELECT e.id, e.gate, e.list_id, e.zone, 'entry',
                   e.entered_at + make_interval(mins => 10 + (e.n / 20) % 60 + (e.n / 7) % 30)
            FROM seed_entries e WHERE e.n % {REENTRY_EVERY} = 3
        ) x JOIN seed_devices d ON d.gate = x.gate
        WHERE x.at < $3
        """,  # noqa: S608 - this module's constants; values are parameters
        plan.tenant_id,
        plan.event_id,
        plan.now,
    )
    # Double entries: the same ticket at another gate of its list, offline, a few minutes
    # later — a conflict of the first entry.
    await db.execute(
        f"""
        INSERT INTO ticket_scans ({scan_columns})
        SELECT {_UUID7.format(ts="x.at")}, $1, x.id, $2, d.device_id, 'device:' || d.device_id,
               x.other_gate, 'entry', 'admitted', NULL, x.at, x.at + interval '20 minutes',
               x.scan_id, x.at, -250, true, 'admitted', NULL, NULL,
               nextval('gatehouse_changes'), x.list_id, x.zone
        FROM (
            SELECT e.*, e.entered_at + make_interval(mins => 1 + e.n % 9) AS at
            FROM seed_entries e WHERE e.n % {CONFLICT_EVERY} = 11
        ) x JOIN seed_devices d ON d.gate = x.other_gate
        WHERE x.at < $3
        """,  # noqa: S608 - this module's constants; values are parameters
        plan.tenant_id,
        plan.event_id,
        plan.now,
    )
    so_far = await db.fetchval(
        "SELECT count(*) FROM ticket_scans WHERE event_id = $1", plan.event_id
    )
    rejections = max(0, plan.scans - int(so_far))
    reasons = [reason for reason, parts in REJECTION_MIX for _ in range(parts)]
    # Rejections at random gates: a ticket's repeat (already checked in) or someone else's
    # ticket names a ticket; an unreadable or foreign code names none.
    await db.execute(
        f"""
        INSERT INTO ticket_scans ({scan_columns})
        SELECT {_UUID7.format(ts="r.at")}, $1, r.ticket_id, $2, d.device_id,
               'device:' || d.device_id, d.gate, 'entry', 'rejected', r.reason, r.at, r.at,
               NULL, NULL, 0, false, NULL, NULL, NULL, nextval('gatehouse_changes'), NULL, NULL
        FROM (
            SELECT n, reason,
                   CASE WHEN reason IN ('already_checked_in', 'not_on_list', 'rule_failed',
                                        'revoked', 'superseded', 'not_yet_valid')
                        THEN (SELECT id FROM seed_tickets WHERE seed_tickets.n = 1 + (g.n * 7919)
                              % $4)
                   END AS ticket_id,
                   $3::timestamptz - make_interval(secs => $5 * power(random(), 0.6)) AS at,
                   1 + g.n % $6 AS device_n
            FROM generate_series(1, $7) AS g(n)
            CROSS JOIN LATERAL (SELECT ({_array(reasons)})[1 + (g.n * 31) % {len(reasons)}]
                                AS reason) rr
        ) r
        JOIN (SELECT row_number() OVER (ORDER BY gate) AS device_n, gate, device_id
              FROM seed_devices) d ON d.device_n = r.device_n
        """,  # noqa: S608 - this module's constants; values are parameters
        plan.tenant_id,
        plan.event_id,
        plan.now,
        plan.tickets,
        seconds,
        len(plan.devices),
        rejections,
    )
    rows = await db.fetch(
        """
        SELECT count(*) FILTER (WHERE direction = 'entry' AND result = 'admitted'
                                AND conflict_of IS NULL AND annulled_at IS NULL) AS admitted,
               count(*) FILTER (WHERE direction = 'exit') AS exits,
               count(*) FILTER (WHERE conflict_of IS NOT NULL) AS conflicts,
               count(*) FILTER (WHERE annulled_at IS NOT NULL) AS annulled,
               count(*) FILTER (WHERE result = 'rejected') AS rejected,
               count(*) AS scans
        FROM ticket_scans WHERE event_id = $1
        """,
        plan.event_id,
    )
    counts = dict(rows[0])
    counts["tickets"] = plan.tickets
    return counts
