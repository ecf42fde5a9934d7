"""The gate screen as staff use it: scans through the handheld scanner (keyboard wedge) or the
lookup field turn the panel the right colour with the right words; typing is not stolen;
undo, counters, status bar and the missing camera."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLineEdit, QMessageBox, QWidget
from pytestqt.qtbot import QtBot

from scanner_app.core.store.cache import apply_changes
from scanner_app.core.store.scanlog import local_scans
from scanner_app.core.store.scans import queue_length
from scanner_app.core.store.state import load_settings
from scanner_app.ui.main_window import MainWindow
from scanner_app.ui.verdict_panel import AMBER, GREEN, RED
from shared import wire
from shared.domain import Direction, VerdictReason
from shared.ids import new_id
from tests.scanner_app.ui.conftest import GateFixture, make_gate


def open_window(qtbot: QtBot, gate: GateFixture) -> MainWindow:
    window = MainWindow(gate.store, sounds=None, background_sync=True)
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.bridge.ready, timeout=20_000):
        window.start()
    return window


@pytest.fixture
def window(qtbot: QtBot, standalone_gate: GateFixture) -> Iterator[MainWindow]:
    main = open_window(qtbot, standalone_gate)
    yield main
    main.close()


def scanner_types(widget: QWidget, code: str) -> None:
    """A handheld scanner: the whole code in one burst, then Enter, into whatever has focus."""
    QTest.keyClicks(widget, code)
    QTest.keyClick(widget, Qt.Key.Key_Return)


def panel_shows(window: MainWindow, word: str) -> bool:
    return window.gate_screen.panel.word_label.text() == word


def test_a_valid_ticket_turns_the_panel_green_with_admit(
    qtbot: QtBot, window: MainWindow, standalone_gate: GateFixture
) -> None:
    scanner_types(window.gate_screen.entry_button, standalone_gate.codes["alice"])

    qtbot.waitUntil(lambda: panel_shows(window, "ADMIT"), timeout=10_000)
    panel = window.gate_screen.panel
    assert panel.background.name() == GREEN
    assert panel.sentence_label.text() == "Welcome!"
    assert "Alice Example" in panel.details_label.text()
    assert "Standing" in panel.details_label.text()


def test_a_revoked_ticket_turns_the_panel_red_with_the_reason(
    qtbot: QtBot, window: MainWindow, standalone_gate: GateFixture
) -> None:
    scanner_types(window.gate_screen.entry_button, standalone_gate.codes["revoked"])

    qtbot.waitUntil(lambda: panel_shows(window, "STOP"), timeout=10_000)
    panel = window.gate_screen.panel
    assert panel.background.name() == RED
    assert panel.sentence_label.text() == "This ticket has been cancelled."
    assert panel.outcome_label.text() == "Do not let in"


def test_a_refused_exit_says_it_was_not_recorded_not_to_stop_the_guest(
    qtbot: QtBot, window: MainWindow
) -> None:
    """No gate holds anyone in: a code that names no ticket of the event is not recorded as
    a leave, and the panel says so (issue 15)."""
    window.gate_screen.set_direction(Direction.EXIT)
    scanner_types(window.gate_screen.exit_button, "GH2:not-a-code")

    qtbot.waitUntil(lambda: panel_shows(window, "UNKNOWN"), timeout=10_000)
    panel = window.gate_screen.panel
    assert panel.background.name() == RED
    assert panel.outcome_label.text() == "Exit not recorded — the guest may leave"
    assert panel.sentence_label.text() == VerdictReason.INVALID_CODE.sentence


def test_a_used_ticket_says_when_and_where_it_was_checked_in(
    qtbot: QtBot, window: MainWindow, standalone_gate: GateFixture
) -> None:
    scanner_types(window.gate_screen.entry_button, standalone_gate.codes["used"])

    qtbot.waitUntil(lambda: panel_shows(window, "STOP"), timeout=10_000)
    assert standalone_gate.used_at is not None
    when = standalone_gate.used_at.astimezone().strftime("%H:%M")
    assert window.gate_screen.panel.sentence_label.text() == (
        f"Already checked in at {when} at Gate B."
    )
    assert window.gate_screen.panel.background.name() == RED


def test_re_entry_after_an_exit_is_amber_check_and_still_admitted(
    qtbot: QtBot, window: MainWindow, standalone_gate: GateFixture
) -> None:
    # Bob went in and out at Gate B (the feed told this gate); the event allows re-entry.
    now = datetime.now(UTC)
    with standalone_gate.store.write() as conn:
        apply_changes(
            conn,
            standalone_gate.store.sealer,
            [
                wire.AdmissionChange(
                    scan_id=new_id(),
                    ticket_id=standalone_gate.ticket_ids["bob"],
                    gate="Gate B",
                    direction=direction,
                    scanned_at=now - timedelta(minutes=minutes),
                )
                for direction, minutes in ((Direction.ENTRY, 30), (Direction.EXIT, 10))
            ],
            now,
        )
    scanner_types(window.gate_screen.entry_button, standalone_gate.codes["bob"])

    qtbot.waitUntil(lambda: panel_shows(window, "CHECK"), timeout=10_000)
    panel = window.gate_screen.panel
    assert panel.background.name() == AMBER
    assert panel.outcome_label.text() == "Admitted — re-entry"
    assert panel.sentence_label.text() == "Welcome back (re-entry)."


def test_scanner_input_lands_while_a_text_field_has_focus_and_does_not_fill_it(
    qtbot: QtBot, window: MainWindow, standalone_gate: GateFixture
) -> None:
    field = window.gate_screen.lookup_field
    field.setFocus()
    qtbot.waitUntil(field.hasFocus)

    scanner_types(field, standalone_gate.codes["alice"])

    qtbot.waitUntil(lambda: panel_shows(window, "ADMIT"), timeout=10_000)
    assert field.text() == ""


def _type_slowly(widget: QWidget, text: str, start_ms: int, gap_ms: int) -> None:
    """A person typing: keys ``gap_ms`` apart by the window system's timestamps."""
    for index, char in enumerate(text):
        key = Qt.Key.Key_Return if char == "\r" else Qt.Key(ord(char.upper()))
        event = QKeyEvent(QEvent.Type.KeyPress, key, Qt.KeyboardModifier.NoModifier, char)
        event.setTimestamp(start_ms + index * gap_ms)
        QApplication.sendEvent(widget, event)


