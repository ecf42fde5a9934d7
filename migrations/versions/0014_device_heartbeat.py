"""The scanners' heartbeat (issue 17): the latest state each device reported about itself.

Columns on ``devices`` (one row per device, already under row-level security, and the
application may already update it), all NULL until the device's first heartbeat:

* ``heartbeat_at``: when the server received the latest heartbeat (server time);
* what the device said: ``queued_scans``, ``queued_annulments``, ``oldest_queued_at``,
  ``clock_offset_ms``, ``app_version``, ``setup_version``, ``last_sync_at``,
  ``sync_interval_seconds``, ``lab_mode``.

Last contact is ``last_seen_at`` (0001), which every device sync already sets: not repeated.
A heartbeat overwrites the device's own row and nothing else, so a device cannot write more
than one row however often it sends one.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)

COLUMNS = (
    ("heartbeat_at", TS),
    ("queued_scans", sa.Integer),
    ("queued_annulments", sa.Integer),
    ("oldest_queued_at", TS),
    ("clock_offset_ms", sa.Integer),
    ("app_version", sa.Text),
    ("setup_version", sa.BigInteger),
    ("last_sync_at", TS),
    ("sync_interval_seconds", sa.Integer),
    ("lab_mode", sa.Boolean),
)


def upgrade() -> None:
    for name, kind in COLUMNS:
        op.add_column("devices", sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    for name, _ in reversed(COLUMNS):
        op.drop_column("devices", name)
