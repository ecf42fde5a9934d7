"""Who is inside: the admitted scans of one ticket, put in time order.

Both sides use this. The server orders scans by their corrected scan time — which is how an
offline admission uploaded late still counts from when it happened — and the scanner uses it on
its own and its peers' scans to refuse a second entry.

Rules: an entry while the ticket is inside is a double entry (a *conflict* of the admission
that let it in); an entry after an exit is a re-entry, allowed only when the event allows it
(otherwise a conflict of the first admission); an exit lets the ticket out. Conflicts change
nothing: the first admission stands.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from shared.domain import Direction


@dataclass(frozen=True, slots=True)
class AdmittedScan:
    """A scan that let someone through (entry) or out (exit), not annulled."""

    scan_id: uuid.UUID
    at: datetime
    direction: Direction


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
    for scan in sorted(scans, key=lambda s: (s.at, s.scan_id)):
        if scan.direction is Direction.EXIT:
            timeline.inside_on = None
            continue
        collides = timeline.entry_collides_with(allow_reentry)
        if collides is not None:
            timeline.conflicts[scan.scan_id] = collides
            continue
        timeline.inside_on = scan.scan_id
        if timeline.first_entry is None:
            timeline.first_entry = scan.scan_id
    return timeline
