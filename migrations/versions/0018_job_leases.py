"""The worker's scheduled jobs (issue 19, docs/operations.md "Scheduled jobs").

``job_leases``: one row per scheduled job (``expire``, ``prune``, ``key-rotation``). A worker
runs a job only after taking its lease in one statement — free (no holder, or the holder's
``leased_until`` has passed: a worker that died mid-run loses it by itself) and due (its
``last_run_at``, the start of its last successful run, at least an interval ago) — and holds it
by renewing ``leased_until`` while the run lasts. Not a tenant table: a job works across
tenants, each tenant's part as that tenant (row-level security applies as everywhere else).
The application role may read, insert and update it.

``gatehouse_prune`` gains ``console_sessions``: sessions past their ``expires_at`` (they were
deleted only when their user signed in again).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
_ARGS = "timestamptz, timestamptz, timestamptz"


def _role(attribute: str, default: str) -> str:
    role = str(context.config.attributes.get(attribute, default))
    if not role.replace("_", "").isalnum():
        raise ValueError(f"unsafe role name {role!r}")
    return role


def upgrade() -> None:
    app_role = _role("app_role", "gatehouse_app")
    op.create_table(
        "job_leases",
        sa.Column("job", sa.Text, primary_key=True),
        sa.Column("holder", sa.Text, nullable=True),
        sa.Column("leased_until", TS, nullable=True),
        sa.Column("last_run_at", TS, nullable=True),
        sa.Column("last_finished_at", TS, nullable=True),
        sa.Column("last_outcome", sa.Text, nullable=True),
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON job_leases TO {app_role}")
    op.execute(f"DROP FUNCTION gatehouse_prune({_ARGS})")
    op.execute(_prune(console=True))
    _grant(app_role)


def downgrade() -> None:
    app_role = _role("app_role", "gatehouse_app")
    op.execute(f"DROP FUNCTION gatehouse_prune({_ARGS})")
    op.execute(_prune(console=False))
    _grant(app_role)
    op.drop_table("job_leases")


def _grant(app_role: str) -> None:
    op.execute(f"REVOKE ALL ON FUNCTION gatehouse_prune({_ARGS}) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION gatehouse_prune({_ARGS}) TO {app_role}")


def _prune(*, console: bool) -> str:
    """``gatehouse_prune`` as 0009 made it, or with expired ``console_sessions`` too."""
    return f"""
        CREATE FUNCTION gatehouse_prune(
            outbox_before timestamptz, processed_before timestamptz, junk_before timestamptz,
            OUT idempotency_keys bigint, OUT token_revocations bigint, OUT outbox bigint,
            OUT processed_events bigint, OUT junk_scans bigint
            {", OUT console_sessions bigint" if console else ""})
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
            DELETE FROM junk_scans WHERE minute < junk_before;
            GET DIAGNOSTICS junk_scans = ROW_COUNT;
            {"DELETE FROM console_sessions WHERE expires_at < now();" if console else ""}
            {"GET DIAGNOSTICS console_sessions = ROW_COUNT;" if console else ""}
        END $$
        """
