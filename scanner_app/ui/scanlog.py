"""The scan log for venue managers, on the gate's own device: what happened here and at the
other gates this device heard of, filtered, with details, counts per gate and CSV export.

The table is a view of ``ScanLogModel`` (filtered and paged in the store, see
``scanlog_model``). The main window calls ``refresh()`` after each verdict and on a timer; a
refresh reads only what is new, so it can run every few seconds. An export reads every matching
scan, which can take a while for a big log, so it runs on a worker thread and reports back by
signal; the table stays usable meanwhile (a job on the widget's "export" queue, ``ui.jobs``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from functools import partial
from pathlib import Path

from PySide6.QtCore import (
    QDateTime,
    QItemSelection,
    QModelIndex,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateTimeEdit,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from scanner_app.core.checkin import zone_label
from scanner_app.core.store import LocalStore
from scanner_app.core.store.scanlog import (
    LogEntry,
    LoggedScan,
    ScanFilter,
    find_scan,
    prior_admission,
)
from scanner_app.ui.jobs import JobQueue
from scanner_app.ui.scanlog_model import (
    GateCountsModel,
    ScanLogModel,
    cell_text,
    local_time,
    write_csv,
)
from shared.domain import VerdictReason, VerdictResult

#: Typing in the search box filters after this pause, not on every keystroke.
TEXT_FILTER_DELAY_MS = 250


def details_text(
    entry: LogEntry,
    prior: LoggedScan | None,
    collided: LoggedScan | None,
    list_names: Mapping[uuid.UUID, str] | None = None,
) -> str:
    """Everything known about one scan, one "label: value" line each, for the details pane.
    ``prior`` is the admission an ``already_checked_in`` scan collided with; ``collided`` the
    admission the server said a double entry collided with (each None when unknown here);
    ``list_names`` names the event's check-in lists."""
    scan = entry.scan
    lines = [
        ("Time", local_time(scan.at)),
        ("Direction", cell_text(entry, ScanLogModel.DIRECTION)),
        ("Result", cell_text(entry, ScanLogModel.RESULT)),
        ("Reason", cell_text(entry, ScanLogModel.REASON) or "—"),
        ("Gate", scan.gate),
        ("Device", cell_text(entry, ScanLogModel.ORIGIN)),
        ("Ticket type", scan.ticket_type or "unknown"),
        ("Holder", entry.holder_name or "not known on this device"),
        ("Ticket id", str(scan.ticket_id) if scan.ticket_id else "not known on this device"),
        ("Mode", cell_text(entry, ScanLogModel.MODE)),
        ("Upload", cell_text(entry, ScanLogModel.UPLOAD)),
        ("Scan id", str(scan.scan_id)),
    ]
    if scan.checkin_list_id is not None:
        name = (list_names or {}).get(scan.checkin_list_id, f"list {scan.checkin_list_id}")
        lines.insert(5, ("Check-in list", name))
        lines.insert(6, ("Zone", zone_label(scan.zone)))
    if entry.device_time is not None and entry.clock_offset_ms:
        lines.append(
            (
                "Device clock",
                f"{local_time(entry.device_time)} (corrected by {entry.clock_offset_ms} ms)",
            )
        )
    if scan.on_signature:
        lines.append(("Note", "Admitted on the code's signature: not on the list yet."))
    if scan.annulled:
        lines.append(("Undone", "Staff undid this admission; it no longer counts."))
    if scan.server_result == "refused":
        lines.append(("Server", f"Refused the upload: {scan.server_reason or 'no reason given'}"))
    elif scan.server_result is not None:
        server = scan.server_result
        if scan.server_reason:
            server += f" ({_reason_words(scan.server_reason)})"
        lines.append(("Server's verdict", server))
    if scan.reason is VerdictReason.ALREADY_CHECKED_IN:
        lines.append(
            ("Checked in before", _admission_words(prior) if prior else "not known on this device")
        )
    if scan.conflict_of is not None:
        where = _admission_words(collided) if collided else f"scan {scan.conflict_of}"
        lines.append(
            (
                "Conflict",
                "Double entry: the server found this ticket had already entered "
                f"({where}). The guest did go in; the earlier admission is the one that "
                "counts.",
            )
        )
    return "\n".join(f"{label}: {value}" for label, value in lines)


