"""An event's gate counts kept as they change (issue 17, the console's live dashboard).

Counting an event's scans from ``ticket_scans`` takes seconds at a million scans (measured:
3.6–7.5 s for ``ScanLog.stats`` on this project's machine, 2.3–3.4 s of it for who is inside),
and the dashboard asks for them every time a scan arrives. So the counts are kept in three small
tables, changed by triggers on ``ticket_scans`` in the writing transaction itself — no write
path can forget them, a rollback takes them back, and they cost no round trip:

* ``gate_counts``: per event, gate and rejection reason (``''`` for scans not rejected):
  admissions that stand, rejections, standing double entries (conflicts), undone admissions,
  counted exits, and the latest scan's time;
* ``gate_minutes``: per event, minute (``date_bin`` of ``scanned_at``) and gate: admissions and
  rejections — the dashboard's chart;
* ``zone_counts``: per event and zone (``''``: the general area), how many tickets are inside:
  each ticket counts where its latest standing admission or counted exit (by ``scanned_at``,
  then id) left it, ``ScanLog``'s rule (and ``shared.checkin_lists.inside_by_zone``'s).

The counting rules are ``sync_server.domain.scans.services``' (an admission is an admitted entry
that is neither a double entry nor undone, and so on), written once below and used by the
triggers and by ``gatehouse_recount_scans`` alike.

**Writes stay cheap and never wait for each other.** New rows are counted by one
statement-level trigger (a batch of 1,000 uploaded scans is counted in one pass over its
transition table, not 1,000 trigger calls); an update is counted by a row-level trigger whose
``WHEN`` lets through only changes of what is counted (an annulment, a conflict found or
lifted) — the changes feed's sequencer, which renumbers scans by the ten thousand, never
fires it. Every row of the three tables also carries a ``shard``: the writing connection's
backend pid. Two transactions on different connections therefore never add to the same row —
two gates' scanners (or fifty clients of one gate) never queue behind one counter row's lock
until commit, and no two writers can deadlock on counters however their statements interleave
(a shared shard could: an upload's insert and its conflict updates touch counter rows in two
statements). Readers sum the shards; a key has as many rows as connections wrote to it.

Who is inside is worked out only for the tickets a statement touched: their latest standing
scan before and after (index look-ups on ``ix_ticket_scans_ticket_id_scanned_at``), and only
when it may have changed; the ticket is locked by the admission that writes it, so no two
transactions count one ticket at once.

``gatehouse_recount_scans(event)`` counts an event from scratch (the owner's tool: after
writing scans with triggers off, as the console benchmark's seeding does, or to check the
counts; a test holds the triggers to it). The upgrade counts every existing event with it,
tenant by tenant, so the row-level security of a non-superuser owner sees each tenant's rows.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import UUID

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)

# The counting rules, on a row ``r`` of ticket_scans (``ScanLog``'s ADMISSION, REJECTION,
# CONFLICT, ANNULLED, COUNTED_EXIT; STANDING: what decides who is inside).
ADMISSION = (
    "(r.direction = 'entry' AND r.result = 'admitted' AND r.conflict_of IS NULL"
    " AND r.annulled_at IS NULL)"
)
REJECTION = "(r.result = 'rejected')"
CONFLICT = "(r.conflict_of IS NOT NULL AND r.annulled_at IS NULL)"
ANNULLED = "(r.annulled_at IS NOT NULL)"
COUNTED_EXIT = "(r.direction = 'exit' AND r.result = 'admitted' AND r.annulled_at IS NULL)"
STANDING = (
    "(r.ticket_id IS NOT NULL AND r.result = 'admitted' AND r.annulled_at IS NULL"
    " AND (r.direction = 'exit' OR r.conflict_of IS NULL))"
)
MINUTE = "date_bin(INTERVAL '1 minute', r.scanned_at, TIMESTAMPTZ '2000-01-01T00:00:00Z')"
REASON_KEY = "CASE WHEN r.result = 'rejected' THEN coalesce(r.reason, '') ELSE '' END"


def _n(condition: str) -> str:
    """The signed count of the rows meeting ``condition`` (``sign``: +1 new, -1 old)."""
    return f"coalesce(sum(r.sign) FILTER (WHERE {condition}), 0)"


# Counts the rows of ``new_rows`` (+1) and ``old_rows`` (-1: the versions an update replaced)
# into the three tables, and for the tickets they touch finds where each is now and was before.
COUNT_BODY = f"""
DECLARE
    -- This connection's own counter rows: no other transaction waits for their locks.
    writer integer := pg_backend_pid();
