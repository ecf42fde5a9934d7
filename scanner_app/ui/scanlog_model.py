"""Qt models of the scan log for venue managers: the scans (``ScanLogModel``) and the live
counts per gate (``GateCountsModel``), both over the local store.

Why filters run in SQL rather than in a ``QSortFilterProxyModel``: the log is loaded a page at a
time (a gate's log reaches 100,000 rows), and a proxy filters only the rows already loaded — so a
search would miss every scan on pages not fetched yet, and loading them all to filter them is
the freeze paging avoids. The store applies the filter (``scanlog.ScanFilter``) and pages the
*filtered* log by key (time, sequence), so a page costs the same however deep it is and every
matching scan is reachable. Holder names are sealed on disk; the store opens those this device
can open (tickets it scanned itself) through a SQLite function, so text search covers them too.

``refresh()`` is cheap enough to call after every verdict: it reads only the rows written since
the newest sequence number it has seen, re-reads the few mutable fields (upload state, conflict,
annulment) of the rows loaded so far, and the counts per gate.
"""

from __future__ import annotations

import bisect
import csv
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QFont

from scanner_app.core.store import LocalStore
from scanner_app.core.store.cache import inside_now
from scanner_app.core.store.scanlog import (
    GateCount,
    HolderNames,
    LogEntry,
    LoggedScan,
    LogKey,
    ScanFilter,
    gate_counts,
    latest_seq,
    log_added_since,
    log_count,
    log_entries,
    log_page,
)
from scanner_app.core.store.setup import load_setup
from scanner_app.ui.jobs import JobQueue
from shared.checkin_lists import GENERAL_AREA
from shared.domain import Direction, VerdictResult

ModelIndex = QModelIndex | QPersistentModelIndex

#: Rows per page: a screenful many times over, read in about a millisecond.
PAGE_SIZE = 200
#: The marker in the conflict column; with the row's colour, so colour is not the only cue.
CONFLICT_MARK = "⚠ Double entry"
#: Amber, as on the gate screen for "attention"; text on it stays black for contrast.
CONFLICT_BACKGROUND = QColor("#ffd54f")
#: Cells a spreadsheet would run as a formula start with one of these.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

_UPLOAD_WORDS = {
    "queued": "Queued",
    "uploaded": "Uploaded",
    "refused": "Refused",
    "from server": "From server",
    "local only": "Not uploaded (no server)",
}
_MODE_WORDS = {"online": "Online", "offline": "Offline", "peer": "Other gate"}


def local_time(when: datetime) -> str:
    """A scan time as managers read it: the device's local time, to the second."""
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def short_id(value: object) -> str:
    return str(value)[:8]


def result_text(scan: LoggedScan) -> str:
    word = "Admitted" if scan.result is VerdictResult.ADMITTED else "Rejected"
    return f"{word} (undone)" if scan.annulled else word


def reason_text(scan: LoggedScan) -> str:
    """The reason as gate staff read it (the same sentences as on the verdict panel)."""
    if scan.reason is not None:
        return scan.reason.sentence
    if scan.on_signature:
        return "Genuine ticket, not yet on this scanner's list (sold after the last sync)."
    return ""


def origin_text(entry: LogEntry) -> str:
    if entry.scan.origin == "local":
        return "This device"
    if entry.device_id is not None:
        return f"Other device {short_id(entry.device_id)}"
    return "Other device"


