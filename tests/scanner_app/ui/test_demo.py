"""The demo mode: every demo code gets the verdict its label promises through a real gate; the
demo codes window draws codes that read back, hands the shown code to the app, and scans image
files; the self-test of a build passes."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from scanner_app.core.checkin import gate_label
from scanner_app.core.decoding import create_decoder
from scanner_app.core.demo import (
    DEMO_EVENT_NAME,
    DEMO_GATE,
    STAGE_DOOR,
    VIP_GATE,
    scan_demo_code,
    stand_at,
)
from scanner_app.core.gate import Gate
from scanner_app.core.session import device_status
from scanner_app.core.store import LocalStore, StoreError
from scanner_app.core.store.cache import ticket_count
from scanner_app.core.store.scanlog import local_scans
from scanner_app.core.store.scans import queued_scans
from scanner_app.core.synthetic_frames import render_qr
from scanner_app.ui.demo import (
    DemoCodesWindow,
    DemoFolderInUse,
    DemoSetup,
    gray_pixels,
    prepare_demo,
)
from scanner_app.ui.main_window import MainWindow
from scanner_app.ui.scanlog import ScanLogWidget
from scanner_app.ui.selftest import run_self_test
from shared.clock import ManualClock
from shared.domain import VerdictReason, VerdictResult


@pytest.fixture
def setup(tmp_path: Path) -> DemoSetup:
    return prepare_demo(tmp_path / "demo")


def test_every_demo_code_gets_the_verdict_its_label_promises(setup: DemoSetup) -> None:
    store = LocalStore.open(setup.data_dir)
    try:
        clock = ManualClock(datetime.now(UTC))
        gate = Gate(store, clock=clock)
        # Each at its gate: the device moves to the VIP gate and the stage door and back.
        said = {code.label: scan_demo_code(store, gate, code) for code in setup.codes}
        for code in setup.codes:
            assert code.matches(said[code.label]), (code.label, said[code.label])

        # A person can try every verdict the gate gives offline (the rest need a server).
        reasons = {code.reason for code in setup.codes}
        assert reasons >= {
            None,
            VerdictReason.ALREADY_CHECKED_IN,
            VerdictReason.REVOKED,
            VerdictReason.SUPERSEDED,
            VerdictReason.EXPIRED,
            VerdictReason.NOT_YET_VALID,
            VerdictReason.WRONG_EVENT,
            VerdictReason.INVALID_CODE,
            VerdictReason.UNKNOWN_KEY,
            VerdictReason.NOT_ON_LIST,
            VerdictReason.RULE_FAILED,
        }
        valid = [c for c in setup.codes if c.result is VerdictResult.ADMITTED]
        assert sum(not c.on_signature for c in valid) >= 2
        assert setup.codes[-1].gate == DEMO_GATE  # the device ends where it began
        assert [c.on_signature for c in valid].count(True) == 1
        assert said[valid[0].label].verdict.holder_name == "Ada Lovelace"
        assert said[valid[0].label].verdict.ticket_type == "General admission"

        used = next(c for c in setup.codes if c.reason is VerdictReason.ALREADY_CHECKED_IN)
        prior = said[used.label].verdict.prior
        assert prior is not None
        assert prior.gate == "Gate B"
        assert timedelta(minutes=19) < clock.now() - prior.scanned_at < timedelta(minutes=21)

        # A valid code scanned again once the debounce window is over: already checked in here.
        clock.advance(gate.settings.debounce_seconds + 1)
        again = gate.scan(valid[0].code)
        assert again.verdict.reason is VerdictReason.ALREADY_CHECKED_IN
        assert again.sentence.endswith(f"at {DEMO_GATE}.")
        with store.read() as conn:
            # Recorded in the demo's log, and queued for no server.
            assert len(local_scans(conn)) == len(setup.codes) + 1
            assert queued_scans(conn, 100) == []
    finally:
        store.close()


def test_the_demo_has_a_vip_gate_a_wrong_day_and_a_move_from_arena_to_backstage(
    setup: DemoSetup,
) -> None:
    """Issue 16's demo: a general admission ticket at the VIP gate is refused naming where it
    enters; a day pass for tomorrow is refused naming both days; a crew member in the arena
    scanned at the stage door moves backstage, and inside-now per zone follows."""
    by_gate = {code.gate: code for code in setup.codes if code.gate != DEMO_GATE}
    assert set(by_gate) == {VIP_GATE, STAGE_DOOR}
    store = LocalStore.open(setup.data_dir)
    try:
        gate = Gate(store, clock=ManualClock(datetime.now(UTC)))
        assert gate.access is not None
        assert gate_label(gate.access, DEMO_GATE) == "Arena list · Arena"
        refused = scan_demo_code(store, gate, by_gate[VIP_GATE])
        assert refused.verdict.reason is VerdictReason.NOT_ON_LIST
        assert refused.sentence == "General admission tickets enter at Gate A, Gate B or Gate C."
        assert gate.enrollment.gate == VIP_GATE
        assert device_status(store).gate_lists == "VIP list · Lounge"

        before = device_status(store).inside_by_zone
        moved = scan_demo_code(store, gate, by_gate[STAGE_DOOR])
        assert moved.admitted
        assert (moved.enters_zone, moved.leaves_zone) == ("Backstage", "Arena")
        after = device_status(store).inside_by_zone
        assert after["Arena"] == before["Arena"] - 1
        assert after["Backstage"] == 1

        day_pass = next(c for c in setup.codes if c.reason is VerdictReason.RULE_FAILED)
        wrong_day = scan_demo_code(store, gate, day_pass)
        assert wrong_day.verdict.reason is VerdictReason.RULE_FAILED
        today = datetime.now(UTC).strftime("%A")
        assert wrong_day.sentence.startswith("Day pass for ")
        assert wrong_day.sentence.endswith(f"today is {today}.")
        assert gate.enrollment.gate == DEMO_GATE
    finally:
        store.close()


def test_only_the_demo_device_moves_between_gates(tmp_path: Path) -> None:
    store = LocalStore.open(tmp_path / "data")
    try:
        with pytest.raises(StoreError, match="Only the demo scanner"):
            stand_at(store, VIP_GATE)
    finally:
        store.close()


def test_the_demo_event_is_happening_now_with_fifty_tickets(setup: DemoSetup) -> None:
    now = datetime.now(UTC)
    event = setup.gate_event
    assert event.name == DEMO_EVENT_NAME
    assert event.starts_at < now < event.ends_at
    assert setup.tickets == 50
    assert setup.peer_admissions > 1
    store = LocalStore.open(setup.data_dir)
    try:
        with store.read() as conn:
            assert ticket_count(conn) == 50
    finally:
        store.close()


def test_a_new_demo_starts_afresh_but_never_over_a_real_scanner(tmp_path: Path) -> None:
    first = prepare_demo(tmp_path / "demo")
    store = LocalStore.open(first.data_dir)
    try:
        Gate(store).scan(first.codes[0].code)
    finally:
        store.close()
    second = prepare_demo(tmp_path / "demo")
    store = LocalStore.open(second.data_dir)
    try:
        with store.read() as conn:
            assert local_scans(conn) == []  # the earlier demo's scans are gone
        assert Gate(store).scan(second.codes[0].code).admitted
    finally:
        store.close()

    LocalStore.open(tmp_path / "real").close()
    with pytest.raises(DemoFolderInUse, match="will not overwrite"):
        prepare_demo(tmp_path / "real")


def test_the_window_draws_each_code_as_a_qr_that_reads_back(qtbot: QtBot, setup: DemoSetup) -> None:
    window = DemoCodesWindow(setup)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    decoder = create_decoder("zxing")
    assert window.codes_list.count() == len(setup.codes)
    for index, code in enumerate(setup.codes):
        window.show_code(index)
        assert window.title.text() == code.label
        assert code.expected in window.expected.text()
        read = [symbol.text for symbol in decoder.decode(gray_pixels(window.shown_qr()))]
        assert read == [code.code], code.label


def test_scan_this_hands_the_shown_code_to_the_app(qtbot: QtBot, setup: DemoSetup) -> None:
    window = DemoCodesWindow(setup)
    qtbot.addWidget(window)
    window.show()
    window.show_code(4)
    with (
        qtbot.waitSignal(window.gate_requested) as moved,
        qtbot.waitSignal(window.scan_requested) as clicked,
    ):
        QTest.mouseClick(window.scan_button, Qt.MouseButton.LeftButton)
    assert moved.args == [setup.codes[4].gate]
    assert clicked.args == [setup.codes[4].code]

    # Keyboard only: Down to the next code, Enter on the list scans it.
    QTest.keyClick(window.codes_list, Qt.Key.Key_Down)
    with qtbot.waitSignal(window.scan_requested) as entered:
        QTest.keyClick(window.codes_list, Qt.Key.Key_Return)
    assert entered.args == [setup.codes[5].code]
    assert setup.codes[5].label in window.status.text()


def test_an_image_file_is_read_and_its_code_scanned(
    qtbot: QtBot, setup: DemoSetup, tmp_path: Path
) -> None:
    window = DemoCodesWindow(setup)
    qtbot.addWidget(window)
    photo = tmp_path / "ticket photo.png"
    code = setup.codes[2].code
    canvas = np.full((600, 800), 200, np.uint8)
    qr = render_qr(code, module_px=5)
    canvas[50 : 50 + qr.shape[0], 100 : 100 + qr.shape[1]] = qr
    assert cv2.imwrite(str(photo), canvas)
    with qtbot.waitSignal(window.scan_requested) as scanned:
        window.scan_image_file(photo)
    assert scanned.args == [code]
    qtbot.waitUntil(lambda: not window.busy)
    assert window.status.text() == "Scanned 1 code from ticket photo.png."

    blank = tmp_path / "blank.png"
    assert cv2.imwrite(str(blank), np.full((100, 100), 255, np.uint8))
    window.scan_image_file(blank)
    qtbot.waitUntil(lambda: not window.busy)
    assert window.status.text() == "No QR code was found in blank.png."

    window.scan_image_file(tmp_path / "missing.png")
    qtbot.waitUntil(lambda: not window.busy)
    assert "Nothing was found at" in window.status.text()


def test_the_self_test_passes(qtbot: QtBot) -> None:
    out = io.StringIO()
    assert run_self_test(out) == 0, out.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("all checks passed")
    assert not [line for line in lines if line.startswith("FAIL")]
    assert sum(line.startswith("ok   verdict: ") for line in lines) >= 10


def test_the_scan_log_filters_the_demo_by_list_and_zone(qtbot: QtBot, setup: DemoSetup) -> None:
    store = LocalStore.open(setup.data_dir)
    try:
        gate = Gate(store, clock=ManualClock(datetime.now(UTC)))
        crew = next(code for code in setup.codes if code.gate == STAGE_DOOR)
        assert scan_demo_code(store, gate, crew).admitted
        widget = ScanLogWidget(store)
        qtbot.addWidget(widget)
        qtbot.waitUntil(lambda: not widget.model.counting)
        lists = [widget.list_filter.itemText(i) for i in range(widget.list_filter.count())]
        zones = [widget.zone_filter.itemText(i) for i in range(widget.zone_filter.count())]
        assert lists == ["Any list", "Arena", "Backstage", "VIP"]
        assert zones == ["Any zone", "Arena", "Backstage", "Lounge"]
        assert "Backstage 1" in widget.zones_label.text()

        widget.zone_filter.setCurrentIndex(zones.index("Backstage"))
        qtbot.waitUntil(lambda: not widget.model.counting)
        assert widget.model.rowCount() == 1
        only = widget.model.entry(0)
        assert (only.scan.gate, only.scan.zone) == (STAGE_DOOR, "Backstage")
        widget.table.selectRow(0)
        qtbot.waitUntil(lambda: "Check-in list: Backstage" in widget.details.toPlainText())
        assert "Zone: Backstage" in widget.details.toPlainText()

        widget.zone_filter.setCurrentIndex(0)
        widget.list_filter.setCurrentIndex(lists.index("Arena"))
        qtbot.waitUntil(lambda: not widget.model.counting)
        assert widget.model.total == setup.peer_admissions  # the other gates' arena entries
        widget.model.wait_for_tally()
    finally:
        store.close()


def test_the_gate_screen_names_the_list_and_zone_and_counts_inside_per_zone(
    qtbot: QtBot, setup: DemoSetup
) -> None:
    store = LocalStore.open(setup.data_dir)
    window = MainWindow(store, sounds=None, camera=False)
    qtbot.addWidget(window)
    try:
        window.show()
        with qtbot.waitSignal(window.bridge.ready, timeout=20_000):
            window.start()
        screen = window.gate_screen
        qtbot.waitUntil(screen.lists_label.isVisible, timeout=10_000)
        assert screen.lists_label.text() == "This gate scans: Arena list · Arena"
        qtbot.waitUntil(lambda: "(Arena " in screen.inside_label.text(), timeout=10_000)
        assert window.status_bar.lists_label.text().startswith("Lists v1 (")

        crew = next(code for code in setup.codes if code.gate == STAGE_DOOR)
        window.bridge.move_to_gate(crew.gate)
        window.bridge.scan_text(crew.code)
        qtbot.waitUntil(
            lambda: screen.lists_label.text() == "This gate scans: Backstage list · Backstage",
            timeout=10_000,
        )
        qtbot.waitUntil(lambda: "Backstage 1" in screen.inside_label.text(), timeout=10_000)
        assert screen.panel.sentence_label.text() == crew.sentence
    finally:
        window.close()
        store.close()
