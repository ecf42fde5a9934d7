"""The one admission path of the server, shared by the online check-in (``online``), offline
uploads (``upload``) and annulment (``annul``): decode → standing → timeline → write.

Each step is here once: reading a code for a gate, the ticket's standing (``shared.rules``)
with the exit rule, the prior admission an entry collides with and the timeline's conflicts
(``shared.timeline``), and the writes that follow an admission (status, history, outbox). Every
statement runs through ``queries`` on the request transaction's own connection, with the
ticket's row locked for the decision, so fifty gates presenting one ticket at once get exactly
one admission, and the outbox event commits with it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from shared import wire
from shared.checkin_lists import ListDecision, decide, zone_conflicts
from shared.domain import Direction, TicketStatus, TimeAdjustment, VerdictReason, VerdictResult
from shared.rules import refusal
from shared.ticket_code import TicketCode
from shared.timeline import AdmittedScan, Timeline, prior_scan, replay
from sync_server.db.engine import scans_written, ticket_written
from sync_server.domain.checkin.queries import (
    ChangeRows,
    CheckinQueries,
    HistoryScan,
    LockedTicket,
    NewScan,
    ScanOutcomeRow,
)
from sync_server.domain.checkin.setup import Plan, event_plan
from sync_server.domain.checkin.standing import decode_for_gate, standing
from sync_server.domain.keys.services import KeyReloads, KeyStore
from sync_server.domain.tickets.services import change_rows
from sync_server.http.problems import Conflict
from sync_server.messaging.outbox import ticket_event_row

#: Scans whose code did not read as a genuine code of any event of the tenant (a genuine code
#: of another event, ``wrong_event``, is not junk).
JUNK: Final = frozenset({VerdictReason.INVALID_CODE, VerdictReason.UNKNOWN_KEY})


def gate_reason(direction: Direction, reason: VerdictReason | None) -> VerdictReason | None:
    """The exit rule, the server's only call of it: what still refuses a scan in ``direction``
    whose standing is ``reason``."""
    return refusal(reason, direction)


def prior_admission(history: Sequence[HistoryScan], allow_reentry: bool) -> wire.PriorScan | None:
    """The prior-scan rule, the server's only call of it: the admission a new entry would
    collide with, given the ticket's admitted scans; None when it may enter."""
    return prior_scan([_admitted_scan(s) for s in history], allow_reentry=allow_reentry)


def http_status(verdict: wire.Verdict) -> int:
    """200 admitted, 409 already checked in, 422 any other rejection."""
    if verdict.reason is None:
        return 200
    return 409 if verdict.reason is VerdictReason.ALREADY_CHECKED_IN else 422


@dataclass(frozen=True, slots=True)
class Gate:
    """Where a scan happens and who scans: a device (its token names event and gate) or a
    manager checking someone in by hand."""

    name: str
    actor: str
    event_id: uuid.UUID | None
    device_id: uuid.UUID | None = None


def scan_id_taken(scan_id: uuid.UUID) -> Conflict:
    return Conflict(
        "scan_id_taken",
        f"Scan id {scan_id} belongs to another device's scan.",
        scan_id=str(scan_id),
    )


def _admitted_scan(row: HistoryScan) -> AdmittedScan:
    return AdmittedScan(
        row.id,
        row.scanned_at,
        Direction(row.direction),
        online=row.online,
        gate=row.gate,
        device_id=row.device_id,
        list_id=str(row.checkin_list_id) if row.checkin_list_id is not None else None,
        zone=row.zone,
    )


def list_history(history: Iterable[HistoryScan]) -> list[AdmittedScan]:
    """A ticket's admitted scans as check-in lists count them: not the double entries the
    timeline marks as conflicts, unless a manager accepted one (both admissions stand, as the
    feed tells the scanners: their offline gates count it too)."""
    return [_admitted_scan(s) for s in history if s.conflict_of is None or s.conflict_accepted]