@dataclass(frozen=True, slots=True)
class _TallyResult:
    generation: int
    total: int = 0
    counts: list[GateCount] = field(default_factory=list)
    states: list[LogEntry] = field(default_factory=list)
    #: The event's check-in lists (id → name) and zones, from the stored setup, and who is
    #: inside each zone (issue 16).
    lists: dict[uuid.UUID, str] = field(default_factory=dict)
    zones: list[str] = field(default_factory=list)
    inside_by_zone: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def _tally(store: LocalStore, flt: ScanFilter, generation: int, seqs: list[int]) -> _TallyResult:
    """Reads what takes longer than a GUI frame on a big log (count of the filtered log: ~50 ms,
    counts per gate: ~250 ms at 100,000 scans): a job on the model's "tally" queue."""
    holders = HolderNames()
    try:
        with store.read() as conn:
            stored = load_setup(conn)
            lists = stored.setup.lists if stored is not None else []
            return _TallyResult(
                generation=generation,
                total=log_count(conn, flt, holders),
                counts=gate_counts(conn),
                states=log_entries(conn, holders, seqs),
                lists={item.id: item.name for item in lists},
                zones=sorted({item.zone or GENERAL_AREA for item in lists}),
                inside_by_zone=inside_now(conn) if lists else {},
            )
    except Exception as error:
        return _TallyResult(generation=generation, error=str(error))


class _Table(QAbstractTableModel):
    """A flat table of ``_rows`` under the column titles ``HEADERS``."""

    HEADERS: ClassVar[tuple[str, ...]] = ()
    _rows: Sequence[Any]

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation is Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section] if 0 <= section < len(self.HEADERS) else None
        return None


