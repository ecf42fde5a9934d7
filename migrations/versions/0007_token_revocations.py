"""Security (issue 14): revoked tokens; idempotency rows keep no ticket code and expire; one
function prunes what the server keeps only for a while.

* ``token_revocations``: the deny-list of token ids (``jti``), per tenant, row-level security
  like every tenant table. A row lives until the token it names would have expired anyway.
* ``gatehouse_enter(tenant, device, token)`` replaces the two-argument function of 0003: in the
  same single round trip that starts every request's transaction it checks the device (when
  there is one) and the token's id, and returns why the caller is refused — ``device_revoked``,
  ``token_revoked`` — or NULL.

* ``idempotency_keys.expires_at``: a key is answered for a while (the application sets it,
  ``sync_server.http.idempotency``), then the worker deletes the row. Rows written before this
  revision held the answer in full, ticket codes included — working entry passes in every
  backup: their codes are blanked here (a replay issues them afresh).
* ``gatehouse_prune(outbox_before, processed_before)`` deletes, across tenants, expired
  idempotency keys and revocations of tokens that have expired, outbox rows sent before
  ``outbox_before`` and consumer records older than ``processed_before``; it returns the four
  counts. ``SECURITY DEFINER`` with row-level
  security off, like ``gatehouse_outbox_backlog``: the application role may call it, and
  cannot otherwise delete a row of those tables.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import UUID

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)

# 0003's function, restored on the way down.
_ENTER_0003 = """
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


def _role(attribute: str, default: str) -> str:
    role = str(context.config.attributes.get(attribute, default))
    if not role.replace("_", "").isalnum():
        raise ValueError(f"unsafe role name {role!r}")
    return role


def upgrade() -> None:
    app_role = _role("app_role", "gatehouse_app")

    op.create_table(
        "token_revocations",
        sa.Column("tenant_id", UUID(as_uuid=True), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("jti", sa.Text, primary_key=True),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("revoked_by", sa.Text, nullable=False),
    )
    op.create_index("ix_token_revocations_expires_at", "token_revocations", ["expires_at"])
    op.execute(f"GRANT SELECT, INSERT ON token_revocations TO {app_role}")
    op.execute("ALTER TABLE token_revocations ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE token_revocations FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON token_revocations "
        "USING (tenant_id = gatehouse_current_tenant()) "
        "WITH CHECK (tenant_id = gatehouse_current_tenant())"
    )

    op.execute("DROP FUNCTION gatehouse_enter(uuid, uuid)")
    op.execute(
        """
        CREATE FUNCTION gatehouse_enter(tenant uuid, device uuid, token text) RETURNS text
        LANGUAGE plpgsql AS $$
        BEGIN
            -- Local to the transaction, like SET LOCAL: it never outlives the request.
            PERFORM set_config('gatehouse.tenant_id', tenant::text, true);
            -- Both seen through row-level security: only the tenant's own rows count.
            IF device IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM devices WHERE id = device AND revoked_at IS NULL)
            THEN
                RETURN 'device_revoked';
            END IF;
            IF token IS NOT NULL
                AND EXISTS (
                    SELECT 1 FROM token_revocations WHERE tenant_id = tenant AND jti = token)
            THEN
                RETURN 'token_revoked';
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(f"GRANT EXECUTE ON FUNCTION gatehouse_enter(uuid, uuid, text) TO {app_role}")

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
    # lock-reviewed: from before the previous release (0015): it runs only on a new, empty database
    #   or an install older than it; not a pattern for new revisions
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])
    # A purchase's answer holds a list of tickets with codes, a transfer's one ticket and code.
    # lock-reviewed: from before the previous release (0015): it runs only on a new, empty database
    #   or an install older than it; not a pattern for new revisions
    op.execute(
        """
        UPDATE idempotency_keys SET response_body = jsonb_set(response_body, '{code}', '""')
        WHERE jsonb_typeof(response_body) = 'object' AND response_body ? 'code'
        """
    )
    # lock-reviewed: from before the previous release (0015): it runs only on a new, empty database
    #   or an install older than it; not a pattern for new revisions
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
            OUT idempotency_keys bigint, OUT token_revocations bigint, OUT outbox bigint,
            OUT processed_events bigint)
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
        END $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION gatehouse_prune(timestamptz, timestamptz) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION gatehouse_prune(timestamptz, timestamptz) TO {app_role}")


def downgrade() -> None:
    app_role = _role("app_role", "gatehouse_app")
    op.execute("DROP FUNCTION gatehouse_prune(timestamptz, timestamptz)")
    op.execute("DROP FUNCTION gatehouse_enter(uuid, uuid, text)")
    op.execute(_ENTER_0003)
    op.execute(f"GRANT EXECUTE ON FUNCTION gatehouse_enter(uuid, uuid) TO {app_role}")
    op.drop_table("token_revocations")
    op.drop_index("ix_idempotency_keys_expires_at", "idempotency_keys")
    op.drop_column("idempotency_keys", "expires_at")
