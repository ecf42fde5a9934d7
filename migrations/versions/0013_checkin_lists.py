"""Check-in lists, event days and zones (issue 16).

* ``checkin_lists``: an event's lists (docs/checkin-lists.md) — the ticket types they admit and
  the gates that scan them (JSON arrays of text, as devices and the API name them), their time
  windows (JSON), re-entry policy, zone, JSON Logic rule, and ``archived_at`` for a list with
  scans that was deleted (it stays in the setup so that scans still name it, and decides
  nothing). Row-level security like every tenant table.
* ``events.time_zone`` (IANA name, 'UTC' by default) and ``events.days`` (JSON: EventDayIn's
  fields); ``ticket_types.days`` (JSON: the ISO dates it admits, empty for every day).
* ``events.setup_version``: grows with every change to the event's access setup — its lists,
  days, time zone, its ticket types' names and days — by the triggers below, in the
  transaction of the change itself, so no write path can forget it. The changes feed sends the
  setup to a device whose version differs; the check-in caches an event's plan by it.
* ``ticket_scans.checkin_list_id`` and ``zone``: the list an admission counted on and its zone.
  No foreign key (0012 dropped them from this table for speed): the id is only ever written by
  the admission, from the event's lists it just read in the same transaction, and lists are
  never deleted once they have scans (they are archived instead).
* ``gatehouse_checkin_ticket`` (0011) returns the event's ``setup_version`` too, and each scan
  of its history carries its ``checkin_list_id`` and ``zone``.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _role() -> str:
    role = str(context.config.attributes.get("app_role", "gatehouse_app"))
    if not role.replace("_", "").isalnum():
        raise ValueError(f"unsafe role name {role!r}")
    return role


def _checkin_ticket(*, with_setup: bool) -> str:
    setup_column = ", setup_version bigint" if with_setup else ""
    setup_value = ", e.setup_version" if with_setup else ""
    scan_fields = (
        ",\n                           'checkin_list_id', s.checkin_list_id, 'zone', s.zone"
        if with_setup
        else ""
    )
    return f"""
        CREATE FUNCTION gatehouse_checkin_ticket(ticket uuid)
        RETURNS TABLE (
            id uuid, tenant_id uuid, event_id uuid, ticket_type_id uuid, purchase_id uuid,
            user_id text, status text, secret_version integer, holder_name text,
            holder_wallet text, nft_mint text, blockchain_sync_status text, ticket_type text,
            allow_reentry boolean, admission_opens_at timestamptz, ends_at timestamptz
            {setup_column}, history jsonb
        )
        LANGUAGE plpgsql VOLATILE AS $$
        #variable_conflict use_column
        DECLARE
            found_status text;
        BEGIN
            SELECT t.status INTO found_status FROM tickets t WHERE t.id = ticket FOR UPDATE;
            IF NOT FOUND THEN
                RETURN;
            END IF;
            RETURN QUERY
            SELECT t.id, t.tenant_id, t.event_id, t.ticket_type_id, t.purchase_id,
                   t.user_id::text, t.status::text, t.secret_version, t.holder_name::text,
                   t.holder_wallet::text, t.nft_mint::text, t.blockchain_sync_status::text,
                   tt.name::text, e.allow_reentry, e.admission_opens_at, e.ends_at
                   {setup_value},
                   CASE WHEN t.status <> 'active' THEN (
                       SELECT coalesce(jsonb_agg(jsonb_build_object(
                           'id', s.id, 'ticket_id', s.ticket_id, 'scanned_at', s.scanned_at,
                           'direction', s.direction, 'gate', s.gate, 'device_id', s.device_id,
                           'conflict_of', s.conflict_of,
                           'online', s.device_scanned_at IS NULL{scan_fields})), '[]'::jsonb)
                       FROM ticket_scans s
                       WHERE s.ticket_id = t.id AND s.result = 'admitted'
                             AND s.annulled_at IS NULL)
                   END
            FROM tickets t
            JOIN events e ON e.id = t.event_id
            JOIN ticket_types tt ON tt.id = t.ticket_type_id
            WHERE t.id = ticket;
        END $$
        """


def upgrade() -> None:
    role = _role()
    op.add_column("events", sa.Column("time_zone", sa.Text, server_default="UTC", nullable=False))
    op.add_column(
        "events", sa.Column("days", JSONB, server_default=sa.text("'[]'::jsonb"), nullable=False)
    )
    op.add_column(
        "events", sa.Column("setup_version", sa.BigInteger, server_default="1", nullable=False)
    )
    op.add_column(
        "ticket_types",
        sa.Column("days", JSONB, server_default=sa.text("'[]'::jsonb"), nullable=False),
    )
    op.add_column("ticket_scans", sa.Column("checkin_list_id", UUID(as_uuid=True), nullable=True))
    op.add_column("ticket_scans", sa.Column("zone", sa.Text, nullable=True))
    op.create_table(
        "checkin_lists",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("tenant_id", UUID(as_uuid=True), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("event_id", UUID(as_uuid=True), sa.ForeignKey("events.id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("ticket_type_ids", JSONB, nullable=False),
        sa.Column("gates", JSONB, nullable=False),
        sa.Column("zone", sa.Text, nullable=True),
        sa.Column("allow_reentry", sa.Boolean, nullable=True),
        sa.Column("allow_multiple_entries", sa.Boolean, server_default=sa.false(), nullable=False),
        sa.Column("windows", JSONB, nullable=False),
        sa.Column("rules", JSONB, nullable=True),
        sa.Column("explanation", sa.Text, nullable=True),
        sa.Column("archived_at", TS, nullable=True),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_checkin_lists_tenant_id", "checkin_lists", ["tenant_id"])
    op.create_index("ix_checkin_lists_event_id", "checkin_lists", ["event_id"])
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON checkin_lists TO {role}")
    op.execute("ALTER TABLE checkin_lists ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE checkin_lists FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON checkin_lists "
        "USING (tenant_id = gatehouse_current_tenant()) "
        "WITH CHECK (tenant_id = gatehouse_current_tenant())"
    )
    # The setup version: bumped in the changing transaction, as the changing role (SECURITY
    # INVOKER: row-level security applies to the event's update as to any other statement).
    op.execute(
        """
        CREATE FUNCTION gatehouse_bump_event_setup() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_TABLE_NAME = 'events' THEN
                NEW.setup_version := OLD.setup_version + 1;
                RETURN NEW;
            END IF;
            UPDATE events SET setup_version = setup_version + 1
            WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.event_id ELSE NEW.event_id END;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER setup_changed BEFORE UPDATE OF time_zone, days, allow_reentry, "
        "starts_at, ends_at, admission_opens_at ON events FOR EACH ROW "
        "WHEN (OLD.time_zone IS DISTINCT FROM NEW.time_zone OR OLD.days IS DISTINCT FROM NEW.days"
        " OR OLD.allow_reentry IS DISTINCT FROM NEW.allow_reentry"
        " OR OLD.starts_at IS DISTINCT FROM NEW.starts_at"
        " OR OLD.ends_at IS DISTINCT FROM NEW.ends_at"
        " OR OLD.admission_opens_at IS DISTINCT FROM NEW.admission_opens_at) "
        "EXECUTE FUNCTION gatehouse_bump_event_setup()"
    )
    op.execute(
        "CREATE TRIGGER setup_changed AFTER INSERT OR DELETE ON ticket_types "
        "FOR EACH ROW EXECUTE FUNCTION gatehouse_bump_event_setup()"
    )
    op.execute(
        "CREATE TRIGGER setup_changed_update AFTER UPDATE OF name, days ON ticket_types "
        "FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name OR OLD.days IS DISTINCT FROM "
        "NEW.days) EXECUTE FUNCTION gatehouse_bump_event_setup()"
    )
    op.execute(
        "CREATE TRIGGER setup_changed AFTER INSERT OR UPDATE OR DELETE ON checkin_lists "
        "FOR EACH ROW EXECUTE FUNCTION gatehouse_bump_event_setup()"
    )
    op.execute("DROP FUNCTION gatehouse_checkin_ticket(uuid)")
    op.execute(_checkin_ticket(with_setup=True))
    op.execute(f"GRANT EXECUTE ON FUNCTION gatehouse_checkin_ticket(uuid) TO {role}")


def downgrade() -> None:
    role = _role()
    op.execute("DROP FUNCTION gatehouse_checkin_ticket(uuid)")
    op.execute(_checkin_ticket(with_setup=False))
    op.execute(f"GRANT EXECUTE ON FUNCTION gatehouse_checkin_ticket(uuid) TO {role}")
    op.execute("DROP TRIGGER setup_changed ON checkin_lists")
    op.execute("DROP TRIGGER setup_changed_update ON ticket_types")
    op.execute("DROP TRIGGER setup_changed ON ticket_types")
    op.execute("DROP TRIGGER setup_changed ON events")
    op.drop_table("checkin_lists")
    op.execute("DROP FUNCTION gatehouse_bump_event_setup()")
    op.drop_column("ticket_scans", "zone")
    op.drop_column("ticket_scans", "checkin_list_id")
    op.drop_column("ticket_types", "days")
    op.drop_column("events", "setup_version")
    op.drop_column("events", "days")
    op.drop_column("events", "time_zone")
