"""The managers' scan log: the model's rows and cells, every filter, paging, conflict
highlighting, details, CSV export, counts per gate and refresh — over a store the real core
filled (gate scans, feed admissions, an upload answer naming a double entry)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QDateTime, QModelIndex, Qt
from PySide6.QtGui import QBrush
from pytestqt.qtbot import QtBot

from scanner_app.core.store.scanlog import ScanFilter
from scanner_app.core.store.scans import record_outcomes
from scanner_app.ui.scanlog import ScanLogWidget
from scanner_app.ui.scanlog_model import (
    CONFLICT_BACKGROUND,
    CONFLICT_MARK,
    CSV_HEADER,
    ScanLogModel,
    local_time,
)
from shared import wire
from shared.domain import Direction, VerdictReason, VerdictResult
from tests.scanner_app.core.scanlog_venue import (
    DOORS,
    FORMULA_HOLDER,
    FORMULA_TYPE,
    LoggedVenue,
    open_logged_venue,
)

NEWEST_FIRST = [
    "conflict",
    "forged",
    "exit",
    "revoked",
    "again",
    "admitted",
    "peer_formula",
    "peer_grace",
]


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[LoggedVenue]:
    opened = open_logged_venue(tmp_path / "scanner")
    yield opened
    opened.store.close()


@pytest.fixture
def widget(qtbot: QtBot, venue: LoggedVenue) -> Iterator[ScanLogWidget]:
    shown = ScanLogWidget(venue.store)
    qtbot.addWidget(shown)
    _settled(qtbot, shown.model)
    yield shown
    shown.model.wait_for_tally()


def _settled(qtbot: QtBot, model: ScanLogModel) -> None:
    """Wait for the counts the model reads on a worker thread."""
    qtbot.waitUntil(lambda: not model.counting)


def _labels(venue: LoggedVenue, model: ScanLogModel) -> list[str]:
    names = {scan_id: label for label, scan_id in venue.scans.items()}
    return [names[model.entry(row).scan.scan_id] for row in range(model.rowCount())]


def _text(model: ScanLogModel, row: int, column: int) -> str:
    value = model.data(model.index(row, column))
    assert isinstance(value, str)
    return value


def _row_of(venue: LoggedVenue, model: ScanLogModel, label: str) -> int:
    return _labels(venue, model).index(label)


def test_the_table_shows_every_scan_newest_first_in_words(
    venue: LoggedVenue, widget: ScanLogWidget
) -> None:
    model = widget.model
    assert model.rowCount() == 8
    assert model.columnCount() == len(ScanLogModel.HEADERS)
    assert _labels(venue, model) == NEWEST_FIRST
    again = _row_of(venue, model, "again")
    assert [_text(model, again, c) for c in range(model.columnCount())] == [
        local_time(DOORS + timedelta(minutes=30, seconds=20)),
        "Entry",
        "Rejected",
        VerdictReason.ALREADY_CHECKED_IN.sentence,
        "North",
        "This device",
        "General admission",
        "Ada Lovelace",
        "Offline",
        "Queued",
        "",
    ]
    admitted = _row_of(venue, model, "admitted")
    assert _text(model, admitted, ScanLogModel.UPLOAD) == "Uploaded"
    assert _text(model, admitted, ScanLogModel.RESULT) == "Admitted"
    peer = _row_of(venue, model, "peer_grace")
    assert _text(model, peer, ScanLogModel.GATE) == "South"
    assert _text(model, peer, ScanLogModel.ORIGIN).startswith("Other device ")
    assert _text(model, peer, ScanLogModel.HOLDER) == ""
    assert _text(model, peer, ScanLogModel.UPLOAD) == "From server"
    assert _text(model, _row_of(venue, model, "exit"), ScanLogModel.DIRECTION) == "Exit"
    assert widget.total_label.text() == "8 scans"


def test_a_conflict_is_marked_in_words_and_in_colour(
    venue: LoggedVenue, widget: ScanLogWidget
) -> None:
    model = widget.model
    for row, label in enumerate(_labels(venue, model)):
        background = model.data(model.index(row, ScanLogModel.GATE), Qt.ItemDataRole.BackgroundRole)
        mark = _text(model, row, ScanLogModel.CONFLICT)
        if label == "conflict":
            assert isinstance(background, QBrush)
            assert background.color() == CONFLICT_BACKGROUND
            assert mark == CONFLICT_MARK
        else:
            assert background is None, label
            assert mark == "", label


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (ScanFilter(results=frozenset({VerdictResult.REJECTED})), ["forged", "revoked", "again"]),
        (ScanFilter(reasons=frozenset({VerdictReason.REVOKED})), ["revoked"]),
        (ScanFilter(gates=frozenset({"South"})), ["peer_formula", "peer_grace"]),
        (
            ScanFilter(
                since=DOORS + timedelta(minutes=30, seconds=20),
                until=DOORS + timedelta(minutes=30, seconds=40),
            ),
            ["revoked", "again"],
        ),
        (ScanFilter(text="ada"), ["again", "admitted"]),
        (ScanFilter(text="South"), ["peer_formula", "peer_grace"]),
        (ScanFilter(conflicts_only=True), ["conflict"]),
    ],
)
def test_each_filter_gives_exactly_its_rows_even_across_pages(
    qtbot: QtBot, venue: LoggedVenue, flt: ScanFilter, expected: list[str]
) -> None:
    # Pages of two rows: the filter must reach rows on pages not loaded yet.
    model = ScanLogModel(venue.store, page_size=2)
    model.set_filter(flt)
    while model.canFetchMore(QModelIndex()):
        model.fetchMore(QModelIndex())
    assert _labels(venue, model) == expected
    _settled(qtbot, model)
    assert model.total == len(expected)


def test_the_filter_bar_drives_the_model(
    qtbot: QtBot, venue: LoggedVenue, widget: ScanLogWidget
) -> None:
    widget.result_filter.setCurrentIndex(widget.result_filter.findData(VerdictResult.REJECTED))
    assert _labels(venue, widget.model) == ["forged", "revoked", "again"]
    widget.reason_filter.setCurrentIndex(
        widget.reason_filter.findData(VerdictReason.ALREADY_CHECKED_IN)
    )
    assert _labels(venue, widget.model) == ["again"]
    widget.result_filter.setCurrentIndex(0)
    widget.reason_filter.setCurrentIndex(0)
    assert widget.gate_filter.findData("South") > 0
    widget.gate_filter.setCurrentIndex(widget.gate_filter.findData("South"))
    assert _labels(venue, widget.model) == ["peer_formula", "peer_grace"]
    widget.gate_filter.setCurrentIndex(0)
    # From 18:06 to 18:20 (the device's local time): South's second admission only.
    widget.since_edit.setDateTime(_qt_time(DOORS + timedelta(minutes=6)))
    widget.until_edit.setDateTime(_qt_time(DOORS + timedelta(minutes=20)))
    widget.since_enabled.setChecked(True)
    widget.until_enabled.setChecked(True)
    assert _labels(venue, widget.model) == ["peer_formula"]
    widget.since_enabled.setChecked(False)
    widget.until_enabled.setChecked(False)
    qtbot.keyClicks(widget.text_filter, "hopper")  # type: ignore[no-untyped-call]
    qtbot.waitUntil(lambda: _labels(venue, widget.model) == ["exit"])
    _settled(qtbot, widget.model)
    assert widget.total_label.text() == "1 scan"


def test_pages_load_as_the_view_asks_for_more(qtbot: QtBot, venue: LoggedVenue) -> None:
    model = ScanLogModel(venue.store, page_size=3)
    assert model.rowCount() == 3
    _settled(qtbot, model)
    assert model.total == 8
    assert model.canFetchMore(QModelIndex())
    model.fetchMore(QModelIndex())
    assert model.rowCount() == 6
    model.fetchMore(QModelIndex())
    assert not model.canFetchMore(QModelIndex())
    assert _labels(venue, model) == NEWEST_FIRST
    model.sort(ScanLogModel.TIME, Qt.SortOrder.AscendingOrder)
    while model.canFetchMore(QModelIndex()):
        model.fetchMore(QModelIndex())
    assert _labels(venue, model) == NEWEST_FIRST[::-1]
    model.wait_for_tally()


def test_details_name_the_earlier_admission_and_explain_a_conflict(
    venue: LoggedVenue, widget: ScanLogWidget
) -> None:
    model = widget.model
    widget.table.selectRow(_row_of(venue, model, "again"))
    details = widget.details.toPlainText()
    assert "Holder: Ada Lovelace" in details
    assert f"Scan id: {venue.scans['again']}" in details
    first = local_time(DOORS + timedelta(minutes=30, seconds=10))
    assert f"Checked in before: {first} at North, this device" in details
    widget.table.selectRow(_row_of(venue, model, "conflict"))
    details = widget.details.toPlainText()
    south = local_time(DOORS + timedelta(minutes=10))
    assert f"Double entry: the server found this ticket had already entered ({south} at South" in (
        details
    )


def test_csv_export_holds_the_filtered_rows_with_formulas_defused(
    qtbot: QtBot, tmp_path: Path, venue: LoggedVenue, widget: ScanLogWidget
) -> None:
    widget.model.set_filter(
        ScanFilter(results=frozenset({VerdictResult.ADMITTED}), gates=frozenset({"North"}))
    )
    target = tmp_path / "export.csv"
    with qtbot.waitSignal(widget.exported) as done:
        widget.export_to(target)
    assert done.args == [str(target), 3]
    with target.open(encoding="utf-8-sig", newline="") as exported:
        rows = list(csv.DictReader(exported))
        exported.seek(0)
        assert next(csv.reader(exported)) == list(CSV_HEADER)
    assert [r["scan_id"] for r in rows] == [
        str(venue.scans[label]) for label in ("conflict", "exit", "admitted")
    ]
    conflict, exit_row, admitted = rows
    # Typed by buyers: a spreadsheet must show them, not run them.
    assert conflict["holder"] == "'" + FORMULA_HOLDER
    assert conflict["ticket_type"] == "'" + FORMULA_TYPE
    assert conflict["conflict_of"] == str(venue.scans["peer_formula"])
    assert (exit_row["direction"], exit_row["holder"]) == ("exit", "Grace Hopper")
    assert (admitted["result"], admitted["upload"], admitted["ticket_id"]) == (
        "admitted",
        "uploaded",
        str(venue.tickets["ada"]),
    )
    assert admitted["time_local"] == local_time(DOORS + timedelta(minutes=30, seconds=10))


def test_an_export_to_an_unwritable_place_says_so(
    qtbot: QtBot, tmp_path: Path, widget: ScanLogWidget
) -> None:
    with qtbot.waitSignal(widget.export_failed) as failed:
        widget.export_to(tmp_path / "no such folder" / "export.csv")
    assert "Could not export" in failed.args[0]
    assert widget.export_button.isEnabled()


def _counts(widget: ScanLogWidget) -> list[list[str]]:
    model = widget.counts_model
    return [
        [model.data(model.index(row, column)) for column in range(model.columnCount())]
        for row in range(model.rowCount())
    ]


def test_counts_per_gate(widget: ScanLogWidget) -> None:
    assert _counts(widget) == [
        ["North", "1", "1", "1", "3", "1"],
        ["South", "2", "0", "1", "0", "0"],
        ["All gates", "3", "1", "2", "3", "1"],
    ]


def test_refresh_picks_up_new_scans_and_changed_states(
    qtbot: QtBot, venue: LoggedVenue, widget: ScanLogWidget
) -> None:
    model = widget.model
    venue.scan("ada_out", venue.code("ada"), Direction.EXIT)
    # Another gate's admission from the feed, older than most rows: it goes where it sorts.
    venue.peer("late_peer", "ada", DOORS + timedelta(minutes=1), Direction.EXIT)
    with venue.store.write() as conn:
        record_outcomes(
            conn,
            wire.ScanBatchOutcome(
                outcomes=[
                    wire.ScanOutcome(
                        scan_id=venue.scans["again"],
                        result=VerdictResult.REJECTED,
                        reason=VerdictReason.ALREADY_CHECKED_IN,
                    )
                ],
                server_time=venue.clock.now(),
            ),
        )
    assert model.rowCount() == 8
    widget.refresh()
    assert _labels(venue, model) == ["ada_out", *NEWEST_FIRST, "late_peer"]
    _settled(qtbot, model)
    assert _text(model, _row_of(venue, model, "again"), ScanLogModel.UPLOAD) == "Uploaded"
    assert widget.total_label.text() == "10 scans"
    assert _counts(widget)[0] == ["North", "1", "2", "0", "3", "1"]


def test_refresh_leaves_rows_beyond_the_loaded_pages_to_fetch_more(
    qtbot: QtBot, venue: LoggedVenue
) -> None:
    model = ScanLogModel(venue.store, page_size=3)
    venue.peer("late_peer", "grace", DOORS + timedelta(minutes=1))
    venue.scan("newest", venue.code("grace"), Direction.EXIT)
    model.refresh()
    assert _labels(venue, model)[:4] == ["newest", "conflict", "forged", "exit"]
    while model.canFetchMore(QModelIndex()):
        model.fetchMore(QModelIndex())
    assert _labels(venue, model) == ["newest", *NEWEST_FIRST, "late_peer"]
    _settled(qtbot, model)


def _qt_time(when: datetime) -> QDateTime:
    """The same instant as Qt's local date-time, as the editor holds it."""
    return QDateTime.fromMSecsSinceEpoch(int(when.timestamp() * 1000))
