"""The event's access setup (issue 16): check-in lists, days, ticket types' days and time zone,
as the changes feed last brought it.

The feed sends the whole ``wire.CheckinSetup`` whenever its version differs from the one this
device says it has (``setup_version`` on ``GET /v1/sync/changes``); it is stored as received,
with its version and when it arrived, replacing the one before, in the transaction of the page
that carried it. It holds no names of people and no secrets: list, zone, gate and ticket type
names, times and rules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import msgspec
from sqlalchemy import Connection

from scanner_app.core.store.times import from_micros, to_micros
from shared import wire

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredSetup:
    setup: wire.CheckinSetup
    #: When this device stored it (its own clock).
    received_at: datetime

    @property
    def version(self) -> int:
        return self.setup.version


def save_setup(conn: Connection, setup: wire.CheckinSetup, now: datetime) -> None:
    """Make ``setup`` this device's setup, replacing any earlier one."""
    conn.exec_driver_sql(
        "INSERT INTO checkin_setup (id, event_id, version, received_at, setup) "
        "VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET event_id = excluded.event_id, "
        "version = excluded.version, received_at = excluded.received_at, setup = excluded.setup",
        (
            setup.event_id.bytes,
            setup.version,
            to_micros(now),
            msgspec.json.encode(setup).decode(),
        ),
    )


def load_setup(conn: Connection) -> StoredSetup | None:
    """The stored setup; None when there is none, or when what is stored no longer reads (it
    is then as if none had come: the device asks for it again with no version)."""
    row = conn.exec_driver_sql("SELECT received_at, setup FROM checkin_setup WHERE id = 1").first()
    if row is None:
        return None
    try:
        setup = msgspec.json.decode(row[1], type=wire.CheckinSetup)
    except (msgspec.DecodeError, ValueError) as error:
        log.warning("the stored check-in setup does not read (%s); asking for it again", error)
        return None
    return StoredSetup(setup=setup, received_at=from_micros(row[0]))


def stored_setup_version(conn: Connection) -> int | None:
    """The stored setup's version, cheaply (the gate asks before each offline verdict)."""
    value = conn.exec_driver_sql("SELECT version FROM checkin_setup WHERE id = 1").scalar()
    return None if value is None else int(value)
