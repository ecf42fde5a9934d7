"""Cost control (issue 14): uploaded scans whose code does not read are stored at most so many
a device and minute; ``junk_scans`` counts, per device and minute, those stored and those
only counted (``dropped``), so managers see what a device sent.

One row per device and minute in which it uploaded such a scan; row-level security like every
tenant table. The application may read, insert and update it.

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


def downgrade() -> None:
    op.drop_table("junk_scans")
