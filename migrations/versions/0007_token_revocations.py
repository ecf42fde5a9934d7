"""Security (issue 14): idempotency rows keep no ticket code and expire; one function prunes
what the server keeps only for a while.

* ``idempotency_keys.expires_at``: a key is answered for a while (the application sets it,
  ``sync_server.http.idempotency``), then the worker deletes the row. Rows written before this
  revision held the answer in full, ticket codes included — working entry passes in every
  backup: their codes are blanked here (a replay issues them afresh).
* ``gatehouse_prune(outbox_before, processed_before)`` deletes, across tenants, expired
  idempotency keys, outbox rows sent before ``outbox_before`` and consumer records older than
  ``processed_before``; it returns the three counts. ``SECURITY DEFINER`` with row-level
  security off, like ``gatehouse_outbox_backlog``: the application role may call it, and
  cannot otherwise delete a row of those tables.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0007"
down_revision = "0006"
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

    op.add_column(
        "idempotency_keys",
        sa.Column(
            "expires_at",
            TS,
            nullable=False,
            server_default=sa.text("now() + interval '48 hours'"),
        ),
    )
    op.alter_column("idempotency_keys", "expires_at", server_default=None)
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])
    # A purchase's answer holds a list of tickets with codes, a transfer's one ticket and code.
    op.execute(
        """
        UPDATE idempotency_keys SET response_body = jsonb_set(response_body, '{code}', '""')
        WHERE jsonb_typeof(response_body) = 'object' AND response_body ? 'code'
        """
    )
    op.execute(
        """
        UPDATE idempotency_keys SET response_body = jsonb_set(
            response_body, '{tickets}',
            (SELECT coalesce(jsonb_agg(item || '{"code": ""}'::jsonb), '[]'::jsonb)
             FROM jsonb_array_elements(response_body -> 'tickets') AS item))
        WHERE jsonb_typeof(response_body -> 'tickets') = 'array'
        """
    )

    op.execute(
        """
        CREATE FUNCTION gatehouse_prune(
            outbox_before timestamptz, processed_before timestamptz,
            OUT idempotency_keys bigint, OUT outbox bigint, OUT processed_events bigint)
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public SET row_security = off AS $$
        BEGIN
            DELETE FROM idempotency_keys WHERE expires_at < now();
            GET DIAGNOSTICS idempotency_keys = ROW_COUNT;
            DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < outbox_before;
            GET DIAGNOSTICS outbox = ROW_COUNT;
            DELETE FROM processed_events WHERE processed_at < processed_before;
            GET DIAGNOSTICS processed_events = ROW_COUNT;
        END $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION gatehouse_prune(timestamptz, timestamptz) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION gatehouse_prune(timestamptz, timestamptz) TO {app_role}")


def downgrade() -> None:
    op.execute("DROP FUNCTION gatehouse_prune(timestamptz, timestamptz)")
    op.drop_index("ix_idempotency_keys_expires_at", "idempotency_keys")
    op.drop_column("idempotency_keys", "expires_at")
