"""A leaner ``ticket_scans`` (issue 15): drop the foreign keys to ``tenants``, ``events``,
``devices`` and ``tickets``.

Each was a trigger and an index look-up on every scan row written — about 15 of the 23 µs a row
costs a COPY into the table (docs/benchmarks.md, Notes) — and none guards anything the schema
and the application do not already guarantee:

* ``tenant_id``: forced row-level security (``WITH CHECK tenant_id =
  gatehouse_current_tenant()``) admits only the transaction's own tenant, which
  ``gatehouse_enter`` set after finding it.
* ``event_id``: always the event of the scanning device's row (``devices.event_id``, itself a
  foreign key) or, for a manager's check-in, of the key that read the code (``keys.event_id``,
  likewise).
* ``ticket_id``: only ever a ticket the same transaction read and locked (``FOR UPDATE``).
* ``device_id``: only ever the device whose row ``gatehouse_enter`` checked for the request
  (upload and online scans name the token's own device).

None of the parent rows can disappear afterwards: the application role may not delete tenants,
events, tickets or devices (a device is revoked, not deleted). ``conflict_of`` keeps its foreign
key: it is NULL on every new row, so it costs an insert nothing.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: (column, referenced table) of each dropped key; named as the initial schema named them.
DROPPED = (
    ("tenant_id", "tenants"),
    ("event_id", "events"),
    ("device_id", "devices"),
    ("ticket_id", "tickets"),
)


def upgrade() -> None:
    for column, table in DROPPED:
        op.drop_constraint(f"fk_ticket_scans_{column}_{table}", "ticket_scans", type_="foreignkey")


def downgrade() -> None:
    for column, table in DROPPED:
        op.create_foreign_key(
            f"fk_ticket_scans_{column}_{table}", "ticket_scans", table, [column], ["id"]
        )
