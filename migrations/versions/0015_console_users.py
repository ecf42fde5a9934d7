"""The managers' console (issue 17): manager accounts and their browser sessions.

``users``: one row per manager account, in one tenant. The password is kept only as an argon2id
hash (``password_hash``, NULL until the manager sets it); the one-time link that sets it is kept
only as a SHA-256 hash (``password_link_hash``) with its expiry. ``email`` is unique across
tenants (stored lower-cased): signing in names an email, not a tenant, so one email must lead
to one account.

``console_sessions``: a signed-in browser. The cookie carries a random token; the row keeps
only its SHA-256 hash, the user, the tenant and when it expires. Signing out deletes the row,
so the old cookie no longer opens anything.

Both tables are tenant tables (RLS forced, the usual ``tenant_isolation`` policy). Three
look-ups happen before the tenant is known, each as the enrollment redemption does (0001): a
SELECT-only policy that shows the one row whose key the transaction set with
``set_config(..., true)``:

* ``sign_in_by_email``: the user whose email is ``gatehouse.console_email``;
* ``set_password_by_link``: the user whose link hash is ``gatehouse.console_link_hash``;
* ``session_by_token``: the session whose token hash is ``gatehouse.console_session_hash``.

The application then switches the transaction to that row's tenant before it changes or reads
anything else. A transaction that sets none of these sees no rows of either table.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import UUID

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _role() -> str:
    role = str(context.config.attributes.get("app_role", "gatehouse_app"))
    if not role.replace("_", "").isalnum():
        raise ValueError(f"unsafe role name {role!r}")
    return role


def _hash_setting(name: str) -> str:
    return f"decode(NULLIF(current_setting('{name}', true), ''), 'hex')"


def upgrade() -> None:
    role = _role()
    op.create_table(
        "users",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("tenant_id", UUID(as_uuid=True), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("role", sa.Text, server_default="manager", nullable=False),
        sa.Column("password_hash", sa.Text, nullable=True),
        sa.Column("password_link_hash", sa.LargeBinary, nullable=True),
        sa.Column("password_link_expires_at", TS, nullable=True),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("disabled_at", TS, nullable=True),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.UniqueConstraint("password_link_hash", name="uq_users_password_link_hash"),
        sa.CheckConstraint("role IN ('manager')", name="ck_users_role"),
        sa.CheckConstraint("email = lower(email)", name="ck_users_email_lower"),
    )
    op.create_index("ix_users_tenant_id", "users", ["tenant_id"])
    op.create_table(
        "console_sessions",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("tenant_id", UUID(as_uuid=True), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column(
            "user_id",
            UUID(as_uuid=True),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("token_hash", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.UniqueConstraint("token_hash", name="uq_console_sessions_token_hash"),
    )
    op.create_index("ix_console_sessions_user_id", "console_sessions", ["user_id"])
    op.create_index("ix_console_sessions_expires_at", "console_sessions", ["expires_at"])
    for table in ("users", "console_sessions"):
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            "USING (tenant_id = gatehouse_current_tenant()) "
            "WITH CHECK (tenant_id = gatehouse_current_tenant())"
        )
    op.execute(
        "CREATE POLICY sign_in_by_email ON users FOR SELECT USING ("
        "email = NULLIF(current_setting('gatehouse.console_email', true), ''))"
    )
    op.execute(
        "CREATE POLICY set_password_by_link ON users FOR SELECT USING ("
        f"password_link_hash = {_hash_setting('gatehouse.console_link_hash')})"
    )
    op.execute(
        "CREATE POLICY session_by_token ON console_sessions FOR SELECT USING ("
        f"token_hash = {_hash_setting('gatehouse.console_session_hash')})"
    )


def downgrade() -> None:
    op.drop_table("console_sessions")
    op.drop_table("users")
