"""What a device may claim about the scans it uploads (docs/sync-protocol.md, "What a device may
claim").

An enrolled device is trusted to say what happened at its gate, not to say it happened at any
time at all. An uploaded scan happened after its device was enrolled (before that it had no
keys to read a code with) and before the upload reached the server, so it is placed at the
device's corrected time (``scanned_at + clock_offset_ms``) held within those two instants. A
placement that moved the claim by more than ``CLOCK_TOLERANCE`` (clocks drift; offsets are
measured over a network) is flagged with a ``TimeAdjustment``, derived from the stored columns
— the device's reading and offset are kept as sent — so the device's answer, a re-upload's
answer and the managers' scan log all say the same.

Nothing is dropped: a scan whose time is beyond belief is still stored as what the device did,
at the nearest believable time. No admission is ever dated after the server received it, so an
exit "in the future" cannot keep a ticket outside while the same code is admitted again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Interval, case, literal, literal_column

from shared.domain import TimeAdjustment
from sync_server.db.models import TicketScan

#: How far a device's corrected time may lie outside the possible before it is flagged.
CLOCK_TOLERANCE = timedelta(minutes=5)


def placed_at(
    scanned_at: datetime, clock_offset_ms: int, *, enrolled_at: datetime, received_at: datetime
) -> datetime:
    """Where an uploaded scan goes in its ticket's timeline: the device's corrected time, held
    within [``enrolled_at``, ``received_at``] (just ``received_at`` should the server's clocks
    disagree about which came first). Never overflows, whatever the claim."""
    earliest = min(enrolled_at, received_at)
    # Measured from ``earliest`` as a timedelta: year 1 or 9999 plus any offset stays in range.
    claimed = scanned_at - earliest + timedelta(milliseconds=clock_offset_ms)
    return earliest + min(max(claimed, timedelta(0)), received_at - earliest)


def time_adjustment(
    device_scanned_at: datetime, clock_offset_ms: int, scanned_at: datetime
) -> TimeAdjustment | None:
    """How a placement moved the device's claim (``placed_at``), beyond ``CLOCK_TOLERANCE``:
    what ``TIME_ADJUSTED`` (and the check-in's ``OUTCOMES``) derive from the stored columns,
    for the answer to the upload that stores them (which has not read them back)."""
    moved = device_scanned_at - scanned_at + timedelta(milliseconds=clock_offset_ms)
    if moved > CLOCK_TOLERANCE:
        return TimeAdjustment.CLOCK_AHEAD
    if moved < -CLOCK_TOLERANCE:
        return TimeAdjustment.CLOCK_BEHIND
    return None


def _moved() -> Any:
    """How much later the device claimed than the scan was placed (SQL; NULL online)."""
    offset = TicketScan.clock_offset_ms * literal_column("INTERVAL '1 millisecond'", Interval)
    return TicketScan.device_scanned_at - TicketScan.scanned_at + offset


#: The stored scan's ``TimeAdjustment`` (its value, or NULL), as a column to select.
TIME_ADJUSTED = case(
    (_moved() > literal(CLOCK_TOLERANCE, Interval), literal(TimeAdjustment.CLOCK_AHEAD.value)),
    (_moved() < literal(-CLOCK_TOLERANCE, Interval), literal(TimeAdjustment.CLOCK_BEHIND.value)),
    else_=None,
).label("time_adjusted")
