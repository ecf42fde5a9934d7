"""One round trip to start a request's transaction: set the tenant and, for a device token,
check that the device is still enrolled.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    role = str(context.config.attributes.get("app_role", "gatehouse_app"))
    if not role.replace("_", "").isalnum():
        raise ValueError(f"unsafe role name {role!r}")
    op.execute(
        """
        CREATE FUNCTION gatehouse_enter(tenant uuid, device uuid) RETURNS boolean
        LANGUAGE plpgsql AS $$
        BEGIN
            -- Local to the transaction, like SET LOCAL: it never outlives the request.
            PERFORM set_config('gatehouse.tenant_id', tenant::text, true);
            IF device IS NULL THEN
                RETURN true;
            END IF;
            -- Seen through row-level security, so only the tenant's own devices count.
            RETURN EXISTS (SELECT 1 FROM devices WHERE id = device AND revoked_at IS NULL);
        END $$
        """
    )
    op.execute(f"GRANT EXECUTE ON FUNCTION gatehouse_enter(uuid, uuid) TO {role}")


def downgrade() -> None:
    op.execute("DROP FUNCTION gatehouse_enter(uuid, uuid)")
