"""An event's own expiry grace period (issue 19).

The worker's ``expire`` job (and ``gatehouse-server expire``) expires the tickets of events that
ended more than a grace period ago. That period was one for the whole server
(``GATEHOUSE_EXPIRY_GRACE``, 6 hours unless set); an event may now have its own:
``events.expiry_grace_seconds``, NULL meaning "the server's default". At most 30 days, so a
mistyped value cannot keep an event's tickets valid for months.

``events`` is small (one row per event): a nullable column without a default is a change to the
catalogue only, and the check constraint's scan of the table is short.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

#: 30 days, the most an event's grace may be (``EXPIRY_GRACE_MAX`` in the events' schemas).
MAX_SECONDS = 30 * 24 * 3600


def upgrade() -> None:
    op.add_column("events", sa.Column("expiry_grace_seconds", sa.Integer, nullable=True))
    op.create_check_constraint(
        "ck_events_expiry_grace_seconds",
        "events",
        f"expiry_grace_seconds BETWEEN 0 AND {MAX_SECONDS}",
    )


def downgrade() -> None:
    op.drop_constraint("ck_events_expiry_grace_seconds", "events", type_="check")
    op.drop_column("events", "expiry_grace_seconds")
