"""Peer sync between the gates of an event (issue 18, docs/peer-sync.md).

Columns on ``devices``:

* ``peer_public_key``: the 32-byte Ed25519 public key the device made for talking to the other
  gates and sent at enrollment; the server certifies it (at enrollment and on every
  ``GET /v1/devices/me``). NULL for a device enrolled without one (a scanner older than peer
  sync). A check keeps it exactly 32 bytes. Not a secret: only the device holds the private half.
* ``peers_heard``: how many other gates of its event the device said it heard in its latest
  heartbeat; NULL when it has peer sync off or has not said.

And ``ix_devices_event_id_revoked_at``, a partial index of the revoked devices by event: every
device's ``GET /v1/devices/me`` lists its event's (``DeviceSelf.revoked_peers``).

The event's issuer key and peer key are not stored anywhere: the server derives them from its
master key for each event (``sync_server.domain.keys.peer_keys``).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("devices", sa.Column("peer_public_key", sa.LargeBinary, nullable=True))
    op.create_check_constraint(
        "ck_devices_peer_public_key_length",
        "devices",
        "octet_length(peer_public_key) = 32",
    )
    op.add_column("devices", sa.Column("peers_heard", sa.Integer, nullable=True))
    op.create_index(
        "ix_devices_event_id_revoked_at",
        "devices",
        ["event_id", "revoked_at"],
        postgresql_where=sa.text("revoked_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_devices_event_id_revoked_at", table_name="devices")
    op.drop_column("devices", "peers_heard")
    op.drop_constraint("ck_devices_peer_public_key_length", "devices", type_="check")
    op.drop_column("devices", "peer_public_key")
