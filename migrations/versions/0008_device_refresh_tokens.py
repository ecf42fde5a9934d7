"""Security (issue 14, item 7): short-lived device tokens renewed with a rotating refresh token.

A device's access token now lives an hour (``GATEHOUSE_DEVICE_TOKEN_TTL``); the device renews it
with a refresh token (``POST /v1/devices/token``) that changes on every renewal. The server keeps
no refresh token, only hashes (``sync_server.domain.devices.refresh``):

* ``refresh_family_hash``: SHA-256 of the secret every refresh token of this enrollment carries
  (proof that a presented token is one of this device's, old or current);
* ``refresh_hash``: SHA-256 of the current refresh token, of generation ``refresh_generation``;
* ``refresh_previous_hash``: the one before it, accepted once more while the current one has
  not been used (an answer lost on the network);
* ``refresh_renewed_at``: the last renewal (or the enrollment): a refresh token unused for
  longer than ``GATEHOUSE_DEVICE_REFRESH_IDLE_TTL`` renews nothing;
* ``revoked_reason``: why a device was revoked, for managers (``refresh_token_reused`` when the
  server revoked it itself on seeing a refresh token used twice); NULL for a manager's revocation.

Devices enrolled before this revision have no refresh token (all NULL): their 30-day token works
until it expires, then the gate is enrolled again. The application role already may UPDATE
``devices`` (0001).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("devices", sa.Column("refresh_family_hash", sa.LargeBinary, nullable=True))
    op.add_column("devices", sa.Column("refresh_hash", sa.LargeBinary, nullable=True))
    op.add_column("devices", sa.Column("refresh_previous_hash", sa.LargeBinary, nullable=True))
    op.add_column(
        "devices",
        sa.Column("refresh_generation", sa.Integer, nullable=False, server_default="0"),
    )
    op.add_column("devices", sa.Column("refresh_renewed_at", TS, nullable=True))
    op.add_column("devices", sa.Column("revoked_reason", sa.Text, nullable=True))


def downgrade() -> None:
    for column in (
        "revoked_reason",
        "refresh_renewed_at",
        "refresh_generation",
        "refresh_previous_hash",
        "refresh_hash",
        "refresh_family_hash",
    ):
        op.drop_column("devices", column)
