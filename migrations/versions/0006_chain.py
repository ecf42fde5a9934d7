"""Tickets on Solana: what the minting worker and the chain listener keep in Postgres.

* ``pending_transactions`` becomes the queue and the record of every chain action we take:
  ``kind`` (``mint``, ``transfer``, ``freeze``), the ticket's ``mint`` address, the wallet the
  action gives the ticket to (``destination``), ``attempts``, the blockhash expiry
  (``last_valid_block_height``) of the current submission, the ``slot`` it landed in and the
  last ``error``. Its ``status`` goes ``queued`` → ``submitted`` → ``confirmed`` →
  ``finalized``, or ``failed`` after the last attempt.
* ``tickets`` learns what the chain says: ``chain_owner`` (the wallet holding the NFT as last
  seen), ``chain_frozen``, and ``chain_slot`` (the slot of the last on-chain change applied, so
  an older notification never undoes a newer one). ``blockchain_sync_status`` takes the values
  ``not_minted``, ``pending`` (a chain action is in flight), ``synced``, ``out_of_sync`` (the
  gate or the listener saw the chain disagree; the listener reconciles) and ``failed``.
* ``blockchain_sync`` is the transfer log: ``from_wallet``, ``to_wallet``, ``block_time``, and a
  unique (signature, ticket) so each on-chain transfer is applied once, however often it is
  seen.
* The worker and the listener start from the chain (a mint address) or from a queue that spans
  tenants; three ``SECURITY DEFINER`` functions give them ids only, after which every read and
  write happens in a transaction scoped to the ticket's tenant, as everywhere else.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
OPEN_STATUSES = "('queued', 'submitted', 'confirmed')"


def _app_role() -> str:
    role = str(context.config.attributes.get("app_role", "gatehouse_app"))
    if not role.replace("_", "").isalnum():
        raise ValueError(f"unsafe role name {role!r}")
    return role


def upgrade() -> None:
    app_role = _app_role()

    op.add_column(
        "pending_transactions", sa.Column("kind", sa.Text, server_default="mint", nullable=False)
    )
    op.add_column("pending_transactions", sa.Column("mint", sa.Text, nullable=True))
    op.add_column("pending_transactions", sa.Column("destination", sa.Text, nullable=True))
    op.add_column(
        "pending_transactions",
        sa.Column("attempts", sa.Integer, server_default="0", nullable=False),
    )
    op.add_column(
        "pending_transactions", sa.Column("last_valid_block_height", sa.BigInteger, nullable=True)
    )
    op.add_column("pending_transactions", sa.Column("slot", sa.BigInteger, nullable=True))
    op.add_column("pending_transactions", sa.Column("error", sa.Text, nullable=True))
    op.add_column(
        "pending_transactions",
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
    )
    op.add_column(
        "pending_transactions",
        sa.Column("updated_at", TS, server_default=sa.func.now(), nullable=False),
    )
    op.create_index(
        "ix_pending_transactions_open",
        "pending_transactions",
        ["created_at"],
        postgresql_where=sa.text(f"status IN {OPEN_STATUSES}"),
    )
    op.create_index("ix_pending_transactions_ticket_id", "pending_transactions", ["ticket_id"])

    op.add_column("tickets", sa.Column("chain_owner", sa.Text, nullable=True))
    op.add_column(
        "tickets", sa.Column("chain_frozen", sa.Boolean, server_default="false", nullable=False)
    )
    op.add_column("tickets", sa.Column("chain_slot", sa.BigInteger, nullable=True))
    # lock-reviewed: from before the previous release (0015): it runs only on a new, empty database
    #   or an install older than it; not a pattern for new revisions
    op.create_index(
        "ix_tickets_nft_mint",
        "tickets",
        ["nft_mint"],
        unique=True,
        postgresql_where=sa.text("nft_mint IS NOT NULL"),
    )

    op.add_column("blockchain_sync", sa.Column("from_wallet", sa.Text, nullable=True))
    op.add_column("blockchain_sync", sa.Column("to_wallet", sa.Text, nullable=True))
    op.add_column("blockchain_sync", sa.Column("block_time", TS, nullable=True))
    op.create_index(
        "ux_blockchain_sync_signature_ticket",
        "blockchain_sync",
        ["signature", "ticket_id"],
        unique=True,
        postgresql_where=sa.text("signature IS NOT NULL"),
    )
    op.create_index("ix_blockchain_sync_ticket_id", "blockchain_sync", ["ticket_id"])

    # Ids only, never payloads: the caller then opens a transaction for the tenant it was told.
    op.execute(
        """
        CREATE FUNCTION gatehouse_chain_ticket(p_mint text,
            OUT tenant_id uuid, OUT ticket_id uuid)
        RETURNS SETOF record
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public SET row_security = off AS
        $$ SELECT tenant_id, id FROM tickets WHERE nft_mint = p_mint $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION gatehouse_chain_mints(p_only_out_of_sync boolean,
            OUT tenant_id uuid, OUT ticket_id uuid, OUT mint text)
        RETURNS SETOF record
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public SET row_security = off AS
        $$ SELECT tenant_id, id, nft_mint FROM tickets
           WHERE nft_mint IS NOT NULL
             AND (NOT p_only_out_of_sync OR blockchain_sync_status = 'out_of_sync')
           ORDER BY id $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION gatehouse_chain_pending(p_limit integer,
            OUT tenant_id uuid, OUT transaction_id uuid)
        RETURNS SETOF record
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public SET row_security = off AS
        $$ SELECT tenant_id, id FROM pending_transactions
           WHERE status IN {OPEN_STATUSES} ORDER BY created_at, id LIMIT p_limit $$
        """
    )
    for signature in (
        "gatehouse_chain_ticket(text)",
        "gatehouse_chain_mints(boolean)",
        "gatehouse_chain_pending(integer)",
    ):
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {app_role}")


def downgrade() -> None:
    for signature in (
        "gatehouse_chain_ticket(text)",
        "gatehouse_chain_mints(boolean)",
        "gatehouse_chain_pending(integer)",
    ):
        op.execute(f"DROP FUNCTION {signature}")
    op.drop_index("ix_blockchain_sync_ticket_id", "blockchain_sync")
    op.drop_index("ux_blockchain_sync_signature_ticket", "blockchain_sync")
    for column in ("block_time", "to_wallet", "from_wallet"):
        op.drop_column("blockchain_sync", column)
    op.drop_index("ix_tickets_nft_mint", "tickets")
    for column in ("chain_slot", "chain_frozen", "chain_owner"):
        op.drop_column("tickets", column)
    op.drop_index("ix_pending_transactions_ticket_id", "pending_transactions")
    op.drop_index("ix_pending_transactions_open", "pending_transactions")
    for column in (
        "updated_at",
        "created_at",
        "error",
        "slot",
        "last_valid_block_height",
        "attempts",
        "destination",
        "mint",
        "kind",
    ):
        op.drop_column("pending_transactions", column)
