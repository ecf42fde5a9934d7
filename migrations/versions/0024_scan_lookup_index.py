"""A ticket's latest scans are found by one ordered index scan, whatever the statistics say
(the counting triggers of 0020, measured in ``./dev bench ingest``).

The counting trigger finds, for each ticket an upload touched, its latest standing scans
(``ORDER BY scanned_at DESC, id DESC LIMIT k``). With ``ix_ticket_scans_ticket_id_scanned_at``
on (ticket_id, scanned_at) that needs a sort, and while the table's statistics lag its growth —
a new installation's first event, an import — the planner estimated ten rows for the row-level
security condition on ``tenant_id`` and AND-ed a bitmap of ``ix_ticket_scans_tenant_id`` (every
scan of the tenant) into each look-up: 0.3 ms a ticket at 7,000 scans, growing with the table;
an upload of 1,000 scans spent 0.3 s, then 0.9 s, then 2.8 s in the trigger as the table grew
to 60,000 rows (auto_explain), and the ingest bench fell from 2,034 to 754 scans/s.

The index is now (tenant_id, ticket_id, scanned_at, id): the row-level security condition and
the ticket are both its index conditions, so no plan through the tenant index alone can look
cheaper, and the order needs no sort — the look-up reads the index backwards and stops after
``k`` rows. It replaces the old one: every reader of a ticket's scans runs as the application
role, under that same tenant condition, and reads the new index the same way; each scan still
maintains one index for its ticket. (Measured before choosing it: adding ``id`` alone left the
planner AND-ing the tenant index in — it estimated 111 rows for the ticket, 112 for the tenant —
2.3 s an upload of 1,000 at 60,000 rows; with bitmaps turned off in the counting functions it
read the tenant index alone, 25 ms a ticket.)

The counting functions name the ticket's tenant in their look-ups (``s.tenant_id = r.tenant_id``,
always true under row-level security), so that the owner's writes — which row-level security
does not filter: a restore, a seeding with the triggers on — use the index too. 0020 now creates
them so; this revision replaces the ones an earlier 0020 made (``CREATE OR REPLACE``, from
0020's own text). Downgrading leaves them as they are: the extra condition changes no count.

The index statements run outside a transaction and CONCURRENTLY: scans go on being written
while the new index is built, and the old one is dropped without blocking them. Run again after
an interruption, it drops a half-built (invalid) new index and builds it again.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

NEW = "ix_ticket_scans_tenant_id_ticket_id"
OLD = "ix_ticket_scans_ticket_id_scanned_at"


def _tallies() -> ModuleType:
    """Migration 0020, whose text of the counting functions is the one to have."""
    path = Path(__file__).with_name("0020_scan_tallies.py")
    spec = importlib.util.spec_from_file_location("gatehouse_migration_0020", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    tallies = _tallies()
    for function in (tallies.INSERTED_TRIGGER_FUNCTION, tallies.CHANGED_TRIGGER_FUNCTION):
        op.execute(function.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    with op.get_context().autocommit_block():
        # A concurrent build that was interrupted leaves an INVALID index of that name, which
        # IF NOT EXISTS would take for built: drop it and build again.
        invalid = op.get_bind().scalar(
            sa.text(
                "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = :name"
            ),
            {"name": NEW},
        )
        if invalid:
            op.drop_index(NEW, "ticket_scans", postgresql_concurrently=True)
        op.create_index(
            NEW,
            "ticket_scans",
            ["tenant_id", "ticket_id", "scanned_at", "id"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.drop_index(OLD, "ticket_scans", postgresql_concurrently=True, if_exists=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            OLD,
            "ticket_scans",
            ["ticket_id", "scanned_at"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.drop_index(NEW, "ticket_scans", postgresql_concurrently=True, if_exists=True)
