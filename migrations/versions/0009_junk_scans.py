"""Cost control (issue 14): uploaded scans whose code does not read are stored at most so many
a device and minute; ``junk_scans`` counts, per device and minute, those stored and those
only counted (``dropped``), so managers see what a device sent.

One row per device and minute in which it uploaded such a scan; row-level security like every
tenant table. The application may read, insert and update it. ``gatehouse_prune`` gains a third
argument and deletes the rows of minutes before it (the worker keeps 30 days).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import UUID

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _role(attribute: str, default: str) -> str:
    role = str(context.config.attributes.get(attribute, default))
    if not role.replace("_", "").isalnum():
        raise ValueError(f"unsafe role name {role!r}")
    return role


def upgrade() -> None:
    app_role = _role("app_role", "gatehouse_app")
    op.create_table(
        "junk_scans",
        sa.Column("tenant_id", UUID(as_uuid=True), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("device_id", UUID(as_uuid=True), sa.ForeignKey("devices.id"), primary_key=True),
        sa.Column("minute", TS, primary_key=True),
        sa.Column("stored", sa.Integer, nullable=False),
        sa.Column("dropped", sa.Integer, nullable=False),
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON junk_scans TO {app_role}")
    op.execute("ALTER TABLE junk_scans ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE junk_scans FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON junk_scans "
        "USING (tenant_id = gatehouse_current_tenant()) "
        "WITH CHECK (tenant_id = gatehouse_current_tenant())"
    )

    op.execute("DROP FUNCTION gatehouse_prune(timestamptz, timestamptz)")
    op.execute(_prune(junk=True))
    op.execute(
        "REVOKE ALL ON FUNCTION gatehouse_prune(timestamptz, timestamptz, timestamptz) FROM PUBLIC"
    )
    op.execute(
        "GRANT EXECUTE ON FUNCTION gatehouse_prune(timestamptz, timestamptz, timestamptz) "
        f"TO {app_role}"
    )


def downgrade() -> None:
    app_role = _role("app_role", "gatehouse_app")
    op.execute("DROP FUNCTION gatehouse_prune(timestamptz, timestamptz, timestamptz)")
    op.execute(_prune(junk=False))
    op.execute("REVOKE ALL ON FUNCTION gatehouse_prune(timestamptz, timestamptz) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION gatehouse_prune(timestamptz, timestamptz) TO {app_role}")
    op.drop_table("junk_scans")


def _prune(*, junk: bool) -> str:
    """``gatehouse_prune`` as 0007 made it, or with ``junk_scans`` rows before ``junk_before``."""
    return f"""
        CREATE FUNCTION gatehouse_prune(
            outbox_before timestamptz, processed_before timestamptz,
            {"junk_before timestamptz," if junk else ""}
            OUT idempotency_keys bigint, OUT token_revocations bigint, OUT outbox bigint,
            OUT processed_events bigint{", OUT junk_scans bigint" if junk else ""})
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public SET row_security = off AS $$
        BEGIN
            DELETE FROM idempotency_keys WHERE expires_at < now();
            GET DIAGNOSTICS idempotency_keys = ROW_COUNT;
            DELETE FROM token_revocations WHERE expires_at < now();
            GET DIAGNOSTICS token_revocations = ROW_COUNT;
            DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < outbox_before;
            GET DIAGNOSTICS outbox = ROW_COUNT;
            DELETE FROM processed_events WHERE processed_at < processed_before;
            GET DIAGNOSTICS processed_events = ROW_COUNT;
            {"DELETE FROM junk_scans WHERE minute < junk_before;" if junk else ""}
            {"GET DIAGNOSTICS junk_scans = ROW_COUNT;" if junk else ""}
        END $$
        """
