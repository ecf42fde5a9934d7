"""Check-in and offline sync: scan details (device time, clock offset, offline verdicts,
conflicts, annulment), and the change sequence behind the scanners' changes feed.

The change sequence is assigned *after* commit: writes leave ``change_seq`` NULL (a trigger
clears it on every insert and update), and ``gatehouse_sequence_changes`` numbers the committed
pending rows in one transaction under an advisory lock. Numbers therefore become visible in
increasing order, so a reader that has seen everything up to N will never later find a new row
numbered below N — which a sequence drawn at write time cannot promise when transactions commit
out of order.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
FEED_TABLES = {"tickets": "updated_at", "ticket_scans": "received_at", "keys": "created_at"}


def _app_role() -> str:
    role = str(context.config.attributes.get("app_role", "gatehouse_app"))
    if not role.replace("_", "").isalnum():
        raise ValueError(f"unsafe role name {role!r}")
    return role


def upgrade() -> None:
    role = _app_role()
    op.add_column("ticket_scans", sa.Column("device_scanned_at", TS, nullable=True))
    op.add_column(
        "ticket_scans",
        sa.Column("clock_offset_ms", sa.Integer, server_default="0", nullable=False),
    )
    op.add_column(
        "ticket_scans", sa.Column("offline", sa.Boolean, server_default=sa.false(), nullable=False)
    )
    op.add_column("ticket_scans", sa.Column("device_result", sa.Text, nullable=True))
    op.add_column("ticket_scans", sa.Column("device_reason", sa.Text, nullable=True))
    op.add_column("ticket_scans", sa.Column("server_reason", sa.Text, nullable=True))
    op.add_column("ticket_scans", sa.Column("code_secret_version", sa.Integer, nullable=True))
    op.add_column("ticket_scans", sa.Column("annulled_at", TS, nullable=True))
    op.add_column("ticket_scans", sa.Column("annulled_by", sa.Text, nullable=True))
    # lock-reviewed: from before the previous release (0015): it runs only on a new, empty database
    #   or an install older than it; not a pattern for new revisions
    op.create_index(
        "ix_ticket_scans_event_id_scanned_at", "ticket_scans", ["event_id", "scanned_at"]
    )
    # lock-reviewed: from before the previous release (0015): it runs only on a new, empty database
    #   or an install older than it; not a pattern for new revisions
    op.create_index(
        "ix_ticket_scans_ticket_id_scanned_at", "ticket_scans", ["ticket_id", "scanned_at"]
    )

    op.execute("CREATE SEQUENCE gatehouse_changes")
    op.execute(f"GRANT USAGE, SELECT ON SEQUENCE gatehouse_changes TO {role}")
    op.execute(
        """
        CREATE FUNCTION gatehouse_clear_change_seq() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- Any write makes the row pending again; only the sequencer sets a number.
            IF TG_OP = 'INSERT' OR NEW.change_seq IS NOT DISTINCT FROM OLD.change_seq THEN
                NEW.change_seq := NULL;
            END IF;
            RETURN NEW;
        END $$
        """
    )
    for table, pending_order in FEED_TABLES.items():
        op.add_column(table, sa.Column("change_seq", sa.BigInteger, nullable=True))
        # lock-reviewed: from before the previous release (0015): it runs only on a new, empty
        #   database or an install older than it; not a pattern for new revisions
        op.create_index(f"ix_{table}_event_id_change_seq", table, ["event_id", "change_seq"])
        # lock-reviewed: from before the previous release (0015): it runs only on a new, empty
        #   database or an install older than it; not a pattern for new revisions
        op.create_index(
            f"ix_{table}_pending",
            table,
            [pending_order],
            postgresql_where=sa.text("change_seq IS NULL"),
        )
        op.execute(
            f"CREATE TRIGGER {table}_pending_change BEFORE INSERT OR UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION gatehouse_clear_change_seq()"
        )
    statements = "\n".join(
        f"""
            WITH pending AS (
                SELECT id FROM {table} WHERE change_seq IS NULL
                ORDER BY {order}, id LIMIT max_rows FOR UPDATE SKIP LOCKED
            )
            UPDATE {table} AS t SET change_seq = nextval('gatehouse_changes')
            FROM pending WHERE t.id = pending.id;
            GET DIAGNOSTICS n = ROW_COUNT;
            numbered := numbered + n;"""
        for table, order in FEED_TABLES.items()
    )
    op.execute(
        f"""
        CREATE FUNCTION gatehouse_sequence_changes(max_rows integer) RETURNS integer
        LANGUAGE plpgsql AS $$
        DECLARE
            numbered integer := 0;
            n integer;
        BEGIN
            -- One sequencer per tenant at a time; a caller that finds it busy goes on reading
            -- (whatever the busy one numbers will have higher numbers than anything seen now).
            IF NOT pg_try_advisory_xact_lock(
                hashtext('gatehouse.changes'),
                hashtext(coalesce(current_setting('gatehouse.tenant_id', true), ''))
            ) THEN
                RETURN -1;
            END IF;
            {statements}
            RETURN numbered;
        END $$
        """
    )
    op.execute(f"GRANT EXECUTE ON FUNCTION gatehouse_sequence_changes(integer) TO {role}")


def downgrade() -> None:
    op.execute("DROP FUNCTION gatehouse_sequence_changes(integer)")
    for table in FEED_TABLES:
        op.execute(f"DROP TRIGGER {table}_pending_change ON {table}")
        op.drop_index(f"ix_{table}_pending", table)
        op.drop_index(f"ix_{table}_event_id_change_seq", table)
        op.drop_column(table, "change_seq")
    op.execute("DROP FUNCTION gatehouse_clear_change_seq()")
    op.execute("DROP SEQUENCE gatehouse_changes")
    op.drop_index("ix_ticket_scans_ticket_id_scanned_at", "ticket_scans")
    op.drop_index("ix_ticket_scans_event_id_scanned_at", "ticket_scans")
    for column in (
        "annulled_by",
        "annulled_at",
        "code_secret_version",
        "server_reason",
        "device_reason",
        "device_result",
        "offline",
        "clock_offset_ms",
        "device_scanned_at",
    ):
        op.drop_column("ticket_scans", column)
