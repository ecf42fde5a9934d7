"""A scanner without a server: set a store up from an event, a key ring and tickets directly.

The demo uses this (its event and tickets are made on the device), and so do tests and
benchmarks that exercise the gate without HTTP. It writes what enrollment and the changes feed
would write, through the same functions.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from scanner_app.core.store import LocalStore
from scanner_app.core.store.cache import AppliedChanges, apply_changes
from scanner_app.core.store.state import Enrollment, merge_keys, save_enrollment, save_event
from shared import wire
from shared.keys import ScannerKeyRing

#: The server URL of a device that has no server.
NO_SERVER = ""


def set_up_standalone(
    store: LocalStore,
    *,
    gate_event: wire.GateEvent,
    keys: ScannerKeyRing,
    gate: str,
    now: datetime,
    device_name: str = "standalone scanner",
    device_id: uuid.UUID | None = None,
) -> Enrollment:
    """Give ``store`` an identity for ``gate`` at ``gate_event``, with ``keys``."""
    enrollment = Enrollment(
        device_id=device_id or uuid.uuid4(),
        name=device_name,
        server_url=NO_SERVER,
        tenant_id=uuid.UUID(int=0),
        event_id=gate_event.event_id,
        gate=gate,
        enrolled_at=now,
    )
    with store.write() as conn:
        save_enrollment(conn, enrollment)
        save_event(conn, gate_event)
        merge_keys(conn, keys.to_wire(), now)
    return enrollment


def load_tickets(
    store: LocalStore, tickets: Iterable[wire.TicketChange], now: datetime, *, batch: int = 10_000
) -> AppliedChanges:
    """Put ``tickets`` in the cache, ``batch`` per transaction."""
    total = 0
    pending: list[wire.Change] = []
    for ticket in tickets:
        pending.append(ticket)
        if len(pending) >= batch:
            with store.write() as conn:
                total += apply_changes(conn, store.sealer, pending, now).tickets
            pending = []
    if pending:
        with store.write() as conn:
            total += apply_changes(conn, store.sealer, pending, now).tickets
    return AppliedChanges(tickets=total)
