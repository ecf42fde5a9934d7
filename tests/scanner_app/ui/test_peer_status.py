# pytest-qt's QtBot key and mouse helpers carry no type hints.
# mypy: disable-error-code="no-untyped-call"
"""Peer sync on the gate screen (issue 18): the status bar says how many other gates this one
hears, and the settings dialog edits peer sync's settings."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from scanner_app.core.session import DeviceStatus, peer_sentence
from scanner_app.core.store import LocalStore
from scanner_app.core.store.state import (
    DEFAULT_PEER_PORT,
    Enrollment,
    GateSettings,
    load_settings,
    parse_peer_address,
    save_enrollment,
    save_event,
)
from scanner_app.ui.scanning import GateStatus
from scanner_app.ui.settings_dialog import SettingsDialog
from scanner_app.ui.status_bar import GateStatusBar
from shared import wire


def _status(peers_heard: int | None, *, online: bool = False) -> GateStatus:
    device = DeviceStatus(
        enrolled=True,
        device_name="North scanner",
        gate="North 1",
        server_url="https://gates.example.org",
        peers_heard=peers_heard,
        peers=peer_sentence(peers_heard),
    )
    return GateStatus(
        device=device,
        has_server=True,
        online=online,
        syncing=False,
        next_retry_at=None,
        inside_now=0,
    )


@pytest.mark.parametrize(
    ("heard", "text"),
    [
        (4, "Hears 4 other gates"),
        (1, "Hears 1 other gate"),
        (0, "Hears no other gate"),
        (None, "Peer sync off"),
    ],
)
def test_the_status_bar_says_how_many_gates_it_hears(
    qtbot: QtBot, heard: int | None, text: str
) -> None:
    bar = GateStatusBar()
    qtbot.addWidget(bar)
    bar.show()
    bar.show_status(_status(heard))
    assert bar.peers_label.text() == text


def test_hearing_no_gate_while_offline_is_a_warning(qtbot: QtBot) -> None:
    bar = GateStatusBar()
    qtbot.addWidget(bar)
    bar.show_status(_status(0, online=False))
    assert "b71c1c" in bar.peers_label.styleSheet()
    bar.show_status(_status(0, online=True))
    assert bar.peers_label.styleSheet() == ""
    bar.show_status(_status(3, online=False))
    assert bar.peers_label.styleSheet() == ""


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("10.0.0.12:47650", ("10.0.0.12", 47650)),
        (" gate-b.local:1024 ", ("gate-b.local", 1024)),
        ("[fe80::1]:47650", ("fe80::1", 47650)),
        ("10.0.0.12", None),
        ("10.0.0.12:", None),
        (":47650", None),
        ("10.0.0.12:0", None),
        ("10.0.0.12:70000", None),
        ("10.0.0.12:port", None),
        ("a b:1", None),
        ("", None),
    ],
)
def test_peer_addresses_are_read_totally(text: str, parsed: tuple[str, int] | None) -> None:
    assert parse_peer_address(text) == parsed


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    store = LocalStore.open(tmp_path / "gate")
    start = datetime(2026, 7, 4, 18, 0, tzinfo=UTC)
    gate_event = wire.GateEvent(
        event_id=uuid.uuid4(),
        name="Summer Night",
        venue="Riverside Arena",
        starts_at=start,
        ends_at=start + timedelta(hours=5),
    )
    with store.write() as conn:
        save_enrollment(
            conn,
            Enrollment(
                device_id=uuid.uuid4(),
                name="North scanner",
                server_url="https://gates.example.org",
                tenant_id=uuid.uuid4(),
                event_id=gate_event.event_id,
                gate="North 1",
                enrolled_at=start,
            ),
        )
        save_event(conn, gate_event)
    yield store
    store.close()


def _dialog(qtbot: QtBot, store: LocalStore) -> SettingsDialog:
    dialog = SettingsDialog(store)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def test_peer_sync_is_on_by_default_and_its_settings_are_saved(
    qtbot: QtBot, store: LocalStore
) -> None:
    dialog = _dialog(qtbot, store)
    assert dialog.peer_check.isChecked()
    assert dialog.peer_port_edit.text() == str(DEFAULT_PEER_PORT)
    dialog.peer_port_edit.selectAll()
    qtbot.keyClicks(dialog.peer_port_edit, "48000")
    qtbot.keyClicks(dialog.static_peers_edit, "10.0.0.12:48000, 10.0.0.13:48000")
    dialog.discovery_check.setChecked(False)
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    with store.read() as conn:
        saved = load_settings(conn)
    assert (saved.peer_sync, saved.peer_port, saved.peer_discovery) == (True, 48000, False)
    assert saved.static_peers == ("10.0.0.12:48000", "10.0.0.13:48000")


def test_a_wrong_peer_address_keeps_the_dialog_open_and_saves_nothing(
    qtbot: QtBot, store: LocalStore
) -> None:
    dialog = _dialog(qtbot, store)
    qtbot.keyClicks(dialog.static_peers_edit, "10.0.0.12")
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert dialog.isVisible()
    assert "10.0.0.12" in dialog.peer_error.text()
    with store.read() as conn:
        assert load_settings(conn) == GateSettings()


def test_peer_sync_switched_off_greys_its_fields_and_is_saved(
    qtbot: QtBot, store: LocalStore
) -> None:
    dialog = _dialog(qtbot, store)
    dialog.peer_check.setChecked(False)
    assert not dialog.peer_port_edit.isEnabled()
    assert not dialog.static_peers_edit.isEnabled()
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    with store.read() as conn:
        assert not load_settings(conn).peer_sync
