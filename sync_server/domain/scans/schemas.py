from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import msgspec

from shared.domain import Direction, VerdictReason, VerdictResult


class ScanFilter(msgspec.Struct, kw_only=True, frozen=True):
    """Which scans a manager asks for. ``since`` is inclusive, ``until`` exclusive, both on
    the authoritative ``scanned_at``."""

    event_id: uuid.UUID | None = None
    ticket_id: uuid.UUID | None = None
    gate: str | None = None
    device_id: uuid.UUID | None = None
    result: VerdictResult | None = None
    reason: VerdictReason | None = None
    direction: Direction | None = None
    #: Only double entries that still stand (not annulled).
    conflicts_only: bool = False
    since: datetime | None = None
    until: datetime | None = None
    #: Scans counted on (or refused by) this check-in list.
    checkin_list_id: uuid.UUID | None = None
    #: Admissions into this zone ("": the event's general area, a list without a zone).
    zone: str | None = None
    #: Scans of tickets whose id starts with these hex digits (the dashes ignored).
    ticket_id_prefix: str | None = None
    #: Scans of tickets whose holder's name starts with this text (any case).
    holder_prefix: str | None = None


class ScanOut(msgspec.Struct, kw_only=True):
    """One scan as a manager reviews it. The field order is the CSV export's column order."""

    id: uuid.UUID
    event_id: uuid.UUID
    #: None when the code could not be tied to a ticket (unreadable, forged, unknown).
    ticket_id: uuid.UUID | None
    holder_name: str | None
    ticket_type: str | None
    gate: str
    direction: Direction
    result: VerdictResult
    #: Why the scan was rejected; None when admitted.
    reason: str | None
    #: The authoritative time: server time online, corrected device time offline.
    scanned_at: datetime
    #: When the server got the scan; for an offline scan, how late its upload came.
    received_at: datetime
    offline: bool
    #: The device's own clock reading and its measured offset (offline scans).
    device_scanned_at: datetime | None
    clock_offset_ms: int
    #: What the device showed at the gate (offline scans).
    device_result: str | None
    device_reason: str | None
    #: Why the server would have refused an offline admission (the device's data was stale).
    server_reason: str | None
    #: The admission this one collided with: set on a double entry.
    conflict_of: uuid.UUID | None
    annulled_at: datetime | None
    annulled_by: str | None
    #: None for a manager validating by hand.
    device_id: uuid.UUID | None
    scanned_by: str
    #: ``clock_ahead`` / ``clock_behind`` when the device's corrected time was beyond belief
    #: and ``scanned_at`` is where the server placed the scan instead (uploads only).
    time_adjusted: str | None
    #: The check-in list it counted on or that refused it (issue 16); None without lists.
    checkin_list_id: uuid.UUID | None = None
    #: For an admission on a list: that list's zone (None: the general area).
    zone: str | None = None
    #: A double entry a manager resolved (issue 19): ``accepted`` (both admissions stand; it
    #: counts as an admission, not a conflict) or ``annulled``; when, by whom, the note.
    conflict_resolution: str | None = None
    conflict_resolved_at: datetime | None = None
    conflict_resolved_by: str | None = None
    conflict_resolution_note: str | None = None


class ScanPage(msgspec.Struct, kw_only=True):
    items: list[ScanOut]
    next_cursor: str | None


class GateStats(msgspec.Struct, kw_only=True):
    gate: str
    admitted: int
    rejected: int
    conflicts: int


class MinuteStats(msgspec.Struct, kw_only=True):
    #: The start of the minute (UTC).
    minute: datetime
    admitted: int
    rejected: int


class EventStats(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An event's gate counts. ``admitted`` counts admissions that stand: entries let in, not
    double entries (``conflicts``) and not undone by staff (``annulled``)."""

    event_id: uuid.UUID
    admitted: int
    rejected: int
    rejected_by_reason: dict[str, int]
    #: Tickets whose latest standing admission or exit is an entry.
    inside_now: int
    conflicts: int
    annulled: int
    per_gate: list[GateStats]
    per_minute: list[MinuteStats]
    generated_at: datetime
    #: For an event with check-in lists (issue 16): how many are inside each zone now — ""
    #: is the general area (lists without a zone); zones nobody is in are left out. Each
    #: ticket counts where its latest standing admission or exit left it (an entry into one
    #: zone leaves the zone it was in). Absent for an event without lists.
    inside_by_zone: dict[str, int] | None = None


@dataclass(slots=True)
class GateCounts:
    """One gate's counts (``ScanLog.counts``), for the console's dashboard."""

    gate: str
    admitted: int = 0
    rejected: int = 0
    conflicts: int = 0
    #: Admissions undone by staff.
    annulled: int = 0
    exits: int = 0
    #: The latest scan at this gate (its ``scanned_at``); None without scans.
    last_scan_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class EventCounts:
    """An event's counts as ``ScanLog.counts`` reads them: per gate (by name), rejections by
    reason (``unspecified`` for a rejection without one), who is inside each zone ("" the
    general area; zones nobody is in left out), and whether the event has check-in lists."""

    per_gate: list[GateCounts]
    rejected_by_reason: dict[str, int]
    inside_by_zone: dict[str, int]
    has_lists: bool

    @property
    def admitted(self) -> int:
        return sum(g.admitted for g in self.per_gate)

    @property
    def rejected(self) -> int:
        return sum(g.rejected for g in self.per_gate)

    @property
    def conflicts(self) -> int:
        return sum(g.conflicts for g in self.per_gate)

    @property
    def annulled(self) -> int:
        return sum(g.annulled for g in self.per_gate)

    @property
    def inside_now(self) -> int:
        return sum(self.inside_by_zone.values())
