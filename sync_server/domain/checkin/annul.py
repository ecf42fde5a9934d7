"""Undoing an admission (POST /v1/scans/{id}/annul): staff let someone in by mistake."""

from __future__ import annotations

import uuid

from shared import wire
from shared.domain import Direction, TicketStatus, VerdictResult
from sync_server.domain.checkin.admission import Admission, Gate
from sync_server.http.problems import Forbidden, NotFound, Unprocessable


async def annul(
    a: Admission,
    scan_id: uuid.UUID,
    actor: str,
    device_id: uuid.UUID | None,
    reason: str | None = None,
) -> wire.Verdict:
    """Undo an admission. Only a manager or the device that admitted (or a later enrollment of
    the same computer, ``Admission.same_gate``) may. The ticket's timeline
    is replayed without it (conflicts it caused are lifted), and the ticket goes back to
    ``active`` when no admission remains. History records who (``actor``) and, when given,
    why (``reason``: e.g. a scanner undoing an admission whose verdict it never showed)."""
    scan = await a.queries.stored_scan(scan_id)
    if scan is None:
        raise NotFound("scan")
    if device_id is not None and not await a.same_gate(scan.device_id, device_id):
        raise Forbidden("not_your_scan", "A device can only undo its own admissions.")
    if scan.result != VerdictResult.ADMITTED or scan.direction != Direction.ENTRY:
        raise Unprocessable("not_an_admission", "Only an admitted entry can be undone.")
    if scan.annulled_at is not None:
        raise Unprocessable("already_annulled", "This admission was already undone.")
    assert scan.ticket_id is not None
    ticket = (await a.queries.lock_tickets([scan.ticket_id]))[scan.ticket_id]
    await a.queries.annul_scan(scan_id, a.now, actor)
    a.scans_changed(scan.event_id)
    changed = await a.reconcile([ticket])
    remaining = await a.timeline(ticket)
    reopened = remaining.first_entry is None and ticket.status == TicketStatus.CHECKED_IN
    await a.changed(
        ticket,
        "checkin_annulled",
        "ticket.checkin_annulled",
        actor=actor,
        reason=reason,
        status=TicketStatus.ACTIVE if reopened else None,
        details={"scan_id": str(scan_id), "gate": scan.gate, "reclassified": len(changed)},
    )
    return a.verdict(
        scan_id,
        Gate(scan.gate, actor, scan.event_id, scan.device_id),
        Direction.ENTRY,
        reason=None,
        ticket=ticket,
    )
