"""Initial schema: tenants, events, tickets and their history, scans, devices, keys,
idempotency keys, outbox, chain bookkeeping; row-level security and the application role.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)

# Tables whose rows belong to one tenant: RLS forced, policy on tenant_id.
TENANT_TABLES = (
    "events",
    "ticket_types",
    "tickets",
    "ticket_state_transitions",
    "devices",
    "device_enrollments",
    "ticket_scans",
    "keys",
    "idempotency_keys",
    "outbox",
    "pending_transactions",
    "blockchain_sync",
)
# What the application may do per table; history is append-only for it.
GRANTS = {
    "tenants": "SELECT",
    "events": "SELECT, INSERT, UPDATE",
    "ticket_types": "SELECT, INSERT, UPDATE",
    "tickets": "SELECT, INSERT, UPDATE",
    "ticket_state_transitions": "SELECT, INSERT",
    "devices": "SELECT, INSERT, UPDATE",
    "device_enrollments": "SELECT, INSERT, UPDATE",
    "ticket_scans": "SELECT, INSERT, UPDATE",
    "keys": "SELECT, INSERT, UPDATE",
    "idempotency_keys": "SELECT, INSERT, UPDATE",
    "outbox": "SELECT, INSERT, UPDATE",
    "pending_transactions": "SELECT, INSERT, UPDATE",
    "blockchain_sync": "SELECT, INSERT",
}


def _app_role() -> str:
    role = context.config.attributes.get("app_role", "gatehouse_app")
    if not str(role).replace("_", "").isalnum():
        raise ValueError(f"unsafe role name {role!r}")
    return str(role)


def _id() -> sa.Column[object]:
    return sa.Column("id", UUID(as_uuid=True), primary_key=True)


def _tenant() -> sa.Column[object]:
    return sa.Column("tenant_id", UUID(as_uuid=True), sa.ForeignKey("tenants.id"), nullable=False)


def _fk(name: str, table: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, UUID(as_uuid=True), sa.ForeignKey(f"{table}.id"), nullable=nullable)


def _created(name: str = "created_at") -> sa.Column[object]:
    return sa.Column(name, TS, server_default=sa.func.now(), nullable=False)


def _text(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.Text, nullable=nullable)


def upgrade() -> None:
    op.create_table("tenants", _id(), _text("name"), _created())
    op.create_table(
        "events",
        _id(),
        _tenant(),
        _text("name"),
        _text("venue"),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("admission_opens_at", TS, nullable=True),
        sa.Column("allow_reentry", sa.Boolean, server_default=sa.false(), nullable=False),
        _created(),
        sa.CheckConstraint("ends_at > starts_at", name="ends_after_start"),
    )
    op.create_table(
        "ticket_types",
        _id(),
        _tenant(),
        _fk("event_id", "events"),
        _text("name"),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("sold", sa.Integer, server_default="0", nullable=False),
        _created(),
        sa.CheckConstraint("capacity >= 0", name="capacity_not_negative"),
        # The last line of defence against overselling: the database refuses it.
        sa.CheckConstraint("sold >= 0 AND sold <= capacity", name="sold_within_capacity"),
        sa.UniqueConstraint("event_id", "name", name="uq_ticket_types_event_id_name"),
    )
    op.create_table(
        "tickets",
        _id(),
        _tenant(),
        _fk("event_id", "events"),
        _fk("ticket_type_id", "ticket_types"),
        sa.Column("purchase_id", UUID(as_uuid=True), nullable=False),
        _text("user_id"),
        _text("holder_name"),
        _text("holder_wallet", nullable=True),
        _text("status"),
        sa.Column("secret_version", sa.Integer, server_default="0", nullable=False),
        _text("nft_mint", nullable=True),
        sa.Column("blockchain_sync_status", sa.Text, server_default="not_minted", nullable=False),
        _created(),
        _created("updated_at"),
        sa.CheckConstraint(
            "status IN ('active', 'checked_in', 'revoked', 'expired')", name="known_status"
        ),
        sa.CheckConstraint("secret_version >= 0", name="secret_version_not_negative"),
    )
    op.create_index("ix_tickets_event_id_status_id", "tickets", ["event_id", "status", "id"])
    op.create_index("ix_tickets_purchase_id", "tickets", ["purchase_id"])
    op.create_table(
        "ticket_state_transitions",
        _id(),
        _tenant(),
        _fk("ticket_id", "tickets"),
        _text("kind"),
        _text("from_status", nullable=True),
        _text("to_status"),
        sa.Column("secret_version", sa.Integer, nullable=False),
        _text("actor"),
        _text("reason", nullable=True),
        sa.Column("details", JSONB, server_default="{}", nullable=False),
        _created("occurred_at"),
    )
    op.create_table(
        "devices",
        _id(),
        _tenant(),
        _fk("event_id", "events"),
        _text("gate"),
        _text("name"),
        _created(),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("last_seen_at", TS, nullable=True),
    )
    op.create_table(
        "device_enrollments",
        _id(),
        _tenant(),
        _fk("event_id", "events"),
        _text("gate"),
        sa.Column("code_hash", sa.LargeBinary, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        _text("created_by"),
        _created(),
        sa.Column("used_at", TS, nullable=True),
        _fk("device_id", "devices", nullable=True),
        sa.UniqueConstraint("code_hash", name="uq_device_enrollments_code_hash"),
    )
    op.create_table(
        "ticket_scans",
        _id(),
        _tenant(),
        _fk("ticket_id", "tickets", nullable=True),
        _fk("event_id", "events"),
        _fk("device_id", "devices", nullable=True),
        _text("scanned_by"),
        _text("gate"),
        _text("direction"),
        _text("result"),
        _text("reason", nullable=True),
        sa.Column("scanned_at", TS, nullable=False),
        _created("received_at"),
        _fk("conflict_of", "ticket_scans", nullable=True),
        sa.CheckConstraint("direction IN ('entry', 'exit')", name="known_direction"),
        sa.CheckConstraint("result IN ('admitted', 'rejected')", name="known_result"),
    )
    op.create_table(
        "keys",
        _id(),
        _tenant(),
        _fk("event_id", "events"),
        _text("kind"),
        sa.Column("key_id", sa.BigInteger, nullable=False),
        sa.Column("public_material", sa.LargeBinary, nullable=True),
        sa.Column("sealed_material", sa.LargeBinary, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        _created(),
        sa.Column("retired_at", TS, nullable=True),
        sa.CheckConstraint("kind IN ('signing', 'encryption')", name="known_kind"),
        sa.CheckConstraint("key_id BETWEEN 0 AND 4294967295", name="key_id_is_uint32"),
        sa.UniqueConstraint("event_id", "kind", "key_id", name="uq_keys_event_id_kind_key_id"),
    )
    # At most one active key of each kind per event.
    op.create_index(
        "ix_keys_one_active",
        "keys",
        ["event_id", "kind"],
        unique=True,
        postgresql_where=sa.text("active"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", UUID(as_uuid=True), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("principal", sa.Text, primary_key=True),
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("request_hash", sa.LargeBinary, nullable=False),
        sa.Column("response_status", sa.Integer, nullable=True),
        sa.Column("response_body", JSONB, nullable=True),
        _created(),
    )
    op.create_table(
        "outbox",
        _id(),
        _tenant(),
        _text("routing_key"),
        sa.Column("ticket_id", UUID(as_uuid=True), nullable=True),
        sa.Column("payload", JSONB, nullable=False),
        _created(),
        sa.Column("sent_at", TS, nullable=True),
        sa.Column("attempts", sa.Integer, server_default="0", nullable=False),
    )
    op.create_index(
        "ix_outbox_unsent", "outbox", ["created_at"], postgresql_where=sa.text("sent_at IS NULL")
    )
    op.create_table(
        "pending_transactions",
        _id(),
        _tenant(),
        _fk("ticket_id", "tickets"),
        _text("tx_signature", nullable=True),
        _text("status"),
        sa.Column("submitted_at", TS, nullable=True),
        sa.Column("confirmed_at", TS, nullable=True),
        sa.Column("confirmation_count", sa.Integer, server_default="0", nullable=False),
    )
    op.create_table(
        "blockchain_sync",
        _id(),
        _tenant(),
        _fk("ticket_id", "tickets", nullable=True),
        _text("signature", nullable=True),
        sa.Column("slot", sa.BigInteger, nullable=True),
        _text("kind"),
        sa.Column("details", JSONB, server_default="{}", nullable=False),
        _created("processed_at"),
    )
    for table in TENANT_TABLES:
        if table != "idempotency_keys":  # there tenant_id leads the primary key
            # lock-reviewed: every table here is created by this revision, empty
            op.create_index(f"ix_{table}_tenant_id", table, ["tenant_id"])
    for table in ("ticket_types", "ticket_state_transitions", "ticket_scans"):
        column = "event_id" if table == "ticket_types" else "ticket_id"
        # lock-reviewed: every table here is created by this revision, empty
        op.create_index(f"ix_{table}_{column}", table, [column])
    _security()


def _security() -> None:
    role = _app_role()
    op.execute(
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
            END IF;
        END $$
        """
    )
    # The tenant of the current transaction, set by the application with
    # set_config('gatehouse.tenant_id', ..., true). Unset means no tenant: policies match nothing.
    op.execute(
        """
        CREATE FUNCTION gatehouse_current_tenant() RETURNS uuid
        LANGUAGE sql STABLE AS
        $$ SELECT NULLIF(current_setting('gatehouse.tenant_id', true), '')::uuid $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    op.execute(f"GRANT EXECUTE ON FUNCTION gatehouse_current_tenant() TO {role}")
    for table, privileges in GRANTS.items():
        op.execute(f"GRANT {privileges} ON {table} TO {role}")
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            "USING (tenant_id = gatehouse_current_tenant()) "
            "WITH CHECK (tenant_id = gatehouse_current_tenant())"
        )
    # The tenant registry: the application sees only its own tenant row. Not FORCEd, so the
    # owner (migrations, `tenant create`, the functions below) sees all tenants.
    op.execute("ALTER TABLE tenants ENABLE ROW LEVEL SECURITY")
    op.execute("CREATE POLICY own_tenant ON tenants USING (id = gatehouse_current_tenant())")
    # An enrolling device knows only its one-time code, not its tenant: it may see the single
    # enrollment row whose hash it presents (set_config('gatehouse.enrollment_code_hash', hex)).
    op.execute(
        "CREATE POLICY redeem_by_code ON device_enrollments FOR SELECT USING ("
        "code_hash = decode(NULLIF(current_setting('gatehouse.enrollment_code_hash', true), ''),"
        " 'hex'))"
    )
    # Jobs that run for every tenant (expiry) list tenants through this definer function.
    op.execute(
        """
        CREATE FUNCTION gatehouse_tenant_ids() RETURNS SETOF uuid
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS
        $$ SELECT id FROM tenants ORDER BY id $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION gatehouse_tenant_ids() FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION gatehouse_tenant_ids() TO {role}")


def downgrade() -> None:
    role = _app_role()
    op.execute("DROP FUNCTION IF EXISTS gatehouse_tenant_ids()")
    for table in (
        "blockchain_sync",
        "pending_transactions",
        "outbox",
        "idempotency_keys",
        "keys",
        "ticket_scans",
        "device_enrollments",
        "devices",
        "ticket_state_transitions",
        "tickets",
        "ticket_types",
        "events",
        "tenants",
    ):
        op.drop_table(table)
    op.execute(f"REVOKE ALL ON SCHEMA public FROM {role}")
    op.execute("DROP FUNCTION IF EXISTS gatehouse_current_tenant()")
    # The role is cluster-wide and may serve other databases: it stays.
