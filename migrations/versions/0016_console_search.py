"""The console's ticket search by the start of a holder's name, any case.

``tickets.holder_name_key`` is ``lower(holder_name)``, kept by Postgres (a stored generated
column), with a ``text_pattern_ops`` index. Why a column and not an index on the expression:
under row-level security the planner may use only leakproof operators in an index condition
ahead of the tenant policy, and ``lower()`` and ``LIKE`` are not leakproof — measured, an
index on ``lower(holder_name)`` was never used and the search read every ticket of the tenant.
The byte-wise comparisons of ``text_pattern_ops`` (``~>=~``, ``~<~``) and ``starts_with`` are
leakproof, so ``holder_name_key ~>=~ 'ann' AND holder_name_key ~<~ 'ann' || U+10FFFF`` is an
index range.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # lock-reviewed: rewrites tickets and builds the index under an exclusive lock, so admissions
    #   wait: upgrade past 0017 between events (docs/operations.md, Upgrades)
    op.execute(
        "ALTER TABLE tickets ADD COLUMN holder_name_key text "
        "GENERATED ALWAYS AS (lower(holder_name)) STORED"
    )
    # lock-reviewed: rewrites tickets and builds the index under an exclusive lock, so admissions
    #   wait: upgrade past 0017 between events (docs/operations.md, Upgrades)
    op.execute(
        "CREATE INDEX ix_tickets_holder_name_key ON tickets (holder_name_key text_pattern_ops)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_tickets_holder_name_key")
    op.execute("ALTER TABLE tickets DROP COLUMN holder_name_key")
