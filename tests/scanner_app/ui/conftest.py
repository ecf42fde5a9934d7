"""Fixtures for the desktop app's tests: Qt offscreen, and a standalone gate with tickets.

The gate here is built with ``scanner_app.core.standalone`` directly (the same functions the
demo uses), so these tests do not depend on the demo module.
"""

from __future__ import annotations

import os

# Before anything imports Qt: no display in tests.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from scanner_app.core.standalone import load_tickets, set_up_standalone
from scanner_app.core.store import LocalStore
from scanner_app.core.store.cache import apply_changes
from scanner_app.core.store.state import GateSettings, save_settings
from scanner_app.ui.gc_guard import GuiThreadGarbageCollector
from shared import wire
from shared.domain import Direction, TicketStatus
from shared.ids import new_id
from shared.keys import IssuerKeyRing
from shared.ticket_code import issue_code
from testkit.names import name_secret_of, sealed_holder


@pytest.fixture(autouse=True, scope="session")
def _collect_garbage_on_the_gui_thread(qapp: QApplication) -> Iterator[None]:
    """As the app does (``scanner_app.ui.app.application``): cycles — windows of earlier tests
    among them — are collected on the GUI thread, never on a worker that happens to allocate."""
    collector = GuiThreadGarbageCollector(qapp)
    yield
    collector.stop()


#: A camera path that exists nowhere: the app must say so and keep scanning.
NO_CAMERA = "/dev/gatehouse-test-no-camera"


@dataclass
class GateFixture:
    """A standalone gate ("Gate A") and the codes of its tickets, by name."""

    store: LocalStore
    data_dir: Path
    event: wire.GateEvent
    issuer: IssuerKeyRing
    codes: dict[str, str] = field(default_factory=dict)
    ticket_ids: dict[str, uuid.UUID] = field(default_factory=dict)
    #: When the other gate admitted the "used" ticket.
    used_at: datetime | None = None

    def code_for(self, ticket_id: uuid.UUID, version: int = 1) -> str:
        return issue_code(
            self.issuer,
            ticket_id=ticket_id,
            event_id=self.event.event_id,
            secret_version=version,
            issued_at=datetime.now(UTC),
            name_secret=name_secret_of(ticket_id),
        )


def make_gate(data_dir: Path, *, server_url: str | None = None) -> GateFixture:
    """Tickets: alice and bob (valid), revoked, used (admitted at Gate B 20 minutes ago)."""
    now = datetime.now(UTC)
    issuer = IssuerKeyRing.generate()
    event = wire.GateEvent(
        event_id=new_id(),
        name="UI test night",
        venue="Hall",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=6),
        allow_reentry=True,
    )
    store = LocalStore.open(data_dir)
    enrollment = set_up_standalone(
        store, gate_event=event, keys=issuer.scanner_ring, gate="Gate A", now=now
    )
    if server_url is not None:
        from msgspec.structs import replace  # noqa: PLC0415

        from scanner_app.core.store.state import save_enrollment  # noqa: PLC0415

        with store.write() as conn:
            save_enrollment(conn, replace(enrollment, server_url=server_url))
    holders = {
        "alice": ("Alice Example", TicketStatus.ACTIVE),
        "bob": ("Bob Sample", TicketStatus.ACTIVE),
        "revoked": ("Rita Revoked", TicketStatus.REVOKED),
        "used": ("Uma Used", TicketStatus.ACTIVE),
    }
    gate = GateFixture(store=store, data_dir=data_dir, event=event, issuer=issuer)
    for name in holders:
        gate.ticket_ids[name] = new_id()
    load_tickets(
        store,
        [
            wire.TicketChange(
                ticket_id=gate.ticket_ids[name],
                event_id=event.event_id,
                status=status,
                secret_version=1,
                ticket_type="Standing",
                sealed_holder=sealed_holder(gate.ticket_ids[name], holder, 1),
            )
            for name, (holder, status) in holders.items()
        ],
        now,
    )
    gate.used_at = now - timedelta(minutes=20)
    with store.write() as conn:
        apply_changes(
            conn,
            store.sealer,
            [
                wire.AdmissionChange(
                    scan_id=new_id(),
                    ticket_id=gate.ticket_ids["used"],
                    gate="Gate B",
                    direction=Direction.ENTRY,
                    scanned_at=gate.used_at,
                )
            ],
            now,
        )
        save_settings(conn, GateSettings(sounds=False, camera=NO_CAMERA, verdict_seconds=60))
    gate.codes = {name: gate.code_for(ticket_id) for name, ticket_id in gate.ticket_ids.items()}
    return gate


@pytest.fixture
def standalone_gate(tmp_path: Path) -> Iterator[GateFixture]:
    """A fresh standalone gate per test."""
    fixture = make_gate(tmp_path / "data")
    yield fixture
    fixture.store.close()