def test_a_person_typing_in_a_field_keeps_every_key(
    qtbot: QtBot, window: MainWindow, standalone_gate: GateFixture
) -> None:
    # A field elsewhere in the window (as the scan log's filter would be).
    other = QLineEdit(window.gate_screen)
    other.show()
    other.setFocus()
    qtbot.waitUntil(other.hasFocus)

    _type_slowly(other, "Alice Example", start_ms=1_000, gap_ms=180)

    qtbot.waitUntil(lambda: other.text() == "Alice Example", timeout=5_000)
    assert panel_shows(window, "")  # idle: nothing was scanned
    with standalone_gate.store.read() as conn:
        assert local_scans(conn) == []


def test_a_burst_without_enter_is_neither_typed_nor_scanned(
    qtbot: QtBot, window: MainWindow, standalone_gate: GateFixture
) -> None:
    field = window.gate_screen.lookup_field
    field.setFocus()
    QTest.keyClicks(field, standalone_gate.codes["alice"])

    qtbot.waitUntil(lambda: panel_shows(window, "STOP"), timeout=5_000)
    assert "without Enter" in window.gate_screen.panel.sentence_label.text()
    assert field.text() == ""


def test_a_code_typed_into_the_lookup_field_is_scanned(
    qtbot: QtBot, window: MainWindow, standalone_gate: GateFixture
) -> None:
    field = window.gate_screen.lookup_field
    field.setText(standalone_gate.codes["alice"].lower())  # pasted
    QTest.mouseClick(window.gate_screen.lookup_button, Qt.MouseButton.LeftButton)

    qtbot.waitUntil(lambda: panel_shows(window, "ADMIT"), timeout=10_000)


def test_name_search_finds_only_tickets_scanned_here(
    qtbot: QtBot, window: MainWindow, standalone_gate: GateFixture
) -> None:
    screen = window.gate_screen
    scanner_types(screen.entry_button, standalone_gate.codes["alice"])
    qtbot.waitUntil(lambda: panel_shows(window, "ADMIT"), timeout=10_000)

    screen.lookup_field.setText("alice")
    with qtbot.waitSignal(window.bridge.names_found, timeout=10_000):
        QTest.mouseClick(screen.lookup_button, Qt.MouseButton.LeftButton)
    assert screen.results.count() == 1
    assert screen.results.item(0).text().startswith("Alice Example · Standing")

    # Bob's ticket is in the cache, but was never scanned here: his name stays sealed.
    screen.lookup_field.setText("Bob")
    with qtbot.waitSignal(window.bridge.names_found, timeout=10_000):
        QTest.mouseClick(screen.lookup_button, Qt.MouseButton.LeftButton)
    assert screen.results.count() == 0
    assert "never scanned here" in screen.message_label.text()


