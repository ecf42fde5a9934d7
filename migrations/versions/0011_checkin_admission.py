"""Check-in (issue 15): one round trip to lock a ticket for an online verdict and read what
the decision needs.

``gatehouse_checkin_ticket(ticket)`` locks the ticket's row (``FOR UPDATE``) and returns its
facts with its event's and type's (the columns of ``checkin.queries.LOCK_TICKETS``) and, for a
ticket that is not ``active``, its admitted, not annulled scans as JSON (``history``; NULL for
an active ticket, which has no standing admission). The scans are read by a second statement
inside the function: in READ COMMITTED each statement of a volatile function takes a fresh
snapshot, so it sees every admission committed before the lock was granted — one statement
with the scans as a subquery would read them from the snapshot taken before it waited for the
lock, and miss the admission of the gate it waited for. ``SECURITY INVOKER``: row-level
security applies as to any statement of the application role.

It also drops ``ix_ticket_scans_ticket_id``: every query by ticket is served by
``ix_ticket_scans_ticket_id_scanned_at``, whose leading column it is (the foreign key to
``tickets`` included), and each scan row paid for both (docs/benchmarks.md, Notes).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import context, op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    role = str(context.config.attributes.get("app_role", "gatehouse_app"))
    if not role.replace("_", "").isalnum():
        raise ValueError(f"unsafe role name {role!r}")
    op.execute(
        """
        CREATE FUNCTION gatehouse_checkin_ticket(ticket uuid)
        RETURNS TABLE (
            id uuid, tenant_id uuid, event_id uuid, ticket_type_id uuid, purchase_id uuid,
            user_id text, status text, secret_version integer, holder_name text,
            holder_wallet text, nft_mint text, blockchain_sync_status text, ticket_type text,
            allow_reentry boolean, admission_opens_at timestamptz, ends_at timestamptz,
            history jsonb
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
                   tt.name::text, e.allow_reentry, e.admission_opens_at, e.ends_at,
                   CASE WHEN t.status <> 'active' THEN (
                       SELECT coalesce(jsonb_agg(jsonb_build_object(
                           'id', s.id, 'ticket_id', s.ticket_id, 'scanned_at', s.scanned_at,
                           'direction', s.direction, 'gate', s.gate, 'device_id', s.device_id,
                           'conflict_of', s.conflict_of,
                           'online', s.device_scanned_at IS NULL)), '[]'::jsonb)
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
    )
    op.execute(f"GRANT EXECUTE ON FUNCTION gatehouse_checkin_ticket(uuid) TO {role}")
    op.drop_index("ix_ticket_scans_ticket_id", "ticket_scans")


def downgrade() -> None:
    op.create_index("ix_ticket_scans_ticket_id", "ticket_scans", ["ticket_id"])
    op.execute("DROP FUNCTION gatehouse_checkin_ticket(uuid)")
