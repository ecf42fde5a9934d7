"""The main window: the "Gate" tab (default) and the "Scan log" tab, menus, shortcuts, and the
status bar that is always visible.

The window owns the ``ScanBridge`` and the ``WedgeFilter``; the other parts of the app (the
scan log, the dialogs, the demo codes) are imported when first needed, so the gate screen is up
before anything heavy loads.

Shortcuts: F1 gate, F2 scan log, F3 entry, F4 exit, Ctrl+F lookup, Ctrl+Z undo the last
admission, Ctrl+, settings, Ctrl+Q quit. No plain letters: a handheld scanner types them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QWidget,
)

from scanner_app.core.store import LocalStore
from scanner_app.ui.gate_screen import GateScreen
from scanner_app.ui.scanning import GateStatus, ScanBridge
from scanner_app.ui.sounds import VerdictSounds
from scanner_app.ui.status_bar import GateStatusBar
from scanner_app.ui.wedge_filter import WedgeFilter
from shared.domain import Direction

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    """The app's window for one enrolled store.

    ``camera=False`` leaves the camera off (tests, or a gate with only a handheld scanner);
    ``sounds`` may be None for silence regardless of the settings. ``demo_codes`` is a widget to
    offer under Demo ▸ Demo codes (demo mode only).
    """

    #: The device was enrolled again: the app reopens the window on this store.
    reenrolled = Signal(LocalStore)

    def __init__(
        self,
        store: LocalStore,
        *,
        data_dir: Path | None = None,
        camera: bool = True,
        sounds: VerdictSounds | None = None,
        online: bool = True,
        background_sync: bool = True,
        demo_codes: QWidget | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.data_dir = data_dir or Path(store.path).parent
        self.setWindowTitle("Gatehouse scanner")
        self.bridge = ScanBridge(store, online=online, background_sync=background_sync, parent=self)
        self.gate_screen = GateScreen(self.bridge, sounds=sounds)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.gate_screen, "&Gate")
        self._log_placeholder = QLabel("The scan log opens when this tab is chosen.")
        self.tabs.addTab(self._log_placeholder, "Scan &log")
        self.tabs.currentChanged.connect(self._tab_changed)
        self.scan_log: QWidget | None = None
        self.setCentralWidget(self.tabs)
        self.status_bar = GateStatusBar(self)
        self.setStatusBar(self.status_bar)
        self.demo_codes = demo_codes

        self.wedge = WedgeFilter(self, parent=self)
        self.wedge.scanned.connect(self.bridge.scan_text)
        self.wedge.incomplete.connect(self._incomplete_scan)
        if demo_codes is not None:
            self.wedge.add_scope(demo_codes)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self.wedge)

        self.bridge.status.connect(self._status)
        self._build_menus()
        self._camera = camera
        self._started = False

    # --- start and stop --------------------------------------------------------------------------

    def start(self) -> None:
        """Open the session and the camera (call after ``show()``; safe to call twice)."""
        if self._started:
            return
        self._started = True
        self.bridge.start(camera=self._camera)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        # After the first paint: the gate screen is visible before the camera loads.
        QTimer.singleShot(0, self.start)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shut_down()
        super().closeEvent(event)

    def shut_down(self) -> None:
        """Stop the camera, the sync and the filter. Safe to call twice."""
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self.wedge)
        self.wedge.flush()
        self.bridge.close()
        if self.demo_codes is not None:
            self.demo_codes.close()

    # --- menus -----------------------------------------------------------------------------------

    def _action(self, text: str, shortcut: str | None, slot: object) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        return action

    def _build_menus(self) -> None:
        menu = self.menuBar()
        scanner = menu.addMenu("&Scanner")
        settings = self._action("&Settings…", "Ctrl+,", self.open_settings)
        settings.setMenuRole(QAction.MenuRole.PreferencesRole)
        scanner.addAction(settings)
        scanner.addAction(self._action("&Enroll again…", None, self.enroll_again))
        scanner.addSeparator()
        quit_action = self._action("&Quit", "Ctrl+Q", self.close)
        quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        scanner.addAction(quit_action)

        gate = menu.addMenu("&Gate")
        gate.addAction(self._action("&Entry mode", "F3", self._entry))
        gate.addAction(self._action("E&xit mode", "F4", self._exit))
        gate.addAction(self._action("&Find code or name", "Ctrl+F", self._focus_lookup))

        view = menu.addMenu("&View")
        view.addAction(self._action("&Gate", "F1", lambda: self.tabs.setCurrentIndex(0)))
        view.addAction(self._action("Scan &log", "F2", lambda: self.tabs.setCurrentIndex(1)))

        if self.demo_codes is not None:
            demo = menu.addMenu("&Demo")
            demo.addAction(self._action("Demo &codes", "F9", self.show_demo_codes))

    def _entry(self) -> None:
        self.gate_screen.set_direction(Direction.ENTRY)

    def _exit(self) -> None:
        self.gate_screen.set_direction(Direction.EXIT)

    def _focus_lookup(self) -> None:
        self.tabs.setCurrentIndex(0)
        self.gate_screen.lookup_field.setFocus()

    def show_demo_codes(self) -> None:
        if self.demo_codes is not None:
            self.demo_codes.show()
            self.demo_codes.raise_()

    # --- tabs ------------------------------------------------------------------------------------

    def _tab_changed(self, index: int) -> None:
        if index == 1 and self.scan_log is None:
            self.scan_log = self._make_scan_log()
            self.tabs.blockSignals(True)
            self.tabs.removeTab(1)
            self.tabs.insertTab(1, self.scan_log, "Scan &log")
            self.tabs.setCurrentIndex(1)
            self.tabs.blockSignals(False)
            self._log_placeholder.deleteLater()

    def _make_scan_log(self) -> QWidget:
        from scanner_app.ui.scanlog import ScanLogWidget  # noqa: PLC0415 - on first use

        return ScanLogWidget(self.store)

    # --- dialogs ---------------------------------------------------------------------------------

    def open_settings(self) -> None:
        from scanner_app.ui.settings_dialog import SettingsDialog  # noqa: PLC0415 - on first use

        dialog = SettingsDialog(self.store, self)
        if dialog.exec():
            self.bridge.reload_settings()

    def enroll_again(self) -> None:
        answer = QMessageBox.question(
            self,
            "Enroll again",
            "Enroll this scanner again with a new code from a manager?\n\nScans not yet sent "
            "stay in this scanner's log; the new enrollment replaces the gate and event.",
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        from scanner_app.ui.enrollment import EnrollmentDialog  # noqa: PLC0415 - on first use

        store = EnrollmentDialog(self.data_dir, self).exec()
        if store is not None:
            self.reenrolled.emit(store)

    # --- status and input problems ---------------------------------------------------------------

    def _status(self, status: GateStatus) -> None:
        self.status_bar.show_status(status)
        device = status.device
        if device.enrolled:
            self.setWindowTitle(f"Gatehouse — {device.gate} · {device.event_name or 'event'}")

    def _incomplete_scan(self, text: str) -> None:
        self.gate_screen.show_error(
            "The handheld scanner sent a code without Enter at the end, so it was not checked. "
            "Set the scanner to end each code with Enter, then scan again."
        )