def _reason_words(value: str) -> str:
    try:
        return VerdictReason(value).sentence
    except ValueError:
        return value


def _admission_words(scan: LoggedScan) -> str:
    where = "this device" if scan.origin == "local" else "another device"
    return f"{local_time(scan.at)} at {scan.gate}, {where}"


def _combo(parent: QWidget, name: str, anything: str) -> QComboBox:
    combo = QComboBox(parent)
    combo.setAccessibleName(name)
    combo.addItem(anything, None)
    return combo


class ScanLogWidget(QWidget):
    """Filter bar, scan table, details of the selected scan, counts per gate, CSV export."""

    #: An export finished: the file and how many scans it holds.
    exported = Signal(str, int)
    #: An export failed: a sentence saying why.
    export_failed = Signal(str)

    def __init__(self, store: LocalStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._store = store
        self.model = ScanLogModel(store, parent=self)
        self.counts_model = GateCountsModel(self.model, parent=self)
        self._exports = JobQueue("scanlog-export", self)

        self._build_filter_bar()
        self._build_table()
        body = QSplitter(Qt.Orientation.Horizontal, self)
        body.addWidget(self.table)
        body.addWidget(self._build_side())
        body.setStretchFactor(0, 3)
        body.setStretchFactor(1, 1)

        layout = QVBoxLayout(self)
        layout.addLayout(self._filters)
        layout.addWidget(body, 1)

        self.model.counts_changed.connect(self._counts_arrived)
        self.model.modelReset.connect(self._counting)
        self._counting()
        self.table.resizeColumnsToContents()

    def _build_table(self) -> None:
        self.table = QTableView(self)
        self.table.setObjectName("scanLogTable")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        # Only time sorts (the store pages by it): clicks elsewhere keep the time order.
        header.setSectionsClickable(True)
        header.setSortIndicatorShown(True)
        header.setSortIndicator(ScanLogModel.TIME, Qt.SortOrder.DescendingOrder)
        header.sectionClicked.connect(self._header_clicked)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)

    def _build_side(self) -> QSplitter:
        self.details = QPlainTextEdit(self)
        self.details.setObjectName("scanDetails")
        self.details.setReadOnly(True)
        self.details.setPlaceholderText("Select a scan to see everything about it.")

        self.counts = QTableView(self)
        self.counts.setObjectName("gateCounts")
        self.counts.setModel(self.counts_model)
        self.counts.verticalHeader().setVisible(False)
        self.counts.horizontalHeader().setStretchLastSection(True)
        self.counts.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)

        side = QSplitter(Qt.Orientation.Vertical, self)
        counts_box = QWidget(side)
        counts_layout = QVBoxLayout(counts_box)
        counts_layout.setContentsMargins(0, 0, 0, 0)
        counts_layout.addWidget(QLabel("Live counts per gate", counts_box))
        counts_layout.addWidget(self.counts)
        self.zones_label = QLabel(counts_box)
        self.zones_label.setObjectName("insideByZone")
        self.zones_label.setWordWrap(True)
        counts_layout.addWidget(self.zones_label)
        details_box = QWidget(side)
        details_layout = QVBoxLayout(details_box)
        details_layout.setContentsMargins(0, 0, 0, 0)
        details_layout.addWidget(QLabel("Selected scan", details_box))
        details_layout.addWidget(self.details)
        side.addWidget(counts_box)
        side.addWidget(details_box)
        return side

    # --- the filter bar ----------------------------------------------------------------------

    def _build_filter_bar(self) -> None:
        self.result_filter = QComboBox(self)
        self.result_filter.setAccessibleName("Result")
        self.result_filter.addItem("Any result", None)
        self.result_filter.addItem("Admitted", VerdictResult.ADMITTED)
        self.result_filter.addItem("Rejected", VerdictResult.REJECTED)

        self.reason_filter = QComboBox(self)
        self.reason_filter.setAccessibleName("Reason")
        self.reason_filter.addItem("Any reason", None)
        for reason in VerdictReason:
            self.reason_filter.addItem(reason.sentence, reason)

        self.gate_filter = QComboBox(self)
        self.gate_filter.setAccessibleName("Gate")
        self.gate_filter.addItem("Any gate", None)

        # Check-in lists and zones (issue 16): filled from the stored setup with the counts.
        self.list_filter = _combo(self, "Check-in list", "Any list")
        self.zone_filter = _combo(self, "Zone", "Any zone")

        now = QDateTime.currentDateTime()
        self.since_enabled = QCheckBox("From", self)
        self.since_edit = QDateTimeEdit(now.addDays(-1), self)
        self.until_enabled = QCheckBox("To", self)
        self.until_edit = QDateTimeEdit(now.addSecs(3600), self)
        for edit in (self.since_edit, self.until_edit):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd HH:mm")
            edit.setEnabled(False)
        self.since_enabled.toggled.connect(self.since_edit.setEnabled)
        self.until_enabled.toggled.connect(self.until_edit.setEnabled)

        self.text_filter = QLineEdit(self)
        self.text_filter.setPlaceholderText("Holder, ticket id or gate")
        self.text_filter.setClearButtonEnabled(True)
        self.text_filter.setAccessibleName("Search")

        self.conflicts_only = QCheckBox("Conflicts only", self)
        self.export_button = QPushButton("Export CSV…", self)
        self.total_label = QLabel(self)

        self._text_delay = QTimer(self)
        self._text_delay.setSingleShot(True)
        self._text_delay.setInterval(TEXT_FILTER_DELAY_MS)
        self._text_delay.timeout.connect(self.apply_filters)
        self.text_filter.textChanged.connect(self._text_delay.start)
        self.text_filter.returnPressed.connect(self.apply_filters)
        for combo in (
            self.result_filter,
            self.reason_filter,
            self.gate_filter,
            self.list_filter,
            self.zone_filter,
        ):
            combo.currentIndexChanged.connect(self.apply_filters)
        for box in (self.since_enabled, self.until_enabled, self.conflicts_only):
            box.toggled.connect(self.apply_filters)
        for edit in (self.since_edit, self.until_edit):
            edit.dateTimeChanged.connect(self.apply_filters)
        self.export_button.clicked.connect(self.export_csv)

        self._filters = QHBoxLayout()
        for widget in (
            self.result_filter,
            self.reason_filter,
            self.gate_filter,
            self.list_filter,
            self.zone_filter,
            self.since_enabled,
            self.since_edit,
            self.until_enabled,
            self.until_edit,
        ):
            self._filters.addWidget(widget)
        self._filters.addWidget(self.text_filter, 1)
        self._filters.addWidget(self.conflicts_only)
        self._filters.addWidget(self.total_label)
        self._filters.addWidget(self.export_button)

    def current_filter(self) -> ScanFilter:
        """The filter the bar describes now."""
        result = self.result_filter.currentData()
        reason = self.reason_filter.currentData()
        gate = self.gate_filter.currentData()
        checkin_list = self.list_filter.currentData()
        zone = self.zone_filter.currentData()
        return ScanFilter(
            # A combo box hands its enum data back as plain strings.
            results=frozenset({VerdictResult(result)}) if result is not None else frozenset(),
            reasons=frozenset({VerdictReason(reason)}) if reason is not None else frozenset(),
            gates=frozenset({gate}) if gate is not None else frozenset(),
            since=_aware(self.since_edit.dateTime()) if self.since_enabled.isChecked() else None,
            until=_aware(self.until_edit.dateTime()) if self.until_enabled.isChecked() else None,
            text=self.text_filter.text().strip(),
            conflicts_only=self.conflicts_only.isChecked(),
            # Combo boxes hand data back as plain strings: list ids as text.
            lists=frozenset({uuid.UUID(str(checkin_list))}) if checkin_list else frozenset(),
            zones=frozenset({str(zone)}) if zone is not None else frozenset(),
        )

    @Slot()
    def apply_filters(self) -> None:
        self._text_delay.stop()
        self.model.set_filter(self.current_filter())
        self.details.clear()

    @Slot()
    def _counting(self) -> None:
        self.total_label.setText("Counting…")

    @Slot()
    def _counts_arrived(self) -> None:
        total = self.model.total
        self.total_label.setText(f"{total:,} scan{'s' if total != 1 else ''}")
        # The gate filter offers every gate the log names (they come with the counts).
        known = {self.gate_filter.itemData(i) for i in range(1, self.gate_filter.count())}
        for count in self.model.gate_counts:
            if count.gate not in known:
                self.gate_filter.addItem(count.gate, count.gate)
        # The list and zone filters offer the event's lists and zones (from its setup).
        known = {self.list_filter.itemData(i) for i in range(1, self.list_filter.count())}
        for list_id, name in sorted(self.model.checkin_lists.items(), key=lambda item: item[1]):
            if str(list_id) not in known:
                self.list_filter.addItem(name, str(list_id))
        known = {self.zone_filter.itemData(i) for i in range(1, self.zone_filter.count())}
        for zone in self.model.zones:
            if zone not in known:
                self.zone_filter.addItem(zone_label(zone), zone)
        inside = self.model.inside_by_zone
        self.zones_label.setText(
            "Inside now by zone: "
            + " · ".join(f"{zone_label(z)} {n:,}" for z, n in sorted(inside.items()))
            if inside
            else ""
        )

    # --- table and details -------------------------------------------------------------------

    @Slot(int)
    def _header_clicked(self, section: int) -> None:
        if section == ScanLogModel.TIME:
            order = (
                Qt.SortOrder.AscendingOrder
                if self.model.newest_first
                else Qt.SortOrder.DescendingOrder
            )
            self.model.sort(ScanLogModel.TIME, order)
        current = (
            Qt.SortOrder.DescendingOrder if self.model.newest_first else Qt.SortOrder.AscendingOrder
        )
        self.table.horizontalHeader().setSortIndicator(ScanLogModel.TIME, current)

    @Slot(QItemSelection, QItemSelection)
    def _selection_changed(self, _selected: QItemSelection, _deselected: QItemSelection) -> None:
        self.show_details(self.table.selectionModel().currentIndex())

    def show_details(self, index: QModelIndex) -> None:
        if not index.isValid():
            self.details.clear()
            return
        entry = self.model.entry(index.row())
        prior = collided = None
        with self._store.read() as conn:
            if entry.scan.reason is VerdictReason.ALREADY_CHECKED_IN:
                prior = prior_admission(conn, entry.scan.scan_id)
            if entry.scan.conflict_of is not None:
                collided = find_scan(conn, entry.scan.conflict_of)
        self.details.setPlainText(details_text(entry, prior, collided, self.model.checkin_lists))

    # --- refresh and export ------------------------------------------------------------------

    @Slot()
    def refresh(self) -> None:
        """Pick up new scans and changed states (the main window calls this after each verdict
        and on a timer)."""
        selected = self.table.selectionModel().currentIndex()
        scan_id: uuid.UUID | None = (
            self.model.entry(selected.row()).scan.scan_id if selected.isValid() else None
        )
        self.model.refresh()
        if scan_id is not None:
            current = self.table.selectionModel().currentIndex()
            if current.isValid() and self.model.entry(current.row()).scan.scan_id == scan_id:
                self.show_details(current)

    @Slot()
    def export_csv(self) -> None:
        """Ask where to save, then export the filtered rows (all of them, not just those
        loaded)."""
        stamp = datetime.now().astimezone().strftime("%Y%m%d-%H%M")
        name, _ = QFileDialog.getSaveFileName(
            self, "Export scan log", f"scan-log-{stamp}.csv", "CSV files (*.csv)"
        )
        if name:
            self.export_to(Path(name))

    def export_to(self, path: Path) -> None:
        """Export the filtered log to ``path`` off the GUI thread (one export at a time, in
        order); ``exported`` or ``export_failed`` says how it went."""
        entries = self.model.matching_entries()
        self.export_button.setEnabled(False)
        self._exports.submit(
            partial(write_csv, path, entries),
            lambda count: self._export_finished(str(path), count),
            lambda error: self._export_failed(f"Could not export to {path}: {error}"),
        )

    def _export_finished(self, path: str, count: int) -> None:
        self.export_button.setEnabled(not self._exports.busy)
        self.total_label.setToolTip(f"Exported {count:,} scans to {path}")
        self.exported.emit(path, count)

    def _export_failed(self, message: str) -> None:
        self.export_button.setEnabled(not self._exports.busy)
        self.total_label.setToolTip(message)
        self.export_failed.emit(message)


def _aware(value: QDateTime) -> datetime:
    """A local date-time from an editor as a timezone-aware datetime."""
    naive = value.toPython()
    assert isinstance(naive, datetime)
    return naive.astimezone() if naive.tzinfo is None else naive


__all__ = ["ScanLogWidget", "details_text"]