BEGIN
    INSERT INTO gate_counts AS c (tenant_id, event_id, gate, reason, shard, admitted, rejected,
                                  conflicts, annulled, exits, last_scan_at)
    SELECT r.tenant_id, r.event_id, r.gate, {REASON_KEY}, writer,
           {_n(ADMISSION)}, {_n(REJECTION)}, {_n(CONFLICT)}, {_n(ANNULLED)},
           {_n(COUNTED_EXIT)}, max(r.scanned_at) FILTER (WHERE r.sign = 1)
    FROM (SELECT n.*, 1 AS sign FROM unnest(new_rows) n
          UNION ALL SELECT o.*, -1 FROM unnest(old_rows) o) r
    GROUP BY r.tenant_id, r.event_id, r.gate, {REASON_KEY}
    -- Every new row counts somewhere; an update that moves nothing adds nothing.
    HAVING {_n(ADMISSION)} <> 0 OR {_n(REJECTION)} <> 0 OR {_n(CONFLICT)} <> 0
        OR {_n(ANNULLED)} <> 0 OR {_n(COUNTED_EXIT)} <> 0
    ORDER BY r.event_id, r.gate, {REASON_KEY}
    ON CONFLICT (event_id, gate, reason, shard) DO UPDATE SET
        admitted = c.admitted + excluded.admitted,
        rejected = c.rejected + excluded.rejected,
        conflicts = c.conflicts + excluded.conflicts,
        annulled = c.annulled + excluded.annulled,
        exits = c.exits + excluded.exits,
        last_scan_at = greatest(c.last_scan_at, excluded.last_scan_at);

    INSERT INTO gate_minutes AS m (tenant_id, event_id, minute, gate, shard, admitted, rejected)
    SELECT r.tenant_id, r.event_id, {MINUTE}, r.gate, writer, {_n(ADMISSION)}, {_n(REJECTION)}
    FROM (SELECT n.*, 1 AS sign FROM unnest(new_rows) n
          UNION ALL SELECT o.*, -1 FROM unnest(old_rows) o) r
    GROUP BY r.tenant_id, r.event_id, {MINUTE}, r.gate
    HAVING {_n(ADMISSION)} <> 0 OR {_n(REJECTION)} <> 0
    ORDER BY r.event_id, {MINUTE}, r.gate
    ON CONFLICT (event_id, minute, gate, shard) DO UPDATE SET
        admitted = m.admitted + excluded.admitted,
        rejected = m.rejected + excluded.rejected;

    -- Who is inside: for each ticket with an admitted scan among the changed rows, its latest
    -- standing scan now and (where that may have moved) before this statement: the latest of
    -- the rows it did not write, and of the old versions of the rows it changed.
    WITH touched AS (
        SELECT r.ticket_id,
               array_agg(r.id) FILTER (WHERE r.sign = 1) AS new_ids,
               bool_or(r.sign = -1) AS updated
        FROM (SELECT n.*, 1 AS sign FROM unnest(new_rows) n
              UNION ALL SELECT o.*, -1 FROM unnest(old_rows) o) r
        WHERE r.ticket_id IS NOT NULL AND r.result = 'admitted'
        GROUP BY r.ticket_id
    ), now_at AS (
        SELECT t.ticket_id, t.new_ids, t.updated, l.id, l.tenant_id, l.event_id, l.direction,
               l.zone
        FROM touched t
        LEFT JOIN LATERAL (
            SELECT r.id, r.tenant_id, r.event_id, r.direction, coalesce(r.zone, '') AS zone
            FROM ticket_scans r
            WHERE r.ticket_id = t.ticket_id AND {STANDING}
            ORDER BY r.scanned_at DESC, r.id DESC
            LIMIT 1
        ) l ON true
    ), moved AS (
        SELECT * FROM now_at WHERE updated OR id = ANY (new_ids)
    ), before AS (
        SELECT b.tenant_id, b.event_id, b.direction, b.zone
        FROM moved m
        CROSS JOIN LATERAL (
            SELECT x.tenant_id, x.event_id, x.direction, x.zone
            FROM (
                (SELECT r.scanned_at, r.id, r.tenant_id, r.event_id, r.direction,
                        coalesce(r.zone, '') AS zone
                 FROM ticket_scans r
                 WHERE r.ticket_id = m.ticket_id AND {STANDING} AND r.id <> ALL (m.new_ids)
                 ORDER BY r.scanned_at DESC, r.id DESC
                 LIMIT 1)
                UNION ALL
                SELECT r.scanned_at, r.id, r.tenant_id, r.event_id, r.direction,
                       coalesce(r.zone, '')
                FROM unnest(old_rows) r
                WHERE r.ticket_id = m.ticket_id AND {STANDING}
            ) x
            ORDER BY x.scanned_at DESC, x.id DESC
            LIMIT 1
        ) b
    ), moves AS (
        SELECT tenant_id, event_id, zone, 1 AS d FROM moved WHERE direction = 'entry'
        UNION ALL
        SELECT tenant_id, event_id, zone, -1 FROM before WHERE direction = 'entry'
    )
    INSERT INTO zone_counts AS z (tenant_id, event_id, zone, shard, inside)
    SELECT tenant_id, event_id, zone, writer, sum(d)
    FROM moves
    GROUP BY tenant_id, event_id, zone
    HAVING sum(d) <> 0
    ORDER BY event_id, zone
    ON CONFLICT (event_id, zone, shard) DO UPDATE SET inside = z.inside + excluded.inside;
