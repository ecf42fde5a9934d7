# pytest-qt's QtBot key and mouse helpers carry no type hints.
# mypy: disable-error-code="no-untyped-call"
"""The enrollment and settings dialogs, driven as a steward would: keys typed, buttons pressed.

Enrollment runs against the real local sync server (tests/scanner_app/live_server.py): a
manager creates a code through the API, the dialog redeems it and downloads the tickets.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
import segno
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QLineEdit
from pytestqt.qtbot import QtBot

from scanner_app.core.cameras import available_cameras
from scanner_app.core.store import LocalStore
from scanner_app.core.store.cache import ticket_count
from scanner_app.core.store.state import (
    Enrollment,
    GateSettings,
    load_enrollment,
    load_settings,
    save_enrollment,
    save_event,
    save_settings,
)
from scanner_app.core.sync import lab_mode
from scanner_app.ui.enrollment import EnrollmentDialog
from scanner_app.ui.enrollment_qr import QrScanDialog
from scanner_app.ui.settings_dialog import SettingsDialog
from scanner_app.ui.status_bar import GateStatusBar
from shared import wire
from shared.domain import Direction
from shared.enrollment_link import INSECURE_SERVER_SENTENCE, EnrollmentLink
from tests.scanner_app.live_server import BackOffice, LiveServer, enroll

#: A deadline for the server to answer, not a speed requirement.
SERVER_WAIT_MS = 30_000
UNKNOWN_CODE = "ENR-0000-0000-0000"


def _accepted(dialog: QDialog) -> bool:
    return dialog.result() == QDialog.DialogCode.Accepted


def _enrollment_in(data_dir: Path) -> Enrollment | None:
    store = LocalStore.open(data_dir)
    try:
        with store.read() as conn:
            return load_enrollment(conn)
    finally:
        store.close()


@pytest.fixture
def enrollment_dialog(qtbot: QtBot, tmp_path: Path) -> Iterator[EnrollmentDialog]:
    dialog = EnrollmentDialog(tmp_path / "scanner")
    qtbot.addWidget(dialog)
    dialog.show()
    yield dialog
    if dialog.store is not None:
        dialog.store.close()


def _type(qtbot: QtBot, dialog: EnrollmentDialog, url: str, code: str) -> None:
    qtbot.keyClicks(dialog.server_edit, url)
    qtbot.keyClicks(dialog.code_edit, code)


# --- enrollment against the live server -------------------------------------------------------


def test_a_typed_code_enrolls_the_scanner_and_downloads_the_tickets(
    qtbot: QtBot,
    live_server: LiveServer,
    back_office: BackOffice,
    enrollment_dialog: EnrollmentDialog,
) -> None:
    sale = back_office.event_on_sale(tickets=3, name="Dialog concert")
    code = back_office.create_enrollment(sale.event_id, gate="West 3").code
    dialog = enrollment_dialog
    # Typed as people do: lower case, no dashes.
    _type(qtbot, dialog, live_server.url, code.lower().replace("-", ""))

    with qtbot.waitSignal(dialog.enrolled, timeout=SERVER_WAIT_MS) as signal:
        qtbot.keyClick(dialog.code_edit, Qt.Key.Key_Return)  # Enter presses Enroll

    qtbot.waitUntil(lambda: _accepted(dialog))
    store = dialog.store
    assert store is not None
    assert signal.args == [store]
    with store.read() as conn:
        enrollment = load_enrollment(conn)
        assert enrollment is not None
        assert (enrollment.event_id, enrollment.gate) == (sale.event_id, "West 3")
        assert enrollment.server_url == live_server.url
        assert ticket_count(conn) == 3
    assert dialog.sync_report is not None
    assert dialog.sync_report.ok
    assert "at gate West 3 for Dialog concert" in dialog.status_label.text()
    assert "3 tickets" in dialog.status_label.text()


def test_a_used_code_shows_the_servers_sentence_and_keeps_the_fields(
    qtbot: QtBot,
    tmp_path: Path,
    live_server: LiveServer,
    back_office: BackOffice,
    enrollment_dialog: EnrollmentDialog,
) -> None:
    sale = back_office.event_on_sale(tickets=1)
    code = back_office.create_enrollment(sale.event_id).code
    enroll(live_server.url, code)  # another device was quicker
    dialog = enrollment_dialog
    _type(qtbot, dialog, live_server.url, code)

    qtbot.mouseClick(dialog.enroll_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.busy and dialog.message_label.isVisible(), timeout=30_000)

    assert dialog.message_label.text() == (
        "This enrollment code is not valid or has already been used. Ask a manager for a new one."
    )
    assert (dialog.server_edit.text(), dialog.code_edit.text()) == (live_server.url, code)
    assert dialog.enroll_button.isEnabled()
    assert dialog.code_edit.isEnabled()
    assert not _accepted(dialog)
    assert dialog.isVisible()
    assert _enrollment_in(tmp_path / "scanner") is None


def test_an_unknown_code_is_refused_by_the_server(
    qtbot: QtBot, live_server: LiveServer, enrollment_dialog: EnrollmentDialog
) -> None:
    dialog = enrollment_dialog
    _type(qtbot, dialog, live_server.url, UNKNOWN_CODE)
    qtbot.mouseClick(dialog.enroll_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.busy and dialog.message_label.isVisible(), timeout=30_000)
    assert "not valid or has already been used" in dialog.message_label.text()
    assert dialog.code_edit.text() == UNKNOWN_CODE


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_server_gets_a_clear_sentence(
    qtbot: QtBot, tmp_path: Path, enrollment_dialog: EnrollmentDialog
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    dialog = enrollment_dialog
    _type(qtbot, dialog, url, UNKNOWN_CODE)
    qtbot.mouseClick(dialog.enroll_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.busy and dialog.message_label.isVisible(), timeout=30_000)
    assert dialog.message_label.text().startswith(
        f"Cannot reach the server at {url}. Check the address and this computer's network"
    )
    assert (dialog.server_edit.text(), dialog.code_edit.text()) == (url, UNKNOWN_CODE)
    assert _enrollment_in(tmp_path / "scanner") is None


def test_a_web_server_that_is_not_gatehouse_is_named_as_such(
    qtbot: QtBot, live_server: LiveServer, enrollment_dialog: EnrollmentDialog
) -> None:
    # The right host with a wrong path prefix: the server answers 404.
    url = f"{live_server.url}/not-here"
    dialog = enrollment_dialog
    _type(qtbot, dialog, url, UNKNOWN_CODE)
    qtbot.mouseClick(dialog.enroll_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.busy and dialog.message_label.isVisible(), timeout=30_000)
    assert "is not a Gatehouse server" in dialog.message_label.text()


def test_cancel_stops_waiting_for_a_silent_server_and_keeps_the_fields(
    qtbot: QtBot, tmp_path: Path, enrollment_dialog: EnrollmentDialog
) -> None:
    # A port that accepts connections and never answers: the request hangs.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        dialog = enrollment_dialog
        _type(qtbot, dialog, url, UNKNOWN_CODE)
        qtbot.mouseClick(dialog.enroll_button, Qt.MouseButton.LeftButton)
        assert dialog.busy_bar.isVisible()
        assert not dialog.code_edit.isEnabled()

        qtbot.keyClick(dialog, Qt.Key.Key_Escape)

        assert not dialog.busy
        assert dialog.isVisible()
        assert dialog.status_label.text() == "Cancelled. Nothing was changed on this scanner."
        assert dialog.code_edit.isEnabled()
        assert dialog.code_edit.text() == UNKNOWN_CODE
    # Escape again, now idle, closes the dialog.
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    assert not dialog.isVisible()
    assert not _accepted(dialog)
    assert _enrollment_in(tmp_path / "scanner") is None


def test_wrong_fields_are_refused_inline_without_asking_the_server(
    qtbot: QtBot, enrollment_dialog: EnrollmentDialog
) -> None:
    dialog = enrollment_dialog
    _type(qtbot, dialog, "gates.example.org", "1234")
    dialog.name_edit.clear()
    qtbot.mouseClick(dialog.enroll_button, Qt.MouseButton.LeftButton)
    assert not dialog.busy
    assert "starts with https:// or http://" in dialog.server_error.text()
    assert "not an enrollment code" in dialog.code_error.text()
    assert dialog.name_error.isVisible()
    assert dialog.server_error.isVisible()
    assert dialog.code_error.isVisible()

    dialog.server_edit.setText("https://gates.example.org")
    dialog.code_edit.setText("ENR-7KQ2-M9XD-4WPA")
    dialog.name_edit.setText("North scanner")
    dialog.cancel_button.click()  # not sent: the dialog just closes
    assert not dialog.isVisible()


# --- enrollment QR ----------------------------------------------------------------------------


def _qr_png(path: Path, text: str) -> Path:
    segno.make(text, error="m").save(str(path), scale=8, border=4)
    return path


def test_an_enrollment_qr_image_fills_the_fields_and_enrolls(
    qtbot: QtBot,
    tmp_path: Path,
    live_server: LiveServer,
    back_office: BackOffice,
    enrollment_dialog: EnrollmentDialog,
) -> None:
    sale = back_office.event_on_sale(tickets=2)
    code = back_office.create_enrollment(sale.event_id, gate="Gate QR").code
    image = _qr_png(tmp_path / "enroll.png", EnrollmentLink(live_server.url, code).text())
    dialog = enrollment_dialog

    with qtbot.waitSignal(dialog.enrolled, timeout=SERVER_WAIT_MS):
        dialog.read_qr_file(image)

    assert (dialog.server_edit.text(), dialog.code_edit.text()) == (live_server.url, code)
    assert dialog.store is not None
    with dialog.store.read() as conn:
        enrollment = load_enrollment(conn)
        assert enrollment is not None
        assert enrollment.gate == "Gate QR"
        assert ticket_count(conn) == 2


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("GH1AAAABBBBCCCCDDDD", "This is a ticket's QR code, not an enrollment code."),
        ("gatehouse-enroll:1?code=ENR-7KQ2-M9XD-4WPA", "has no server in it."),
        (None, "No QR code was found in"),
        (b"not an image", "is not an image this scanner can read."),
    ],
)
def test_an_image_without_an_enrollment_qr_says_what_it_holds(
    qtbot: QtBot,
    tmp_path: Path,
    enrollment_dialog: EnrollmentDialog,
    content: str | bytes | None,
    says: str,
) -> None:
    path = tmp_path / "picture.png"
    if isinstance(content, str):
        _qr_png(path, content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        cv2.imwrite(str(path), np.full((200, 200, 3), 255, dtype=np.uint8))  # a blank picture
    dialog = enrollment_dialog
    dialog.read_qr_file(path)
    qtbot.waitUntil(lambda: not dialog.busy and dialog.message_label.isVisible())
    assert says in dialog.message_label.text()
    assert dialog.server_edit.text() == ""


def test_a_rogue_enrollment_qr_with_a_plain_http_server_is_refused_without_a_request(
    qtbot: QtBot,
    tmp_path: Path,
    enrollment_dialog: EnrollmentDialog,
    connection_attempts: list[object],
) -> None:
    rogue = EnrollmentLink("http://evil.example", "ENR-7KQ2-M9XD-4WPA").text()
    dialog = enrollment_dialog

    dialog.read_qr_file(_qr_png(tmp_path / "rogue.png", rogue))
    qtbot.waitUntil(lambda: not dialog.busy and dialog.message_label.isVisible())

    assert dialog.message_label.text() == INSECURE_SERVER_SENTENCE
    assert dialog.server_edit.text() == ""
    assert connection_attempts == []
    assert _enrollment_in(tmp_path / "scanner") is None


def test_a_typed_plain_http_address_is_refused_inline(
    qtbot: QtBot,
    tmp_path: Path,
    enrollment_dialog: EnrollmentDialog,
    connection_attempts: list[object],
) -> None:
    dialog = enrollment_dialog
    _type(qtbot, dialog, "http://gates.example.org", "ENR-7KQ2-M9XD-4WPA")
    qtbot.mouseClick(dialog.enroll_button, Qt.MouseButton.LeftButton)

    assert not dialog.busy
    assert dialog.server_error.text() == INSECURE_SERVER_SENTENCE
    assert dialog.server_edit.text() == "http://gates.example.org"  # kept, to be corrected
    assert connection_attempts == []
    assert _enrollment_in(tmp_path / "scanner") is None


@pytest.mark.parametrize("lab", [False, True])
def test_lab_mode_is_shown_in_the_status_bar_for_the_whole_session(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, lab: bool
) -> None:
    monkeypatch.setenv(lab_mode.ENV_VAR, "1" if lab else "0")
    bar = GateStatusBar()
    qtbot.addWidget(bar)
    bar.show()
    assert bar.lab_label.isVisible() is lab
    assert "insecure http://" in bar.lab_label.text()


def test_the_camera_scan_finds_an_enrollment_qr(qtbot: QtBot, tmp_path: Path) -> None:
    # The camera path with an image file as its source (what open_source takes).
    link = EnrollmentLink("https://gates.example.org", "ENR-7KQ2-M9XD-4WPA")
    image = _qr_png(tmp_path / "held-up.png", link.text())
    scanner = QrScanDialog(str(image))
    qtbot.addWidget(scanner)
    scanner.show()
    qtbot.waitUntil(lambda: _accepted(scanner))
    assert scanner.link == link


def test_the_camera_scan_names_a_camera_that_is_missing(qtbot: QtBot, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-camera.mp4"
    scanner = QrScanDialog(str(missing))
    qtbot.addWidget(scanner)
    assert scanner.message_label.text().startswith(f"Nothing was found at {missing}.")
    assert scanner.preview.text() == "No camera picture."


# --- settings ---------------------------------------------------------------------------------


def _gate_event() -> wire.GateEvent:
    start = datetime(2026, 7, 4, 18, 0, tzinfo=UTC)
    return wire.GateEvent(
        event_id=uuid.uuid4(),
        name="Summer Night",
        venue="Riverside Arena",
        starts_at=start,
        ends_at=start + timedelta(hours=5),
    )


@pytest.fixture
def enrolled_store(tmp_path: Path) -> Iterator[LocalStore]:
    """A store as enrollment leaves it (identity and event), with settings of its own."""
    store = LocalStore.open(tmp_path / "gate")
    gate_event = _gate_event()
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
                enrolled_at=datetime.now(UTC),
            ),
        )
        save_event(conn, gate_event)
        save_settings(conn, GateSettings(debounce_seconds=2.0, sync_interval_seconds=7.0))
    yield store
    store.close()


def _stored(store: LocalStore) -> GateSettings:
    with store.read() as conn:
        return load_settings(conn)


def _settings_dialog(qtbot: QtBot, store: LocalStore) -> SettingsDialog:
    dialog = SettingsDialog(store)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def _retype(qtbot: QtBot, field: QLineEdit, text: str) -> None:
    field.selectAll()
    qtbot.keyClicks(field, text)


def test_settings_changed_and_ok_are_stored_in_one_go(
    qtbot: QtBot, tmp_path: Path, enrolled_store: LocalStore
) -> None:
    before = _stored(enrolled_store)
    folder = tmp_path / "frames"
    folder.mkdir()
    dialog = _settings_dialog(qtbot, enrolled_store)
    dialog.camera_combo.setEditText(str(folder))
    qtbot.mouseClick(dialog.exit_radio, Qt.MouseButton.LeftButton)
    dialog.sounds_check.click()
    dialog.strict_check.click()
    _retype(qtbot, dialog.verdict_edit, "5,5")
    _retype(qtbot, dialog.timeout_edit, "1.5")

    with qtbot.waitSignal(dialog.saved) as signal:
        qtbot.keyClick(dialog.verdict_edit, Qt.Key.Key_Return)  # Enter presses OK

    expected = GateSettings(
        direction=Direction.EXIT,
        strict=True,
        debounce_seconds=before.debounce_seconds,
        online_validation=True,
        online_timeout_seconds=1.5,
        sync_interval_seconds=before.sync_interval_seconds,
        verdict_seconds=5.5,
        camera=str(folder),
        sounds=False,
    )
    assert _stored(enrolled_store) == expected == signal.args[0]
    assert _accepted(dialog)


def test_turning_online_validation_off_is_stored(qtbot: QtBot, enrolled_store: LocalStore) -> None:
    dialog = _settings_dialog(qtbot, enrolled_store)
    dialog.online_check.click()
    assert not dialog.timeout_edit.isEnabled()
    dialog.ok_button.click()
    assert _stored(enrolled_store).online_validation is False


def test_cancel_changes_nothing(qtbot: QtBot, enrolled_store: LocalStore) -> None:
    before = _stored(enrolled_store)
    dialog = _settings_dialog(qtbot, enrolled_store)
    dialog.exit_radio.click()
    dialog.strict_check.click()
    _retype(qtbot, dialog.verdict_edit, "9")
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    assert not _accepted(dialog)
    assert _stored(enrolled_store) == before


@pytest.mark.parametrize("typed", ["0", "abc", "", "61", "nan"])
def test_an_invalid_verdict_time_is_refused_inline(
    qtbot: QtBot, enrolled_store: LocalStore, typed: str
) -> None:
    before = _stored(enrolled_store)
    dialog = _settings_dialog(qtbot, enrolled_store)
    dialog.verdict_edit.setText(typed)
    dialog.ok_button.click()
    assert dialog.isVisible()
    assert not _accepted(dialog)
    assert dialog.verdict_error.isVisible()
    assert dialog.verdict_error.text() == (
        "The verdict time must be a number of seconds from 0.5 to 60."
    )
    assert _stored(enrolled_store) == before

    _retype(qtbot, dialog.verdict_edit, "4")
    dialog.ok_button.click()
    assert _accepted(dialog)
    assert _stored(enrolled_store).verdict_seconds == 4.0


def test_a_camera_file_that_does_not_exist_is_refused_inline(
    qtbot: QtBot, tmp_path: Path, enrolled_store: LocalStore
) -> None:
    dialog = _settings_dialog(qtbot, enrolled_store)
    missing = tmp_path / "gone.mp4"
    dialog.camera_combo.setEditText(str(missing))
    dialog.ok_button.click()
    assert not _accepted(dialog)
    assert dialog.camera_error.text() == f"There is no camera, file or folder called {missing}."


def test_gate_and_event_are_shown_as_the_servers(qtbot: QtBot, enrolled_store: LocalStore) -> None:
    dialog = _settings_dialog(qtbot, enrolled_store)
    assert dialog.gate_edit.text() == "North 1"
    assert dialog.gate_edit.isReadOnly()
    event_text = dialog.event_label.text()
    assert "Summer Night" in event_text
    assert "Riverside Arena" in event_text
    assert "No re-entry" in event_text
    assert dialog.online_check.isEnabled()
    # The camera field starts at the stored camera.
    assert dialog.camera_spec() == "0"


def test_a_scanner_without_a_server_cannot_ask_one(qtbot: QtBot, tmp_path: Path) -> None:
    store = LocalStore.open(tmp_path / "standalone")
    try:
        dialog = _settings_dialog(qtbot, store)
        assert not dialog.online_check.isEnabled()
        assert not dialog.online_check.isChecked()
        assert "enroll this scanner first" in dialog.event_label.text()
        dialog.ok_button.click()
        # Online validation stays as it was stored: nothing the form could not change.
        assert _stored(store).online_validation is True
    finally:
        store.close()


# --- cameras ----------------------------------------------------------------------------------


def test_cameras_are_listed_from_sysfs_without_metadata_nodes(tmp_path: Path) -> None:
    for name, index, label in [
        ("video0", "0", "Integrated Camera"),
        ("video1", "1", "Integrated Camera"),  # the UVC metadata node
        ("video2", "0", "USB Gate Cam"),
    ]:
        node = tmp_path / name
        node.mkdir()
        (node / "index").write_text(index + "\n")
        (node / "name").write_text(label + "\n")
    (tmp_path / "v4l-subdev0").mkdir()
    found = available_cameras(tmp_path, platform="linux")
    assert [(c.spec, c.label) for c in found] == [
        ("0", "Camera 0: Integrated Camera"),
        ("2", "Camera 2: USB Gate Cam"),
    ]
    assert available_cameras(tmp_path / "absent", platform="linux") == []
    assert [c.spec for c in available_cameras(tmp_path, platform="win32")] == ["0", "1", "2", "3"]
