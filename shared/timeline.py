"""Who is inside: the admitted scans of one ticket, put in time order.

Both sides use this. The server orders scans by their corrected scan time — which is how an
offline admission uploaded late still counts from when it happened — and the scanner uses it on
its own and its peers' scans to refuse a second entry.

Rules: an entry while the ticket is inside is a double entry (a *conflict* of the admission
that let it in); an entry after an exit is a re-entry, allowed only when the event allows it
(otherwise a conflict of the first admission); an exit lets the ticket out. Conflicts change
nothing: the first admission stands. A new entry refused because of them names, as its
``prior``, the admission it collides with (``prior_scan``).

One exception, because an online admission was decided by the server, on its own clock, and
shown to the gate as "admitted": an offline admission uploaded later and dated before it never
displaces it. When an online entry would collide with an offline admission, the offline one is
the conflict (of the online one) instead, and so is every entry that collided with it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from shared import wire
from shared.domain import Direction


@dataclass(frozen=True, slots=True)
class AdmittedScan:
    """A scan that let someone through (entry) or out (exit), not annulled."""

    scan_id: uuid.UUID
    at: datetime
    direction: Direction
    #: Decided online by the server, at ``at`` on its own clock: no offline claim displaces it.
    online: bool = False
    #: Where and by whom it was scanned: what a refusal names as ``prior``.
    gate: str = ""
    device_id: uuid.UUID | None = None
    #: The check-in list it was admitted on (issue 16), None before lists or without them.
    list_id: str | None = None
    #: The zone that list leads into; None is the event's general area.
    zone: str | None = None


@dataclass(slots=True)
class Timeline:
    """The outcome of replaying a ticket's admitted scans in time order."""

    #: scan id → the admission it collided with, for every double entry.
    conflicts: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    #: The admission the ticket is inside on, if it is inside now.
    inside_on: uuid.UUID | None = None
    #: The ticket's first admission ever, if any.
    first_entry: uuid.UUID | None = None

    @property
    def inside(self) -> bool:
        return self.inside_on is not None

    def entry_collides_with(self, allow_reentry: bool) -> uuid.UUID | None:
        """For a new entry after all these scans: the admission it would collide with, or None
        when it may enter."""
        if self.inside_on is not None:
            return self.inside_on
        if self.first_entry is not None and not allow_reentry:
            return self.first_entry
        return None


def replay(scans: Iterable[AdmittedScan], *, allow_reentry: bool) -> Timeline:
    """Replay ``scans`` in order of time (scan id breaks ties: UUIDv7 ids sort by creation)."""
    timeline = Timeline()
    online: set[uuid.UUID] = set()
    for scan in sorted(scans, key=lambda s: (s.at, s.scan_id)):
        if scan.direction is Direction.EXIT:
            timeline.inside_on = None
            continue
        collides = timeline.entry_collides_with(allow_reentry)
        if collides is None:
            timeline.inside_on = scan.scan_id
            if timeline.first_entry is None:
                timeline.first_entry = scan.scan_id
        elif scan.online and collides not in online:
            _displace(timeline, collides, by=scan.scan_id)
        else:
            timeline.conflicts[scan.scan_id] = collides
        if scan.online:
            online.add(scan.scan_id)
    return timeline


def prior_scan(scans: Sequence[AdmittedScan], *, allow_reentry: bool) -> wire.PriorScan | None:
    """The admission a new entry after ``scans`` collides with — what a refusal as
    ``already_checked_in`` names as ``prior`` — or None when it may enter."""
    collides = replay(scans, allow_reentry=allow_reentry).entry_collides_with(allow_reentry)
    prior = next((s for s in scans if s.scan_id == collides), None)
    if prior is None:
        return None
    return wire.PriorScan(
        scan_id=prior.scan_id, scanned_at=prior.at, gate=prior.gate, device_id=prior.device_id
    )


def _displace(timeline: Timeline, offline: uuid.UUID, *, by: uuid.UUID) -> None:
    """The online entry ``by`` stands where the offline admission ``offline`` stood: that one,
    and the entries that collided with it, become conflicts of ``by``."""
    for scan_id in [s for s, winner in timeline.conflicts.items() if winner == offline]:
        timeline.conflicts[scan_id] = by
    timeline.conflicts[offline] = by
    timeline.inside_on = by
    if timeline.first_entry == offline:
        timeline.first_entry = by
