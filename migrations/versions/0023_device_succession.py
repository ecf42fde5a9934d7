"""A gate enrolled again on the same computer takes over its previous device (issue 19).

After a restore from a backup (or new server secrets) a gate may have to be enrolled again: it
becomes a new device. The scans it had made as the old device — some of which the restored
database lacks — would then be "another device's scans" and refused. The new enrollment may now
name the old device and prove it holds that device's peer key (``wire.Succession``); the server
then records

* ``devices.succeeds_id``: the device this one took over from (shown on the Devices page);
* ``devices.lineage_id``: the first device of the line (NULL: the device itself). Two devices
  of one lineage are the same gate on the same computer: each may upload, look up and undo the
  other's scans.

No foreign keys: a device row is never deleted (no DELETE grant), and a key to ``devices``
would take a lock on every enrollment for nothing. ``devices`` is small; nullable columns
without defaults change only the catalogue.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("devices", sa.Column("succeeds_id", postgresql.UUID(), nullable=True))
    op.add_column("devices", sa.Column("lineage_id", postgresql.UUID(), nullable=True))


def downgrade() -> None:
    op.drop_column("devices", "lineage_id")
    op.drop_column("devices", "succeeds_id")
