"""The scan log's Qt item models (``ScanLogModel``, ``GateCountsModel`` — the app's only
``QAbstractItemModel`` subclasses) keep the model contract, checked by pytest-qt's
``qtmodeltester`` over a store the real core filled: at first, and through every change the
app makes to them — a filter, a sort, paging, a refresh with new scans and changed states, and
the counts read on the tally queue.

Both testers run: Qt's own ``QAbstractItemModelTester`` (it stays attached and re-checks on
every signal the model sends; failures are Qt warnings, so each test asserts there were none)
and pytest-qt's Python tester (``force_py``: a failure is an exception in the test)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QAbstractItemModel, QModelIndex, Qt
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from scanner_app.core.store.scanlog import ScanFilter
from scanner_app.ui.scanlog_model import GateCountsModel, ScanLogModel
from shared.domain import Direction, VerdictResult
from tests.scanner_app.core.scanlog_venue import DOORS, LoggedVenue, open_logged_venue

TESTERS = [pytest.param(False, id="qt-tester"), pytest.param(True, id="python-tester")]


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[LoggedVenue]:
    opened = open_logged_venue(tmp_path / "scanner")
    yield opened
    opened.store.close()


@pytest.fixture
def log_model(qtbot: QtBot, venue: LoggedVenue) -> Iterator[ScanLogModel]:
    model = ScanLogModel(venue.store, page_size=3)  # small pages: paging is exercised
    _settled(qtbot, model)
    yield model
    model.wait_for_tally()


def _settled(qtbot: QtBot, model: ScanLogModel) -> None:
    qtbot.waitUntil(lambda: not model.counting)


def _check(tester: ModelTester, model: QAbstractItemModel, force_py: bool) -> None:
    tester.check(model, force_py=force_py)  # type: ignore[no-untyped-call]  # pytest-qt's


def _no_tester_failures(qtlog: object) -> None:
    records = getattr(qtlog, "records", [])
    failures = [r.message for r in records if "FAIL" in r.message or "modeltest" in r.message]
    assert failures == []


@pytest.mark.parametrize("force_py", TESTERS)
def test_the_scan_log_model_keeps_the_contract_through_filters_sorting_and_paging(
    qtbot: QtBot,
    qtmodeltester: ModelTester,
    qtlog: object,
    log_model: ScanLogModel,
    force_py: bool,
) -> None:
    model = log_model
    assert model.rowCount() == 3  # real rows in it before the first check
    _check(qtmodeltester, model, force_py)

    while model.canFetchMore(QModelIndex()):
        model.fetchMore(QModelIndex())
    assert model.rowCount() == 8

    model.set_filter(ScanFilter(results=frozenset({VerdictResult.ADMITTED})))
    _settled(qtbot, model)
    model.fetchMore(QModelIndex())
    model.set_filter(ScanFilter(gates=frozenset({"North"}), text="a"))
    _settled(qtbot, model)
    model.set_filter(ScanFilter(gates=frozenset({"Nowhere"})))  # an empty table
    assert model.rowCount() == 0
    model.set_filter(ScanFilter())

    model.sort(ScanLogModel.TIME, Qt.SortOrder.AscendingOrder)
    model.fetchMore(QModelIndex())
    model.sort(ScanLogModel.TIME, Qt.SortOrder.DescendingOrder)
    _settled(qtbot, model)
    _no_tester_failures(qtlog)


@pytest.mark.parametrize("force_py", TESTERS)
def test_the_scan_log_model_keeps_the_contract_when_refreshed(
    qtbot: QtBot,
    qtmodeltester: ModelTester,
    qtlog: object,
    venue: LoggedVenue,
    log_model: ScanLogModel,
    force_py: bool,
) -> None:
    model = log_model
    model.fetchMore(QModelIndex())  # two pages loaded, more to come
    _check(qtmodeltester, model, force_py)

    # New scans: one sorts first (inserted), another gate's older admission sorts beyond the
    # loaded pages (left for fetchMore); an annulment changes a loaded row (dataChanged).
    verdict = venue.scan("ada_out", venue.code("ada"), Direction.EXIT)
    venue.peer("late_peer", "ada", DOORS + timedelta(minutes=1), Direction.EXIT)
    model.refresh()
    _settled(qtbot, model)
    assert model.entry(0).scan.scan_id == verdict.verdict.scan_id
    assert venue.gate.annul(venue.scans["admitted"])
    model.refresh()
    _settled(qtbot, model)
    while model.canFetchMore(QModelIndex()):
        model.fetchMore(QModelIndex())
    assert model.rowCount() == 10
    _no_tester_failures(qtlog)


@pytest.mark.parametrize("force_py", TESTERS)
def test_the_counts_per_gate_model_keeps_the_contract_as_counts_change(
    qtbot: QtBot,
    qtmodeltester: ModelTester,
    qtlog: object,
    venue: LoggedVenue,
    log_model: ScanLogModel,
    force_py: bool,
) -> None:
    counts = GateCountsModel(log_model)
    assert counts.rowCount() == 3  # North, South, All gates
    _check(qtmodeltester, counts, force_py)

    venue.scan("ada_out", venue.code("ada"), Direction.EXIT)
    venue.peer("west", "grace", DOORS + timedelta(minutes=2))
    log_model.refresh()
    _settled(qtbot, log_model)
    assert counts.rowCount() == 3
    log_model.set_filter(ScanFilter(conflicts_only=True))  # counts are the whole log's
    _settled(qtbot, log_model)
    _no_tester_failures(qtlog)