def test_undo_after_confirming_makes_the_ticket_scannable_again(
    qtbot: QtBot,
    window: MainWindow,
    standalone_gate: GateFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    screen = window.gate_screen
    code = standalone_gate.codes["alice"]
    scanner_types(screen.entry_button, code)
    qtbot.waitUntil(lambda: screen.admitted_this_session == 1, timeout=10_000)
    asked: list[str] = []

    def confirm(*args: object, **kwargs: object) -> QMessageBox.StandardButton:
        asked.append(str(args[2]))
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", confirm)
    with qtbot.waitSignal(window.bridge.undone, timeout=10_000):
        QTest.mouseClick(screen.undo_button, Qt.MouseButton.LeftButton)

    assert "Alice Example" in asked[0]
    assert screen.admitted_this_session == 0
    assert "undone" in screen.message_label.text()
    with standalone_gate.store.read() as conn:
        assert [scan.annulled for scan in local_scans(conn)] == [True]
        assert queue_length(conn) == 0  # no server: nothing to send

    # Right away (well within the debounce time): a new, recorded admission, not a repeat.
    screen.panel.show_idle()
    scanner_types(screen.entry_button, code)
    qtbot.waitUntil(lambda: panel_shows(window, "ADMIT"), timeout=10_000)
    assert screen.panel.note_label.text() == ""
    assert screen.admitted_this_session == 1
    with standalone_gate.store.read() as conn:
        assert sorted(scan.annulled for scan in local_scans(conn)) == [False, True]


def test_undo_asks_first_and_does_nothing_when_refused(
    qtbot: QtBot,
    window: MainWindow,
    standalone_gate: GateFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    screen = window.gate_screen
    scanner_types(screen.entry_button, standalone_gate.codes["alice"])
    qtbot.waitUntil(lambda: screen.admitted_this_session == 1, timeout=10_000)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)

    QTest.mouseClick(screen.undo_button, Qt.MouseButton.LeftButton)

    assert screen.admitted_this_session == 1
    with standalone_gate.store.read() as conn:
        assert [scan.annulled for scan in local_scans(conn)] == [False]


def test_counters_count_admissions_and_who_is_inside(
    qtbot: QtBot, window: MainWindow, standalone_gate: GateFixture
) -> None:
    screen = window.gate_screen
    for name in ("alice", "bob"):
        scanner_types(screen.entry_button, standalone_gate.codes[name])
    scanner_types(screen.entry_button, standalone_gate.codes["revoked"])
    qtbot.waitUntil(lambda: panel_shows(window, "STOP"), timeout=10_000)
    # Inside: alice, bob, and "used" (admitted at Gate B before).
    qtbot.waitUntil(lambda: screen.inside_label.text() == "Inside now: 3", timeout=10_000)
    assert screen.admitted_label.text() == "Admitted this session: 2"

    QTest.mouseClick(screen.exit_button, Qt.MouseButton.LeftButton)
    scanner_types(screen.exit_button, standalone_gate.codes["alice"])
    qtbot.waitUntil(lambda: screen.inside_label.text() == "Inside now: 2", timeout=10_000)
    assert screen.admitted_label.text() == "Admitted this session: 2"


def test_the_camera_missing_is_a_message_and_scanning_still_works(
    qtbot: QtBot, window: MainWindow, standalone_gate: GateFixture
) -> None:
    view = window.gate_screen.camera_view
    qtbot.waitUntil(lambda: "No camera picture" in view.message, timeout=20_000)
    assert "/dev/gatehouse-test-no-camera" in view.message
    assert "handheld scanner" in view.message

    scanner_types(window.gate_screen.entry_button, standalone_gate.codes["alice"])
    qtbot.waitUntil(lambda: panel_shows(window, "ADMIT"), timeout=10_000)


def test_the_mode_switch_is_saved(
    qtbot: QtBot, window: MainWindow, standalone_gate: GateFixture
) -> None:
    with qtbot.waitSignal(window.bridge.settings_changed, timeout=10_000):
        QTest.keyClick(window, Qt.Key.Key_F4)
    with standalone_gate.store.read() as conn:
        assert load_settings(conn).direction is Direction.EXIT
    assert window.gate_screen.exit_button.isChecked()


def test_status_bar_shows_offline_and_the_queue_without_a_server(
    qtbot: QtBot, tmp_path: Path
) -> None:
    # Enrolled with a server that is not there (nothing listens on port 9 here).
    gate = make_gate(tmp_path / "data", server_url="http://127.0.0.1:9")
    window = open_window(qtbot, gate)
    try:
        scanner_types(window.gate_screen.entry_button, gate.codes["alice"])
        qtbot.waitUntil(lambda: panel_shows(window, "ADMIT"), timeout=10_000)
        bar = window.status_bar
        qtbot.waitUntil(lambda: bar.queue_label.text() == "1 queued", timeout=10_000)
        assert bar.link_label.text().startswith("Offline — ")
        assert bar.sync_label.text() == "Last sync: never"
        assert bar.cache_label.text() == "Ticket data: never synced"
    finally:
        window.close()
        gate.store.close()


def test_status_bar_of_a_standalone_gate(qtbot: QtBot, window: MainWindow) -> None:
    bar = window.status_bar
    qtbot.waitUntil(lambda: bar.status is not None, timeout=10_000)
    assert bar.link_label.text() == "Standalone (no server)"
    assert bar.cache_label.text() == "Tickets on this device: 4"
    assert bar.clock_label.isHidden()
