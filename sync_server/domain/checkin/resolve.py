"""Resolving a double entry (POST /v1/scans/{id}/resolve): a manager judges a conflict.

``accept``: both admissions stand (a known re-entry, say). The scan keeps ``conflict_of`` (whom
it collided with) and gains its resolution, and counts as an admission from then on: in the
scan log, the gate counts, and on the scanners, whose feed echo of the scan says
``conflict_resolved`` (and no longer names a ``conflict_of``). ``annul``: the scan is undone
through the annul path (history, event, the ticket replayed), and the resolution recorded.

Either way the ticket's history gets a ``conflict_resolved`` step (who, when, which scan, the
note) and other services a ``ticket.conflict_resolved`` event. Asking again answers the
recorded resolution; asking for the other one is 409 ``already_resolved``.
"""

from __future__ import annotations

import uuid

from shared.domain import Direction, VerdictResult
from sync_server.domain.checkin.admission import Admission
from sync_server.domain.checkin.annul import annul
from sync_server.domain.checkin.queries import ConflictScan
from sync_server.domain.checkin.schemas import ConflictAction, ConflictResolutionOut
from sync_server.http.problems import Conflict, NotFound

_RESOLUTION = {ConflictAction.ACCEPT: "accepted", ConflictAction.ANNUL: "annulled"}


def _out(scan: ConflictScan) -> ConflictResolutionOut:
    assert scan.ticket_id is not None
    assert scan.conflict_resolution is not None
    assert scan.conflict_resolved_at is not None
    return ConflictResolutionOut(
        scan_id=scan.id,
        ticket_id=scan.ticket_id,
        conflict_of=scan.conflict_of,
        resolution=scan.conflict_resolution,
        resolved_at=scan.conflict_resolved_at,
        resolved_by=scan.conflict_resolved_by or "",
        note=scan.conflict_resolution_note,
    )


def _not_a_conflict() -> Conflict:
    return Conflict(
        "not_a_conflict", "This scan is no double entry that stands: there is nothing to resolve."
    )


async def resolve(
    a: Admission, scan_id: uuid.UUID, action: ConflictAction, actor: str, note: str | None
) -> ConflictResolutionOut:
    """Resolve the double entry ``scan_id`` (a manager's call; ``actor`` is the manager)."""
    found = await a.queries.conflict_scan(scan_id)
    if found is None:
        raise NotFound("scan")
    if found.ticket_id is None:  # a code that did not read: never an admission
        raise _not_a_conflict()
    # The ticket's lock first (every writer of its scans takes it), then the scan as it is now.
    ticket = (await a.queries.lock_tickets([found.ticket_id]))[found.ticket_id]
    scan = await a.queries.conflict_scan(scan_id)
    assert scan is not None
    wanted = _RESOLUTION[action]
    if scan.conflict_resolution is not None:
        if scan.conflict_resolution == wanted:
            return _out(scan)
        raise Conflict(
            "already_resolved",
            f"This double entry was already resolved ({scan.conflict_resolution}).",
            resolution=scan.conflict_resolution,
        )
    if (
        scan.result != VerdictResult.ADMITTED
        or scan.direction != Direction.ENTRY
        or scan.conflict_of is None
        or scan.annulled_at is not None
    ):
        raise _not_a_conflict()
    if action is ConflictAction.ANNUL:
        await annul(a, scan_id, actor, None, note)
        # As the annulment left it (back to active when no admission remains).
        ticket = (await a.queries.lock_tickets([ticket.id]))[ticket.id]
    await a.queries.resolve_conflict(scan_id, wanted, a.now, actor, note)
    await a.changed(
        ticket,
        "conflict_resolved",
        "ticket.conflict_resolved",
        actor=actor,
        reason=note,
        status=None,
        details={
            "scan_id": str(scan_id),
            "conflict_of": str(scan.conflict_of),
            "gate": scan.gate,
            "resolution": wanted,
        },
    )
    resolved = await a.queries.conflict_scan(scan_id)
    assert resolved is not None
    return _out(resolved)
