"""The status bar: the state of the device, always visible, never a click away.

From left to right: the link (online / offline and why / standalone / revoked), scans waiting
to be sent, the last successful sync, how old the ticket data is, a clock warning when the
device clock is off, conflicts the server found, the check-in lists' version (a warning when
they may be out of date), and how many other gates peer sync hears ("Hears 4 other gates";
a warning when it hears none while the server cannot be reached). A part that needs action is
coloured. In lab mode (``core.sync.lab_mode``: plain-http servers allowed) a red warning says
so for the whole session.
"""

from __future__ import annotations

from datetime import datetime

from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from scanner_app.core.sync import lab_mode
from scanner_app.ui.scanning import GateStatus

#: A device clock further off than this is worth a warning. Verdict times are corrected by the
#: measured offset, but a wrong clock also skews what the device shows and logs.
CLOCK_WARNING_MS = 30_000

_WARN = "color: #b71c1c; font-weight: bold;"
_OK = "color: #1b5e20; font-weight: bold;"


def describe_age(seconds: float) -> str:
    """A duration as staff say it: "just now", "4 min", "2 h 5 min", "3 days"."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return "just now"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


def describe_offset(offset_ms: int) -> str:
    """The clock offset as a warning sentence part: server time minus device time."""
    seconds = abs(offset_ms) // 1000
    amount = f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"
    return f"device clock is {amount} {'slow' if offset_ms > 0 else 'fast'}"


class GateStatusBar(QStatusBar):
    """Shows a ``GateStatus``; ``show_status`` is connected to ``ScanBridge.status``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizeGripEnabled(False)
        self.link_label = QLabel("Starting…")
        self.queue_label = QLabel()
        self.sync_label = QLabel()
        self.cache_label = QLabel()
        self.clock_label = QLabel()
        self.conflict_label = QLabel()
        self.lists_label = QLabel()
        self.peers_label = QLabel()
        self.peers_label.setAccessibleName("Other gates heard")
        for label in (
            self.link_label,
            self.queue_label,
            self.sync_label,
            self.cache_label,
            self.clock_label,
            self.conflict_label,
            self.lists_label,
            self.peers_label,
        ):
            self.addWidget(label)
        self.lab_label = QLabel(lab_mode.WARNING)
        self.lab_label.setStyleSheet(_WARN)
        self.addPermanentWidget(self.lab_label)
        self.lab_label.setVisible(lab_mode.insecure_http_allowed())
        self.status: GateStatus | None = None

    def show_status(self, status: GateStatus) -> None:
        self.status = status
        device = status.device
        now = status.read_at
        self._show_link(status)
        self.queue_label.setText(f"{device.queued:,} queued" if status.has_server else "")
        self.queue_label.setStyleSheet(_WARN if device.queued and not status.online else "")
        if status.has_server:
            self.sync_label.setText(f"Last sync: {_ago(device.last_sync_at, now)}")
            age = (
                f"Ticket data: {describe_age((now - device.last_sync_at).total_seconds())} old"
                if device.last_sync_at
                else "Ticket data: never synced"
            )
        else:
            self.sync_label.setText("")
            age = f"Tickets on this device: {device.tickets_cached:,}"
        self.cache_label.setText(age)
        if abs(device.clock_offset_ms) > CLOCK_WARNING_MS:
            self.clock_label.setText(f"Clock: {describe_offset(device.clock_offset_ms)}")
            self.clock_label.setStyleSheet(_WARN)
            self.clock_label.show()
        else:
            self.clock_label.setText("")
            self.clock_label.hide()
        self.conflict_label.setText(
            f"{device.conflicts:,} conflicts (see the scan log)" if device.conflicts else ""
        )
        self.conflict_label.setStyleSheet(_WARN if device.conflicts else "")
        # The check-in setup's version and when it came; a warning when the lists may be out
        # of date (scanner_app.core.checkin.setup_note says when).
        self.lists_label.setText(device.lists_note)
        self.lists_label.setStyleSheet(_WARN if device.lists_stale else "")
        # Peer sync: how many other gates this one hears. Hearing none while the server cannot
        # be reached is worth a look: the gate then decides alone.
        self.peers_label.setText(device.peers if device.enrolled and status.has_server else "")
        alone = device.peers_heard == 0 and not status.online
        self.peers_label.setStyleSheet(_WARN if alone else "")

    def _show_link(self, status: GateStatus) -> None:
        device = status.device
        if not device.enrolled:
            text, style = "Not enrolled", _WARN
        elif device.revoked:
            text, style = "Switched off by a manager — enroll again", _WARN
        elif not status.has_server:
            text, style = "Standalone (no server)", ""
        elif status.online:
            text, style = ("Online — syncing" if status.syncing else "Online"), _OK
        else:
            why = device.offline_reason or "not connected to the server yet"
            text, style = f"Offline — {why}", _WARN
            if status.next_retry_at is not None and status.next_retry_at > status.read_at:
                wait = (status.next_retry_at - status.read_at).total_seconds()
                text += f" (retry in {max(1, round(wait))} s)"
        self.link_label.setText(text)
        self.link_label.setStyleSheet(style)


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    local = when.astimezone().strftime("%H:%M")
    age = describe_age((now - when).total_seconds())
    return f"{local} ({age if age == 'just now' else age + ' ago'})"