END
"""

COUNT_FUNCTION = f"""
CREATE FUNCTION gatehouse_count_scans(new_rows ticket_scans[], old_rows ticket_scans[])
RETURNS void LANGUAGE plpgsql AS $$
{COUNT_BODY}
$$
"""

INSERTED_TRIGGER_FUNCTION = """
CREATE FUNCTION gatehouse_count_new_scans() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM gatehouse_count_scans(ARRAY(SELECT n::ticket_scans FROM new_scans n), NULL);
    RETURN NULL;
END $$
"""

CHANGED_TRIGGER_FUNCTION = """
CREATE FUNCTION gatehouse_count_changed_scan() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM gatehouse_count_scans(ARRAY[NEW], ARRAY[OLD]);
    RETURN NULL;
END $$
"""

#: The columns whose change changes a count (the app changes only conflict_of and
#: annulled_at; the rest are here so that no update can leave a count behind).
COUNTED_COLUMNS = (
    "tenant_id",
    "event_id",
    "ticket_id",
    "gate",
    "direction",
    "result",
    "reason",
    "scanned_at",
    "conflict_of",
    "annulled_at",
    "zone",
)

RECOUNT_FUNCTION = f"""
CREATE FUNCTION gatehouse_recount_scans(event uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM gate_counts WHERE event_id = event;
    DELETE FROM gate_minutes WHERE event_id = event;
    DELETE FROM zone_counts WHERE event_id = event;
    INSERT INTO gate_counts (tenant_id, event_id, gate, reason, shard, admitted, rejected,
                             conflicts, annulled, exits, last_scan_at)
    SELECT r.tenant_id, r.event_id, r.gate, {REASON_KEY}, 0,
           {_n(ADMISSION)}, {_n(REJECTION)}, {_n(CONFLICT)}, {_n(ANNULLED)},
           {_n(COUNTED_EXIT)}, max(r.scanned_at)
    FROM (SELECT s.*, 1 AS sign FROM ticket_scans s WHERE s.event_id = event) r
    GROUP BY r.tenant_id, r.event_id, r.gate, {REASON_KEY};
    INSERT INTO gate_minutes (tenant_id, event_id, minute, gate, shard, admitted, rejected)
    SELECT r.tenant_id, r.event_id, {MINUTE}, r.gate, 0, {_n(ADMISSION)}, {_n(REJECTION)}
    FROM (SELECT s.*, 1 AS sign FROM ticket_scans s WHERE s.event_id = event) r
    GROUP BY r.tenant_id, r.event_id, {MINUTE}, r.gate
    HAVING {_n(ADMISSION)} <> 0 OR {_n(REJECTION)} <> 0;
    INSERT INTO zone_counts (tenant_id, event_id, zone, shard, inside)
    SELECT tenant_id, event_id, zone, 0, count(*)
    FROM (
        SELECT DISTINCT ON (r.ticket_id) r.tenant_id, r.event_id, r.direction,
               coalesce(r.zone, '') AS zone
        FROM ticket_scans r
        WHERE r.event_id = event AND {STANDING}
        ORDER BY r.ticket_id, r.scanned_at DESC, r.id DESC
    ) latest
    WHERE direction = 'entry'
    GROUP BY tenant_id, event_id, zone;
END $$
"""

# Every event, tenant by tenant: with a non-superuser owner, forced row-level security shows
# each tenant's rows only while that tenant is set.
BACKFILL = """
DO $$
DECLARE
    t uuid;
    e uuid;
BEGIN
    FOR t IN SELECT id FROM tenants LOOP
        PERFORM set_config('gatehouse.tenant_id', t::text, true);
        FOR e IN SELECT id FROM events WHERE tenant_id = t LOOP
            PERFORM gatehouse_recount_scans(e);
        END LOOP;
    END LOOP;
    PERFORM set_config('gatehouse.tenant_id', '', true);
END $$
"""

TABLES = ("gate_counts", "gate_minutes", "zone_counts")


def _role() -> str:
    role = str(context.config.attributes.get("app_role", "gatehouse_app"))
    if not role.replace("_", "").isalnum():
        raise ValueError(f"unsafe role name {role!r}")
    return role


def _counter(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger, server_default="0", nullable=False)


def upgrade() -> None:
    role = _role()
    tenant = (sa.Column("tenant_id", UUID(as_uuid=True), nullable=False),)
    event = sa.Column("event_id", UUID(as_uuid=True), primary_key=True)
    op.create_table(
        "gate_counts",
        *tenant,
        event,
        sa.Column("gate", sa.Text, primary_key=True),
        sa.Column("reason", sa.Text, primary_key=True),
        sa.Column("shard", sa.Integer, primary_key=True),
        *(_counter(n) for n in ("admitted", "rejected", "conflicts", "annulled", "exits")),
        sa.Column("last_scan_at", TS, nullable=True),
    )
    op.create_table(
        "gate_minutes",
        sa.Column("tenant_id", UUID(as_uuid=True), nullable=False),
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("minute", TS, primary_key=True),
        sa.Column("gate", sa.Text, primary_key=True),
        sa.Column("shard", sa.Integer, primary_key=True),
        _counter("admitted"),
        _counter("rejected"),
    )
    op.create_table(
        "zone_counts",
        sa.Column("tenant_id", UUID(as_uuid=True), nullable=False),
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("zone", sa.Text, primary_key=True),
        sa.Column("shard", sa.Integer, primary_key=True),
        _counter("inside"),
    )
    for table in TABLES:
        # The application adds to the counts (through the triggers, as itself) and reads them;
        # it never deletes them.
        op.execute(f"GRANT SELECT, INSERT, UPDATE ON {table} TO {role}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            "USING (tenant_id = gatehouse_current_tenant()) "
            "WITH CHECK (tenant_id = gatehouse_current_tenant())"
        )
    op.execute(COUNT_FUNCTION)
    op.execute(INSERTED_TRIGGER_FUNCTION)
    op.execute(CHANGED_TRIGGER_FUNCTION)
    op.execute(RECOUNT_FUNCTION)
    op.execute(
        f"GRANT EXECUTE ON FUNCTION gatehouse_count_scans(ticket_scans[], ticket_scans[]) TO {role}"
    )
    op.execute(
        "CREATE TRIGGER count_new_scans AFTER INSERT ON ticket_scans "
        "REFERENCING NEW TABLE AS new_scans "
        "FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_count_new_scans()"
    )
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in COUNTED_COLUMNS)
    op.execute(
        "CREATE TRIGGER count_changed_scan AFTER UPDATE ON ticket_scans FOR EACH ROW "
        f"WHEN ({changed}) EXECUTE FUNCTION gatehouse_count_changed_scan()"
    )
    op.execute(BACKFILL)


def downgrade() -> None:
    op.execute("DROP TRIGGER count_changed_scan ON ticket_scans")
    op.execute("DROP TRIGGER count_new_scans ON ticket_scans")
    op.execute("DROP FUNCTION gatehouse_recount_scans(uuid)")
    op.execute("DROP FUNCTION gatehouse_count_changed_scan()")
    op.execute("DROP FUNCTION gatehouse_count_new_scans()")
    op.execute("DROP FUNCTION gatehouse_count_scans(ticket_scans[], ticket_scans[])")
    for table in reversed(TABLES):
        op.drop_table(table)