class ScanLogModel(_Table):
    """The scans this device knows (its own and other gates' admissions from the feed), newest
    first by default, filtered and paged in the store. ``entry(row)`` gives the whole
    ``LogEntry`` of a row; ``EntryRole`` gives it through ``data``."""

    TIME, DIRECTION, RESULT, REASON, GATE, ORIGIN, TICKET_TYPE, HOLDER, MODE, UPLOAD, CONFLICT = (
        range(11)
    )
    HEADERS: ClassVar[tuple[str, ...]] = (
        "Time",
        "Direction",
        "Result",
        "Reason",
        "Gate",
        "Device",
        "Ticket type",
        "Holder",
        "Mode",
        "Upload",
        "Conflict",
    )
    EntryRole = int(Qt.ItemDataRole.UserRole) + 1

    #: The counts per gate were read again (after a reset or a refresh).
    counts_changed = Signal()
    #: How many scans match the filter changed.
    total_changed = Signal(int)

    def __init__(
        self, store: LocalStore, *, page_size: int = PAGE_SIZE, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._store = store
        self._page_size = page_size
        self._holders = HolderNames()
        self._filter = ScanFilter()
        self._newest_first = True
        self._rows: list[LogEntry] = []
        self._keys: list[tuple[int, int]] = []  # sort keys of _rows, ascending in view order
        self._exhausted = False
        #: A change (reset, rows inserted) is being announced: no page is fetched until every
        #: listener has heard it (see ``_announcing``).
        self._announcing = False
        self._seen_seq = 0
        self._total = 0
        self._counts: list[GateCount] = []
        self._lists: dict[uuid.UUID, str] = {}
        self._zones: list[str] = []
        self._inside_by_zone: dict[str, int] = {}
        self._generation = 0
        self._tallies = JobQueue("scanlog-tally", self)
        self._tally_running = False
        self._tally_again = False
        self._load()

    # --- what the widget reads ---------------------------------------------------------------

    @property
    def scan_filter(self) -> ScanFilter:
        return self._filter

    @property
    def newest_first(self) -> bool:
        return self._newest_first

    @property
    def total(self) -> int:
        """How many scans match the filter (loaded or not)."""
        return self._total

    @property
    def gate_counts(self) -> list[GateCount]:
        return list(self._counts)

    @property
    def checkin_lists(self) -> dict[uuid.UUID, str]:
        """The event's check-in lists, id → name (empty for an event without lists)."""
        return dict(self._lists)

    @property
    def zones(self) -> list[str]:
        """The zones the lists lead into (``GENERAL_AREA``, "", for lists without one)."""
        return list(self._zones)

    @property
    def inside_by_zone(self) -> dict[str, int]:
        """Who is inside each zone now, as this device knows it."""
        return dict(self._inside_by_zone)

    def entry(self, row: int) -> LogEntry:
        return self._rows[row]

    def set_filter(self, flt: ScanFilter) -> None:
        """Show only scans matching ``flt`` (all of them, loaded a page at a time)."""
        if flt != self._filter:
            self._filter = flt
            self._load()

    def matching_entries(self, batch: int = 2000) -> Iterator[LogEntry]:
        """Every scan matching the filter, in view order, read from the store a batch per short
        read transaction — not just the loaded rows (for export). Safe to run on another thread:
        it shares nothing with the model but the store."""
        flt, newest_first = self._filter, self._newest_first
        holders = HolderNames()
        after: LogKey | None = None
        while True:
            with self._store.read() as conn:
                page = log_page(
                    conn, holders, flt, after=after, newest_first=newest_first, limit=batch
                )
            yield from page
            if len(page) < batch:
                return
            after = page[-1].key

    # --- loading -----------------------------------------------------------------------------

    def _sort_key(self, key: LogKey) -> tuple[int, int]:
        if self._newest_first:
            return (-key.at_micros, -key.seq)
        return (key.at_micros, key.seq)

    @contextmanager
    def _announcing_change(self) -> Iterator[None]:
        """Around a reset or an insertion. A listener may ask for more rows while the change
        is announced (Qt's model tester does, a proxy or view may); rows inserted then would be
        announced inside the first announcement, and reach the listeners connected later
        before it. So ``canFetchMore`` says no until the change is over; the view asks again."""
        self._announcing = True
        try:
            yield
        finally:
            self._announcing = False

    def _load(self) -> None:
        with self._announcing_change():
            self._reset()
        self._request_tally()

    def _reset(self) -> None:
        self.beginResetModel()
        with self._store.read() as conn:
            self._seen_seq = latest_seq(conn)
            page = log_page(
                conn,
                self._holders,
                self._filter,
                newest_first=self._newest_first,
                limit=self._page_size,
            )
        self._rows = page
        self._keys = [self._sort_key(e.key) for e in page]
        self._exhausted = len(page) < self._page_size
        self._generation += 1
        self.endResetModel()

    def canFetchMore(self, parent: ModelIndex) -> bool:
        return not parent.isValid() and not self._exhausted and not self._announcing

    def fetchMore(self, parent: ModelIndex) -> None:
        """The next page of the filtered log, after the last loaded row's key."""
        if not self.canFetchMore(parent) or not self._rows:
            return
        with self._store.read() as conn:
            page = log_page(
                conn,
                self._holders,
                self._filter,
                after=self._rows[-1].key,
                newest_first=self._newest_first,
                limit=self._page_size,
            )
        self._exhausted = len(page) < self._page_size
        if not page:
            return
        first = len(self._rows)
        with self._announcing_change():
            self.beginInsertRows(QModelIndex(), first, first + len(page) - 1)
            self._rows.extend(page)
            self._keys.extend(self._sort_key(e.key) for e in page)
            self.endInsertRows()

    def refresh(self) -> None:
        """Pick up what changed since the last look. New scans (a verdict here, other gates'
        admissions from the feed) are read at once — only rows newer than the last seen
        sequence number, a millisecond's work. The slower part (the total, counts per gate, the
        loaded rows' upload state, conflicts and annulments) runs as a job on the model's tally
        queue (``ui.jobs``) and lands through ``counts_changed`` / ``total_changed``."""
        with self._store.read() as conn:
            newest = latest_seq(conn)
            added: list[LogEntry] = []
            while True:
                batch = log_added_since(
                    conn, self._holders, self._filter, added[-1].seq if added else self._seen_seq
                )
                added.extend(batch)
                if len(batch) < 1000:
                    break
        self._seen_seq = max(newest, self._seen_seq)
        self._insert_rows(added)
        self._request_tally()

    @property
    def counting(self) -> bool:
        """True while the total, the counts per gate and the loaded rows' states are being
        read again (after a filter change or a refresh)."""
        return self._tally_running or self._tally_again

    def _request_tally(self) -> None:
        # One at a time; a request while one runs is served by one more run after it, so a
        # burst of verdicts costs at most two.
        if self._tally_running:
            self._tally_again = True
            return
        self._tally_running = True
        self._tally_again = False
        seqs = [e.seq for e in self._rows]
        self._tallies.submit(
            partial(_tally, self._store, self._filter, self._generation, seqs), self._tally_done
        )

    def _tally_done(self, result: _TallyResult) -> None:
        self._tally_running = False
        if result.generation == self._generation and result.error is None:
            self._update_rows(result.states)
            self._counts = result.counts
            self._lists = result.lists
            self._zones = result.zones
            self._inside_by_zone = result.inside_by_zone
            if result.total != self._total:
                self._total = result.total
                self.total_changed.emit(self._total)
            self.counts_changed.emit()
        if self._tally_again or result.generation != self._generation:
            self._request_tally()

    def wait_for_tally(self) -> None:
        """Block until no tally runs (tests, and before closing the store)."""
        self._tallies.wait_idle()

    def _update_rows(self, current: list[LogEntry]) -> None:
        by_seq = {e.seq: e for e in current}
        last = self.columnCount() - 1
        for row, old in enumerate(self._rows):
            new = by_seq.get(old.seq)
            if new is not None and new != old:
                self._rows[row] = new
                self.dataChanged.emit(self.index(row, 0), self.index(row, last))

    def _insert_rows(self, added: list[LogEntry]) -> None:
        """Put new rows where they sort among the loaded ones. A row that sorts after the last
        loaded row (while more pages remain) is left for ``fetchMore``, which reads from that
        key on and so will find it."""
        for entry in added:
            key = self._sort_key(entry.key)
            if not self._exhausted and (not self._keys or key > self._keys[-1]):
                continue
            position = bisect.bisect_left(self._keys, key)
            with self._announcing_change():
                self.beginInsertRows(QModelIndex(), position, position)
                self._rows.insert(position, entry)
                self._keys.insert(position, key)
                self.endInsertRows()

    # --- the table ---------------------------------------------------------------------------

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Only the time column sorts (the store pages by time): newest first for descending."""
        if column != self.TIME:
            return
        newest_first = order is Qt.SortOrder.DescendingOrder
        if newest_first != self._newest_first:
            self._newest_first = newest_first
            self._load()

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        entry = self._rows[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return cell_text(entry, index.column())
        if role == self.EntryRole:
            return entry
        conflict = entry.scan.conflict_of is not None
        if role == Qt.ItemDataRole.BackgroundRole and conflict:
            return QBrush(CONFLICT_BACKGROUND)
        if role == Qt.ItemDataRole.ForegroundRole and conflict:
            return QBrush(QColor("black"))
        if role == Qt.ItemDataRole.FontRole and entry.scan.annulled:
            font = QFont()
            font.setStrikeOut(True)
            return font
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return cell_text(entry, index.column()) or "empty"
        return None


def cell_text(entry: LogEntry, column: int) -> str:
    """The text of one cell, as shown in the table and written to the CSV export."""
    scan = entry.scan
    match column:
        case ScanLogModel.TIME:
            return local_time(scan.at)
        case ScanLogModel.DIRECTION:
            return "Entry" if scan.direction is Direction.ENTRY else "Exit"
        case ScanLogModel.RESULT:
            return result_text(scan)
        case ScanLogModel.REASON:
            return reason_text(scan)
        case ScanLogModel.GATE:
            return scan.gate
        case ScanLogModel.ORIGIN:
            return origin_text(entry)
        case ScanLogModel.TICKET_TYPE:
            return scan.ticket_type or ""
        case ScanLogModel.HOLDER:
            return entry.holder_name or ""
        case ScanLogModel.MODE:
            return _MODE_WORDS.get(scan.mode, scan.mode)
        case ScanLogModel.UPLOAD:
            return _UPLOAD_WORDS.get(entry.upload_state, entry.upload_state)
        case ScanLogModel.CONFLICT:
            return CONFLICT_MARK if scan.conflict_of is not None else ""
    return ""


# --- CSV export ---------------------------------------------------------------------------------

#: The export's columns: the table's, plus the ids a manager needs to look a scan up on the
#: server, and the scan time in UTC (unambiguous across time zones).
CSV_HEADER = (
    "scan_id",
    "time_utc",
    "time_local",
    "direction",
    "result",
    "reason",
    "reason_text",
    "gate",
    "device",
    "ticket_id",
    "ticket_type",
    "holder",
    "mode",
    "upload",
    "server_result",
    "server_reason",
    "conflict_of",
    "annulled",
)


def guard_formula(text: str) -> str:
    """A cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR first)
    is prefixed with an apostrophe, as the server's export does: venues open these in Excel,
    and holder names and ticket types are typed by buyers."""
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_row(entry: LogEntry) -> list[str]:
    scan = entry.scan
    cells = [
        str(scan.scan_id),
        scan.at.isoformat(),
        local_time(scan.at),
        scan.direction.value,
        scan.result.value,
        scan.reason.value if scan.reason else "",
        reason_text(scan),
        scan.gate,
        origin_text(entry),
        str(scan.ticket_id) if scan.ticket_id else "",
        scan.ticket_type or "",
        entry.holder_name or "",
        scan.mode,
        entry.upload_state,
        scan.server_result or "",
        scan.server_reason or "",
        str(scan.conflict_of) if scan.conflict_of else "",
        "true" if scan.annulled else "false",
    ]
    return [guard_formula(cell) for cell in cells]


def write_csv(path: Path, entries: Iterator[LogEntry]) -> int:
    """Write ``entries`` to ``path`` as UTF-8 CSV with a header row (with a byte-order mark, so
    Excel reads the names' accents right). Writes to a temporary file and renames it, so a
    failed export never leaves half a file under the chosen name. Returns the row count;
    raises ``OSError`` when the file cannot be written."""
    partial = path.with_name(path.name + ".part")
    count = 0
    try:
        with partial.open("w", encoding="utf-8-sig", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(CSV_HEADER)
            for entry in entries:
                writer.writerow(csv_row(entry))
                count += 1
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return count


# --- counts per gate ----------------------------------------------------------------------------


class GateCountsModel(_Table):
    """Live counts per gate (entries, exits, inside, rejected, conflicts) and a total row,
    following a ``ScanLogModel``'s refreshes."""

    HEADERS: ClassVar[tuple[str, ...]] = (
        "Gate",
        "Entries",
        "Exits",
        "Inside",
        "Rejected",
        "Conflicts",
    )

    def __init__(self, log: ScanLogModel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._log = log
        self._rows: list[tuple[str, int, int, int, int, int]] = []
        log.counts_changed.connect(self._reload)
        self._reload()

    def _reload(self) -> None:
        counts = self._log.gate_counts
        rows = [(c.gate, c.entries, c.exits, c.inside, c.rejected, c.conflicts) for c in counts]
        if rows:
            rows.append(
                (
                    "All gates",
                    sum(c.entries for c in counts),
                    sum(c.exits for c in counts),
                    sum(c.inside for c in counts),
                    sum(c.rejected for c in counts),
                    sum(c.conflicts for c in counts),
                )
            )
        if rows == self._rows:
            return
        self.beginResetModel()
        self._rows = rows
        self.endResetModel()

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        value = self._rows[index.row()][index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return str(value)
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() > 0:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.FontRole and index.row() == len(self._rows) - 1:
            font = QFont()
            font.setBold(True)
            return font
        return None


__all__ = [
    "CONFLICT_MARK",
    "CSV_HEADER",
    "GateCountsModel",
    "ScanLogModel",
    "cell_text",
    "csv_row",
    "guard_formula",
    "write_csv",
]
