"""An index for the managers' scan log: paging one event's scans by id.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # lock-reviewed: from before the previous release (0015): it runs only on a new, empty database
    #   or an install older than it; not a pattern for new revisions
    op.create_index("ix_ticket_scans_event_id_id", "ticket_scans", ["event_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_ticket_scans_event_id_id", "ticket_scans")