def list_ids(decision: ListDecision | None) -> tuple[uuid.UUID | None, str | None]:
    """What a scan records of a list decision: the list it counted on (or that refused it) and,
    when admitted, that list's zone."""
    if decision is None:
        return None, None
    if decision.refusal is not None:
        refused_by = decision.refusal.list_id
        return (uuid.UUID(refused_by) if refused_by else None), None
    if decision.list is None:
        return None, None
    return uuid.UUID(decision.list.id), decision.list.zone


def outcome(row: ScanOutcomeRow, *, duplicate: bool = False) -> wire.ScanOutcome:
    return wire.ScanOutcome(
        scan_id=row.id,
        result=VerdictResult(row.result),
        reason=VerdictReason(row.reason) if row.reason else None,
        conflict_of=row.conflict_of,
        duplicate_upload=duplicate,
        server_reason=VerdictReason(row.server_reason) if row.server_reason else None,
        time_adjusted=TimeAdjustment(row.time_adjusted) if row.time_adjusted else None,
    )


class Admission:
    """One request's admission steps: its tenant, its clock reading, its transaction."""

    def __init__(
        self,
        session: AsyncSession,
        queries: CheckinQueries,
        keys: KeyStore,
        *,
        tenant_id: uuid.UUID,
        now: datetime,
    ) -> None:
        self.session = session
        self.queries = queries
        self.tenant_id = tenant_id
        self.now = now
        self._keys = keys
        # One request: a batch of codes reloads the key rings at most once.
        self._reloads = KeyReloads()
        # One request: each event's plan is looked up once.
        self._plans: dict[uuid.UUID, Plan | None] = {}

    # --- whose scan -----------------------------------------------------------------------

    async def same_gate(self, holder: uuid.UUID | None, device_id: uuid.UUID | None) -> bool:
        """Whether a scan recorded by device ``holder`` is device ``device_id``'s own: the same
        device, or one of its lineage (the same computer enrolled again, migration 0023). A
        scan without a device (a manager's) is no device's."""
        if holder is None or device_id is None:
            return False
        return holder == device_id or await self.queries.same_gate(holder, device_id)

    # --- decode ---------------------------------------------------------------------------

    async def decode(
        self, text: str, gate_event_id: uuid.UUID | None
    ) -> TicketCode | VerdictReason:
        return await decode_for_gate(
            self.session,
            self._keys,
            text,
            tenant_id=self.tenant_id,
            gate_event_id=gate_event_id,
            reloads=self._reloads,
        )

    # --- standing -------------------------------------------------------------------------

    @staticmethod
    def standing(
        code: TicketCode,
        direction: Direction,
        *,
        gate_event_id: uuid.UUID,
        ticket: LockedTicket | None,
        at: datetime,
    ) -> VerdictReason | None:
        """Why the gate must refuse ``code`` in ``direction`` at ``at`` (earlier scans aside)."""
        return gate_reason(
            direction, standing(code, gate_event_id=gate_event_id, ticket=ticket, now=at)
        )

    # --- lists ----------------------------------------------------------------------------

    async def plan(self, ticket: LockedTicket) -> Plan | None:
        """The plan of ``ticket``'s event (its lists, days and ticket types), at least as new as
        the locked ticket's reading of its setup version; None when the event has no lists."""
        if ticket.event_id not in self._plans:
            found = await event_plan(
                self.queries.connection,
                tenant_id=self.tenant_id,
                event_id=ticket.event_id,
                version=ticket.setup_version,
            )
            self._plans[ticket.event_id] = found if found is not None and found.has_lists else None
        return self._plans[ticket.event_id]

    async def lists(
        self,
        ticket: LockedTicket,
        gate: str,
        direction: Direction,
        history: Iterable[AdmittedScan],
        at: datetime,
    ) -> ListDecision | None:
        """What the event's check-in lists say about this scan (``shared.checkin_lists.decide``,
        the one rule): None when the event has no lists or none is scanned at ``gate`` —
        decide as without lists. ``history``: the ticket's admitted scans (``list_history``)."""
        plan = await self.plan(ticket)
        if plan is None:
            return None
        return decide(
            plan.plan,
            gate=gate,
            direction=direction,
            ticket=plan.kind(ticket.ticket_type_id, ticket.ticket_type),
            history=history,
            now=at,
        )

    # --- timeline -------------------------------------------------------------------------

    async def prior(
        self, ticket: LockedTicket, before: datetime | None = None
    ) -> wire.PriorScan | None:
        """The admission an entry of ``ticket`` (locked) now collides with; with ``before``,
        counting only scans up to that time."""
        history = await self.queries.admitted_scans([ticket.id])
        if before is not None:
            history = [s for s in history if s.scanned_at <= before]
        return prior_admission(history, ticket.allow_reentry)

    async def timeline(self, ticket: LockedTicket) -> Timeline:
        """``ticket``'s admitted scans (entries and exits) replayed by time."""
        history = await self.queries.admitted_scans([ticket.id])
        return replay((_admitted_scan(s) for s in history), allow_reentry=ticket.allow_reentry)

    async def reconcile(self, tickets: Iterable[LockedTicket]) -> list[ScanOutcomeRow]:
        """Replay each ticket's admitted scans by corrected time and store who is a conflict of
        whom (a new conflict also goes on the feed as ``scan.conflict``). Returns the scans
        whose conflict status changed."""
        by_ticket = {t.id: t for t in tickets}
        if not by_ticket:
            return []
        per_ticket: dict[uuid.UUID, list[HistoryScan]] = {}
        for row in await self.queries.admitted_scans(by_ticket):
            per_ticket.setdefault(row.ticket_id, []).append(row)
        updates: list[tuple[uuid.UUID, uuid.UUID | None]] = []
        events = []
        for ticket_id, scans in per_ticket.items():
            ticket = by_ticket[ticket_id]
            if any(s.checkin_list_id is not None for s in scans):
                plan = await self.plan(ticket)
                conflicts = zone_conflicts(
                    [_admitted_scan(s) for s in scans],
                    plan.plan if plan is not None else None,
                    allow_reentry=ticket.allow_reentry,
                )
            else:
                conflicts = replay(
                    (_admitted_scan(s) for s in scans), allow_reentry=ticket.allow_reentry
                ).conflicts
            for scan in scans:
                wanted = conflicts.get(scan.id)
                if wanted == scan.conflict_of:
                    continue
                updates.append((scan.id, wanted))
                if wanted is not None:
                    events.append(
                        ticket_event_row(
                            routing_key="scan.conflict",
                            tenant_id=self.tenant_id,
                            ticket_id=scan.ticket_id,
                            time=self.now,
                            data={
                                "scan_id": str(scan.id),
                                "ticket_id": str(scan.ticket_id),
                                "conflict_of": str(wanted),
                                "scanned_at": scan.scanned_at.isoformat(),
                            },
                        )
                    )
        if not updates:
            return []
        await self.queries.set_conflicts(updates)  # few: only scans whose place moved
        await self.queries.events(events)
        changed = await self.queries.outcomes([scan_id for scan_id, _ in updates])
        return [changed[scan_id] for scan_id, _ in updates if scan_id in changed]

    # --- write ----------------------------------------------------------------------------

    def scans_changed(self, *event_ids: uuid.UUID) -> None:
        """This transaction writes or changes scans of these events: once it commits, the
        server's live views hear of it (``sync_server.db.scan_signals``). No round trip."""
        scans_written(self.session, *event_ids)

    async def record_online(
        self, scan: NewScan, ticket: LockedTicket | None, gate: Gate, direction: Direction
    ) -> bool:
        """Write an online verdict: the scan, and for an admission (entry or exit) its event
        and, for a first entry, the ticket's status and history — one statement either way.
        False when the scan's id is taken (then nothing was written)."""
        self.scans_changed(scan.event_id)
        if ticket is None or scan.result != VerdictResult.ADMITTED.value:
            return await self.queries.insert_scan(scan)
        details = {"scan_id": str(scan.id), "gate": gate.name, "direction": direction.value}
        first: ChangeRows | None = None
        if direction is Direction.ENTRY and ticket.status == TicketStatus.ACTIVE:
            first = self._change(
                replace(ticket, status=TicketStatus.CHECKED_IN.value),
                "checked_in",
                "ticket.checked_in",
                actor=gate.actor,
                from_status=TicketStatus.ACTIVE.value,
                details=details,
            )
            event = first.event
        else:
            # A re-entry or an exit: no change of status, but other services still hear of it.
            event = ticket_event_row(
                routing_key="ticket.checked_in"
                if direction is Direction.ENTRY
                else "ticket.checked_out",
                tenant_id=self.tenant_id,
                ticket_id=ticket.id,
                time=self.now,
                data={
                    "ticket_id": str(ticket.id),
                    "event_id": str(ticket.event_id),
                    "actor": gate.actor,
                    **details,
                },
            )
        if not await self.queries.admit(scan, event, first, details):
            return False
        if first is not None:
            ticket_written(self.session, ticket.id)
        return True

    async def checked_in(self, tickets: Iterable[LockedTicket], gate: Gate) -> None:
        """Tickets (locked, each with an admitted entry just recorded offline) that were
        ``active`` become ``checked_in``, with history and event: three statements in all."""
        first = [t for t in tickets if t.status == TicketStatus.ACTIVE]
        if not first:
            return
        await self.queries.set_status(
            [t.id for t in first], TicketStatus.CHECKED_IN.value, self.now
        )
        ticket_written(self.session, *(t.id for t in first))
        await self.queries.changes(
            [
                self._change(
                    replace(t, status=TicketStatus.CHECKED_IN.value),
                    "checked_in",
                    "ticket.checked_in",
                    actor=gate.actor,
                    from_status=TicketStatus.ACTIVE.value,
                    details={"gate": gate.name, "offline": True},
                )
                for t in first
            ]
        )

    async def changed(
        self,
        ticket: LockedTicket,
        kind: str,
        routing_key: str,
        *,
        actor: str,
        status: TicketStatus | None,
        details: Mapping[str, object],
        reason: str | None = None,
    ) -> None:
        """Any other change of a locked ticket from check-in (an annulment): status if given,
        ``updated_at``, history and event (with ``reason``, when given)."""
        after = ticket if status is None else replace(ticket, status=status.value)
        await self.queries.set_status([ticket.id], after.status, self.now)
        ticket_written(self.session, ticket.id)
        await self.queries.changes(
            [
                self._change(
                    after,
                    kind,
                    routing_key,
                    actor=actor,
                    from_status=ticket.status,
                    details=details,
                    reason=reason,
                )
            ]
        )

    def _change(
        self,
        after: LockedTicket,
        kind: str,
        routing_key: str,
        *,
        actor: str,
        from_status: str,
        details: Mapping[str, object],
        reason: str | None = None,
    ) -> ChangeRows:
        history, event = change_rows(
            after,
            kind,
            routing_key,
            actor=actor,
            now=self.now,
            from_status=from_status,
            reason=reason,
            details=dict(details),
        )
        return ChangeRows(history, event)

    # --- answer ---------------------------------------------------------------------------

    def verdict(
        self,
        scan_id: uuid.UUID,
        gate: Gate,
        direction: Direction,
        *,
        reason: VerdictReason | None,
        ticket: LockedTicket | None = None,
        prior: wire.PriorScan | None = None,
        chain_verified: bool | None = None,
        scanned_at: datetime | None = None,
        message: str | None = None,
    ) -> wire.Verdict:
        known = ticket is not None and reason not in (
            VerdictReason.WRONG_EVENT,
            VerdictReason.NOT_FOUND,
        )
        shown = ticket if known else None
        return wire.Verdict(
            result=VerdictResult.ADMITTED if reason is None else VerdictResult.REJECTED,
            reason=reason,
            scan_id=scan_id,
            direction=direction,
            gate=gate.name,
            scanned_at=scanned_at or self.now,
            ticket_id=shown.id if shown else None,
            event_id=shown.event_id if shown else None,
            ticket_type=shown.ticket_type if shown else None,
            holder_name=shown.holder_name if shown else None,
            prior=prior,
            chain_verified=chain_verified,
            message=message,
        )
