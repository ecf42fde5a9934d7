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
statement-level trigger: a statement of up to ``FEW`` rows (an online check-in writes one) a
row at a time, by plain statements on variables whose plans plpgsql keeps (a query on a
trigger's transition table is planned anew on every call: about 25 µs here, a set-based one
with GROUP BY far more — the first version of these triggers cost 0.5–0.9 ms per online
admission that way); a larger one (an upload's batch of up to 1,000) set-based, in one pass
over its transition table rather than 1,000 trigger calls. An update is counted by a row-level
trigger whose ``WHEN`` lets through only changes of what is counted (an annulment, a conflict
found or lifted): the changes feed's sequencer, which renumbers scans by the ten thousand,
never fires it. Every row of the three tables also carries a ``shard``: the writing connection's
backend pid. Two transactions on different connections therefore never add to the same row —
two gates' scanners (or fifty clients of one gate) never queue behind one counter row's lock
until commit, and no two writers can deadlock on counters however their statements interleave
(a shared shard could: an upload's insert and its conflict updates touch counter rows in two
statements). Readers sum the shards; a key has as many rows as connections wrote to it.

Who is inside is worked out only for the tickets a statement touched, with one index look-up
each (``ix_ticket_scans_ticket_id_scanned_at``): the ticket's latest standing scans, as many
as the statement wrote and one more — the first is where it is now, the first the statement
did not write (or the version an update replaced, if later) where it was — and only when it
may have moved (an insert that is not the ticket's latest scan moves nothing). The ticket is
locked by the admission that writes it, so no two transactions count one ticket at once.

``gatehouse_recount_scans(event)`` counts an event from scratch (the owner's tool: after
writing scans with triggers off, as the console benchmark's seeding does, or to check the
counts; a test holds the triggers to it). The upgrade counts every existing event with it,
tenant by tenant, so the row-level security of a non-superuser owner sees each tenant's rows.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import UUID

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


# The counting rules, on a row ``r`` of ticket_scans (``ScanLog``'s ADMISSION, REJECTION,
# CONFLICT, ANNULLED, COUNTED_EXIT; STANDING: what decides who is inside), written once and
# used by the triggers (set-based and one row at a time) and by the recount.
def _rules(r: str) -> dict[str, str]:
    return {
        # A double entry a manager accepted (migration 0019) stands as an admission.
        "admission": f"({r}.direction = 'entry' AND {r}.result = 'admitted'"
        f" AND ({r}.conflict_of IS NULL OR {r}.conflict_resolution = 'accepted')"
        f" AND {r}.annulled_at IS NULL)",
        "rejection": f"({r}.result = 'rejected')",
        "conflict": f"({r}.conflict_of IS NOT NULL AND {r}.annulled_at IS NULL"
        f" AND {r}.conflict_resolved_at IS NULL)",
        "annulled": f"({r}.annulled_at IS NOT NULL)",
        "exit": f"({r}.direction = 'exit' AND {r}.result = 'admitted' AND {r}.annulled_at IS NULL)",
        "standing": f"({r}.ticket_id IS NOT NULL AND {r}.result = 'admitted'"
        f" AND {r}.annulled_at IS NULL AND ({r}.direction = 'exit' OR {r}.conflict_of IS NULL"
        f" OR {r}.conflict_resolution = 'accepted'))",
        "minute": (
            f"date_bin(INTERVAL '1 minute', {r}.scanned_at, TIMESTAMPTZ '2000-01-01T00:00:00Z')"
        ),
        "reason": (f"CASE WHEN {r}.result = 'rejected' THEN coalesce({r}.reason, '') ELSE '' END"),
    }


R = _rules("r")
S = _rules("s")
COUNTS = ("admission", "rejection", "conflict", "annulled", "exit")


def _n(rule: str) -> str:
    """How many of the rows ``r`` meet ``rule`` (set-based)."""
    return f"count(*) FILTER (WHERE {R[rule]})"


# --- one row version at a time: an update's old (-1) and new (+1) versions, and inserts of a
# few rows (one, for an online check-in). Plain statements on plpgsql variables, whose plans
# are kept: a query on a trigger's transition table is planned again on every call (about
# 25 µs here), a set-based statement with GROUP BY much more.

ROW_COUNTS = """
INSERT INTO gate_counts AS c (tenant_id, event_id, gate, reason, shard, admitted, rejected,
                              conflicts, annulled, exits, last_scan_at)
VALUES ({r}.tenant_id, {r}.event_id, {r}.gate, {reason}, writer,
        CASE WHEN {admission} THEN {sign} ELSE 0 END,
        CASE WHEN {rejection} THEN {sign} ELSE 0 END,
        CASE WHEN {conflict} THEN {sign} ELSE 0 END,
        CASE WHEN {annulled} THEN {sign} ELSE 0 END,
        CASE WHEN {exit} THEN {sign} ELSE 0 END,
        CASE WHEN {sign} > 0 THEN {r}.scanned_at END)
ON CONFLICT (event_id, gate, reason, shard) DO UPDATE SET
    admitted = c.admitted + excluded.admitted,
    rejected = c.rejected + excluded.rejected,
    conflicts = c.conflicts + excluded.conflicts,
    annulled = c.annulled + excluded.annulled,
    exits = c.exits + excluded.exits,
    last_scan_at = greatest(c.last_scan_at, excluded.last_scan_at);
IF {admission} OR {rejection} THEN
    INSERT INTO gate_minutes AS m (tenant_id, event_id, minute, gate, shard, admitted, rejected)
    VALUES ({r}.tenant_id, {r}.event_id, {minute}, {r}.gate, writer,
            CASE WHEN {admission} THEN {sign} ELSE 0 END,
            CASE WHEN {rejection} THEN {sign} ELSE 0 END)
    ON CONFLICT (event_id, minute, gate, shard) DO UPDATE SET
        admitted = m.admitted + excluded.admitted,
        rejected = m.rejected + excluded.rejected;
END IF;
"""


def _row_counts(r: str, sign: str) -> str:
    rules = _rules(r)
    return ROW_COUNTS.format(r=r, sign=sign, **rules)


# Where one ticket is after the statement (its latest standing scan) and where it was before:
# the latest standing scan the statement did not write (``new_ids``), or the version an
# update replaced (``old_version``), whichever is later. Only when the statement may have
# moved it: an insert that is not the ticket's latest moves nothing.
PRESENCE = """
<<presence>>
DECLARE
    x ticket_scans;
    first boolean := true;
BEGIN
    now_at := NULL;
    was := NULL;
    -- The ticket's latest standing scans, newest first: as many as the statement wrote, and
    -- one more — the first is where it is now, the first the statement did not write is where
    -- it was before (one index look-up for both).
    FOR x IN
        SELECT s.* FROM ticket_scans s
        WHERE s.tenant_id = {tenant} AND s.ticket_id = {ticket} AND {standing}
        ORDER BY s.scanned_at DESC, s.id DESC
        LIMIT cardinality({new_ids}) + 1
    LOOP
        IF first THEN
            now_at := x;
            first := false;
            -- An insert that is not the ticket's latest scan moves nothing.
            EXIT presence WHEN {old}.id IS NULL AND NOT x.id = ANY ({new_ids});
        END IF;
        IF NOT x.id = ANY ({new_ids}) THEN
            was := x;
            EXIT;
        END IF;
    END LOOP;
    EXIT presence WHEN first AND {old}.id IS NULL;
    IF {old}.ticket_id = {ticket} AND {old_standing}
       AND (was.id IS NULL OR ({old}.scanned_at, {old}.id) > (was.scanned_at, was.id)) THEN
        was := {old};
    END IF;
    EXIT presence WHEN now_at.direction = 'entry' AND was.direction = 'entry'
        AND now_at.event_id = was.event_id
        AND coalesce(now_at.zone, '') = coalesce(was.zone, '');
    IF now_at.direction = 'entry' THEN
        INSERT INTO zone_counts AS z (tenant_id, event_id, zone, shard, inside)
        VALUES (now_at.tenant_id, now_at.event_id, coalesce(now_at.zone, ''), writer, 1)
        ON CONFLICT (event_id, zone, shard) DO UPDATE SET inside = z.inside + 1;
    END IF;
    IF was.direction = 'entry' THEN
        INSERT INTO zone_counts AS z (tenant_id, event_id, zone, shard, inside)
        VALUES (was.tenant_id, was.event_id, coalesce(was.zone, ''), writer, -1)
        ON CONFLICT (event_id, zone, shard) DO UPDATE SET inside = z.inside - 1;
    END IF;
END;
"""


def _presence(ticket: str, new_ids: str, old: str) -> str:
    """``ticket``: the ticket id's expression (``scan.ticket_id``); its tenant is the same
    row's ``tenant_id`` — named in the look-up, so the index on (tenant_id, ticket_id, ...)
    serves it with or without row-level security (migration 0024)."""
    return PRESENCE.format(
        ticket=ticket,
        tenant=ticket.removesuffix("ticket_id") + "tenant_id",
        new_ids=new_ids,
        old=old,
        standing=S["standing"],
        old_standing=_rules(old)["standing"],
    )


ROW_VARIABLES = """
    -- This connection's own counter rows: no other transaction waits for their locks.
    writer integer := pg_backend_pid();
    now_at ticket_scans;
    was ticket_scans;
"""

# --- a batch (an upload): set-based over the statement's transition table ``new_scans``.

BULK_COUNTS = f"""
INSERT INTO gate_counts AS c (tenant_id, event_id, gate, reason, shard, admitted, rejected,
                              conflicts, annulled, exits, last_scan_at)
SELECT r.tenant_id, r.event_id, r.gate, {R["reason"]}, writer,
       {", ".join(_n(rule) for rule in COUNTS)}, max(r.scanned_at)
FROM new_scans r
GROUP BY r.tenant_id, r.event_id, r.gate, {R["reason"]}
ORDER BY r.event_id, r.gate, {R["reason"]}
ON CONFLICT (event_id, gate, reason, shard) DO UPDATE SET
    admitted = c.admitted + excluded.admitted,
    rejected = c.rejected + excluded.rejected,
    conflicts = c.conflicts + excluded.conflicts,
    annulled = c.annulled + excluded.annulled,
    exits = c.exits + excluded.exits,
    last_scan_at = greatest(c.last_scan_at, excluded.last_scan_at);

INSERT INTO gate_minutes AS m (tenant_id, event_id, minute, gate, shard, admitted, rejected)
SELECT r.tenant_id, r.event_id, {R["minute"]}, r.gate, writer, {_n("admission")}, {_n("rejection")}
FROM new_scans r
WHERE {R["admission"]} OR {R["rejection"]}
GROUP BY r.tenant_id, r.event_id, {R["minute"]}, r.gate
ORDER BY r.event_id, {R["minute"]}, r.gate
ON CONFLICT (event_id, minute, gate, shard) DO UPDATE SET
    admitted = m.admitted + excluded.admitted,
    rejected = m.rejected + excluded.rejected;

WITH touched AS (
    SELECT r.tenant_id, r.ticket_id, array_agg(r.id) AS new_ids
    FROM new_scans r
    WHERE r.ticket_id IS NOT NULL AND r.result = 'admitted'
    GROUP BY r.tenant_id, r.ticket_id
), latest AS (
    -- Each ticket's latest standing scans: as many as the statement wrote and one more (one
    -- index look-up a ticket). The latest is where it is now; the latest the statement did
    -- not write is where it was.
    SELECT t.ticket_id, t.new_ids, l.*
    FROM touched t
    CROSS JOIN LATERAL (
        SELECT s.scanned_at, s.id, s.tenant_id, s.event_id, s.direction,
               coalesce(s.zone, '') AS zone
        FROM ticket_scans s
        WHERE s.tenant_id = t.tenant_id AND s.ticket_id = t.ticket_id AND {S["standing"]}
        ORDER BY s.scanned_at DESC, s.id DESC
        LIMIT cardinality(t.new_ids) + 1
    ) l
), now_at AS (
    SELECT * FROM (
        SELECT DISTINCT ON (ticket_id) *
        FROM latest
        ORDER BY ticket_id, scanned_at DESC, id DESC
    ) first
    WHERE id = ANY (new_ids)
), was AS (
    SELECT DISTINCT ON (l.ticket_id) l.tenant_id, l.event_id, l.direction, l.zone
    FROM latest l
    JOIN now_at n ON n.ticket_id = l.ticket_id
    WHERE NOT l.id = ANY (l.new_ids)
    ORDER BY l.ticket_id, l.scanned_at DESC, l.id DESC
), moves AS (
    SELECT tenant_id, event_id, zone, 1 AS d FROM now_at WHERE direction = 'entry'
    UNION ALL
    SELECT tenant_id, event_id, zone, -1 FROM was WHERE direction = 'entry'
)
INSERT INTO zone_counts AS z (tenant_id, event_id, zone, shard, inside)
SELECT tenant_id, event_id, zone, writer, sum(d)
FROM moves
GROUP BY tenant_id, event_id, zone
HAVING sum(d) <> 0
ORDER BY event_id, zone
ON CONFLICT (event_id, zone, shard) DO UPDATE SET inside = z.inside + excluded.inside;
"""

#: Up to this many rows an insert is counted a row at a time; more, set-based.
FEW = 4


def _indent(text: str, spaces: int) -> str:
    return "\n".join((" " * spaces + line) if line.strip() else line for line in text.splitlines())


INSERTED_TRIGGER_FUNCTION = f"""
CREATE FUNCTION gatehouse_count_new_scans() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
{ROW_VARIABLES}
    scan ticket_scans;
    no_version ticket_scans;  -- an insert replaces no version
    few ticket_scans[] := '{{}}';
    ids uuid[] := '{{}}';
    seen uuid[] := '{{}}';
BEGIN
    FOR scan IN SELECT * FROM new_scans LIMIT {FEW + 1} LOOP
        few := few || scan;
        ids := ids || scan.id;
    END LOOP;
    IF cardinality(few) > {FEW} THEN
{_indent(BULK_COUNTS, 8)}
        RETURN NULL;
    END IF;
    FOREACH scan IN ARRAY few LOOP
{_indent(_row_counts("scan", "1"), 8)}
        IF scan.ticket_id IS NOT NULL AND scan.result = 'admitted'
           AND NOT scan.ticket_id = ANY (seen) THEN
            seen := seen || scan.ticket_id;
{_indent(_presence("scan.ticket_id", "ids", "no_version"), 12)}
        END IF;
    END LOOP;
    RETURN NULL;
END $$
"""

CHANGED_TRIGGER_FUNCTION = f"""
CREATE FUNCTION gatehouse_count_changed_scan() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
{ROW_VARIABLES}
BEGIN
{_indent(_row_counts("OLD", "-1"), 4)}
{_indent(_row_counts("NEW", "1"), 4)}
    IF NEW.ticket_id IS NOT NULL AND (NEW.result = 'admitted' OR OLD.result = 'admitted') THEN
{_indent(_presence("NEW.ticket_id", "ARRAY[NEW.id]", "OLD"), 8)}
    END IF;
    IF OLD.ticket_id IS DISTINCT FROM NEW.ticket_id AND OLD.ticket_id IS NOT NULL
       AND OLD.result = 'admitted' THEN
{_indent(_presence("OLD.ticket_id", "ARRAY[NEW.id]", "OLD"), 8)}
    END IF;
    RETURN NULL;
END $$
"""

#: The columns whose change changes a count (the app changes only conflict_of, annulled_at
#: and a conflict's resolution; the rest are here so that no update can leave a count behind).
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
    "conflict_resolution",
    "conflict_resolved_at",
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
    SELECT r.tenant_id, r.event_id, r.gate, {R["reason"]}, 0,
           {", ".join(_n(rule) for rule in COUNTS)}, max(r.scanned_at)
    FROM ticket_scans r
    WHERE r.event_id = event
    GROUP BY r.tenant_id, r.event_id, r.gate, {R["reason"]};
    INSERT INTO gate_minutes (tenant_id, event_id, minute, gate, shard, admitted, rejected)
    SELECT r.tenant_id, r.event_id, {R["minute"]}, r.gate, 0, {_n("admission")}, {_n("rejection")}
    FROM ticket_scans r
    WHERE r.event_id = event AND ({R["admission"]} OR {R["rejection"]})
    GROUP BY r.tenant_id, r.event_id, {R["minute"]}, r.gate;
    INSERT INTO zone_counts (tenant_id, event_id, zone, shard, inside)
    SELECT tenant_id, event_id, zone, 0, count(*)
    FROM (
        SELECT DISTINCT ON (r.ticket_id) r.tenant_id, r.event_id, r.direction,
               coalesce(r.zone, '') AS zone
        FROM ticket_scans r
        WHERE r.event_id = event AND {R["standing"]}
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
    op.execute(INSERTED_TRIGGER_FUNCTION)
    op.execute(CHANGED_TRIGGER_FUNCTION)
    op.execute(RECOUNT_FUNCTION)
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
    for table in reversed(TABLES):
        op.drop_table(table)
