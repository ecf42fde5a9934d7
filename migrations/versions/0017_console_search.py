"""The console's ticket search by holder name: ``lower(holder_name)`` with the pattern
operator class, so a prefix search (``lower(holder_name) LIKE 'ann%'``) reads an index
whatever the database's collation, instead of every ticket of the tenant.

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_tickets_holder_name_lower ON tickets (lower(holder_name) text_pattern_ops)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_tickets_holder_name_lower")
