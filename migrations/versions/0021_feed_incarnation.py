"""After a restore: the feed's incarnation, and a device the database does not know.

A database restored from a backup misses what happened after the backup: the feed's numbers
(below) and the devices enrolled since. Neither may look like something it is not.

**A device the database does not know** (enrolled after the backup, or its row deleted) was
refused as ``device_revoked`` by ``gatehouse_enter`` (0007) — which a scanner takes as a manager
switching it off for good. ``gatehouse_enter`` now answers ``device_unknown`` for a device with
no row and keeps ``device_revoked`` for a device a manager (or a reused refresh token) revoked:
the scanner says the server does not know it any more and that enrolling again is the way back,
keeping its scans (docs/operations.md "Backup and restore").

**The changes feed's incarnation**: a cursor from before a restore is never trusted.

The feed's cursor is the last ``change_seq`` a device applied (migration 0002). A database
restored from a dump (or to a point in time) has the sequence where it was when the backup was
taken: a device that synced after that holds a cursor *ahead* of the restored database, and the
changes made after the restore would be numbered again from below it — the device would skip
them. So every cursor names the database it came from:

* ``gatehouse_feed_epoch``: one row, a random id drawn here (and drawn again by the one
  ``UPDATE`` of docs/operations.md "Backup and restore" after a restore in place or a
  point-in-time recovery, where the database keeps its oid);
* ``gatehouse_feed_incarnation()``: 16 hex digits from that id *and* the database's oid, which
  PostgreSQL draws anew for every ``CREATE DATABASE`` — so a dump restored into a new database
  (the documented way) gets a new incarnation by itself, with no step to forget. It also answers
  the sequence's last value, so a cursor ahead of it is refused even before the step is run.
  SECURITY DEFINER: the application's role has no privilege on the sequence itself.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import UUID

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def _app_role() -> str:
    role = str(context.config.attributes.get("app_role", "gatehouse_app"))
    if not role.replace("_", "").isalnum():
        raise ValueError(f"unsafe role name {role!r}")
    return role


_ENTER = """
    CREATE OR REPLACE FUNCTION gatehouse_enter(tenant uuid, device uuid, token text) RETURNS text
    LANGUAGE plpgsql AS $$
    DECLARE
        revoked timestamptz;
    BEGIN
        -- Local to the transaction, like SET LOCAL: it never outlives the request.
        PERFORM set_config('gatehouse.tenant_id', tenant::text, true);
        -- Both seen through row-level security: only the tenant's own rows count.
        IF device IS NOT NULL THEN
            SELECT revoked_at INTO revoked FROM devices WHERE id = device;
            IF NOT FOUND THEN
                RETURN %(unknown)s;
            ELSIF revoked IS NOT NULL THEN
                RETURN 'device_revoked';
            END IF;
        END IF;
        IF token IS NOT NULL
            AND EXISTS (SELECT 1 FROM token_revocations WHERE tenant_id = tenant AND jti = token)
        THEN
            RETURN 'token_revoked';
        END IF;
        RETURN NULL;
    END $$
"""


def upgrade() -> None:
    role = _app_role()
    op.execute(_ENTER % {"unknown": "'device_unknown'"})
    op.create_table(
        "gatehouse_feed_epoch",
        sa.Column("one", sa.Boolean, server_default=sa.true()),
        sa.Column(
            "epoch", UUID(as_uuid=True), nullable=False, server_default=sa.text("gen_random_uuid()")
        ),
        sa.Column(
            "drawn_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("one", name="ck_gatehouse_feed_epoch_one"),
        sa.PrimaryKeyConstraint("one", name="pk_gatehouse_feed_epoch"),
    )
    op.execute("INSERT INTO gatehouse_feed_epoch DEFAULT VALUES")
    op.execute(
        """
        CREATE FUNCTION gatehouse_feed_incarnation(OUT incarnation text, OUT last_seq bigint)
        LANGUAGE sql STABLE AS $$
            SELECT left(md5(e.epoch::text || ':' || d.oid::text), 16),
                   (SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END
                    FROM public.gatehouse_changes AS s)
            FROM public.gatehouse_feed_epoch AS e, pg_database AS d
            WHERE d.datname = current_database()
        $$
        """
    )
    op.execute(f"GRANT SELECT ON gatehouse_feed_epoch TO {role}")
    op.execute(f"GRANT EXECUTE ON FUNCTION gatehouse_feed_incarnation() TO {role}")


def downgrade() -> None:
    op.execute(_ENTER % {"unknown": "'device_revoked'"})
    op.execute("DROP FUNCTION gatehouse_feed_incarnation()")
    op.execute("DROP TABLE gatehouse_feed_epoch")
