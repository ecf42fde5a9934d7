"""Seats back on revocation and conflicts a manager resolved (issue 19).

* ``ticket_types.release_seat``: whether revoking one of its tickets counts the seat back into
  the type's capacity (``sold`` goes down by one in the revocation's transaction). Default
  false: a revoked ticket kept its seat before this column existed.
* ``ticket_scans.conflict_resolved_at``, ``conflict_resolved_by``, ``conflict_resolution``
  (``accepted`` or ``annulled``), ``conflict_resolution_note``: set when a manager resolved a
  double entry (``POST /v1/scans/{id}/resolve``). ``accepted``: both admissions stand — the
  scan keeps ``conflict_of`` (whom it collided with) and counts as an admission. ``annulled``:
  the scan was annulled through the annul path (``annulled_at`` too). A conflict that stands
  is now an admitted entry with ``conflict_of IS NOT NULL AND annulled_at IS NULL AND
  conflict_resolved_at IS NULL``; an admission, one with ``annulled_at IS NULL AND
  (conflict_of IS NULL OR conflict_resolution = 'accepted')``. The replay clears an accepted
  resolution when the scan stops being a double entry (``conflict_of`` back to NULL), so a
  later conflict of the same scan is a new one.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "ticket_types",
        sa.Column("release_seat", sa.Boolean, nullable=False, server_default="false"),
    )
    op.add_column(
        "ticket_scans", sa.Column("conflict_resolved_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("ticket_scans", sa.Column("conflict_resolved_by", sa.Text, nullable=True))
    op.add_column("ticket_scans", sa.Column("conflict_resolution", sa.Text, nullable=True))
    op.add_column("ticket_scans", sa.Column("conflict_resolution_note", sa.Text, nullable=True))
    # NOT VALID first (no scan of the table under the exclusive lock), then VALIDATE, which
    # reads the table without blocking writes.
    op.execute(
        "ALTER TABLE ticket_scans ADD CONSTRAINT ck_ticket_scans_conflict_resolution "
        "CHECK (conflict_resolution IN ('accepted', 'annulled')) NOT VALID"
    )
    op.execute("ALTER TABLE ticket_scans VALIDATE CONSTRAINT ck_ticket_scans_conflict_resolution")


def downgrade() -> None:
    op.execute("ALTER TABLE ticket_scans DROP CONSTRAINT ck_ticket_scans_conflict_resolution")
    op.drop_column("ticket_scans", "conflict_resolution_note")
    op.drop_column("ticket_scans", "conflict_resolution")
    op.drop_column("ticket_scans", "conflict_resolved_by")
    op.drop_column("ticket_scans", "conflict_resolved_at")
    op.drop_column("ticket_types", "release_seat")
