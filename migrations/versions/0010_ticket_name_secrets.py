"""Security (issue 14, items 7 and 8): names reach the gates sealed per ticket.

* ``tickets.name_secret_sealed``: the ticket's *name secret* for its current secret version —
  16 random bytes that its GH2 code carries (docs/ticket-code.md) and that the changes feed
  seals the holder's name under (``shared.holder_name``) — sealed under the master key like the
  events' key material (``sync_server.domain.keys.sealing``), bound to tenant, ticket and
  secret version. The database never holds it in clear. Tickets sold before this revision have
  none: they get one the first time a code is made for them (and the feed then sends their
  name sealed; until then it sends none). Table-level grants of 0001 cover the new column.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tickets", sa.Column("name_secret_sealed", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    op.drop_column("tickets", "name_secret_sealed")
