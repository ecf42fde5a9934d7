"""Offline uploads (POST /v1/sync/scans): a batch of scans a device decided at its gate,
recorded at most once each and placed in their tickets' timelines by corrected time."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from shared import wire
from shared.checkin_lists import ListDecision
from shared.domain import Direction, VerdictReason, VerdictResult
from shared.ticket_code import TicketCode
from shared.timeline import AdmittedScan
from sync_server.domain.checkin.admission import (
    JUNK,
    Admission,
    Gate,
    gate_reason,
    list_history,
    outcome,
    scan_id_taken,
)
from sync_server.domain.checkin.claims import placed_at, time_adjustment
from sync_server.domain.checkin.queries import HistoryScan, LockedTicket, NewScan, ScanOutcomeRow


class Upload:
    def __init__(self, admission: Admission, *, junk_per_minute: int) -> None:
        """``junk_per_minute``: uploaded scans whose code does not read stored per device and
        minute (the rest are counted, not stored)."""
        self._a = admission
        self._junk_per_minute = max(junk_per_minute, 0)

    async def ingest(self, gate: Gate, scans: Sequence[wire.ScanUpload]) -> wire.ScanBatchOutcome:
        """Record a batch of offline scans, at most once each, and place every admission in its
        ticket's timeline by corrected scan time (bounded: ``claims``): the earliest entry is
        the admission, later ones without an exit between are conflicts — except that no
        offline claim displaces an online admission. Scans count for the gate the device was
        enrolled for. Raises ``Conflict`` (``scan_id_taken``), refusing the whole batch, when
        one of its scan ids is another device's (of any tenant) that is not of this device's
        lineage (``Admission.same_gate``)."""
        a = self._a
        assert gate.event_id is not None
        assert gate.device_id is not None
        device_id = gate.device_id
        device = await a.queries.device(device_id)
        gate = replace(gate, name=device.gate)
        ids = [s.scan_id for s in scans]
        known = await a.queries.scan_devices(ids)
        # A scan id another device holds: refused, unless that device is this gate's lineage
        # (the same computer enrolled again, answering what it has as repeats).
        others: dict[uuid.UUID | None, uuid.UUID] = {}
        for scan_id, seen in known.items():
            if seen != device_id:
                others.setdefault(seen, scan_id)
        for holder, scan_id in others.items():
            if not await a.same_gate(holder, device_id):
                raise scan_id_taken(scan_id)
        fresh: dict[uuid.UUID, wire.ScanUpload] = {}
        for scan in scans:
            if scan.scan_id not in known:
                fresh.setdefault(scan.scan_id, scan)

        decoded = {
            scan_id: await a.decode(scan.code, gate.event_id) for scan_id, scan in fresh.items()
        }
        # Each ticket's facts are read once, locked (in id order: two uploads never deadlock).
        tickets = await a.queries.lock_tickets(
            d.ticket_id for d in decoded.values() if isinstance(d, TicketCode)
        )
        # Scans whose code does not read: stored up to the device's allowance this minute, the
        # rest only counted (and answered, so the device stops sending them).
        junk = [scan_id for scan_id, found in decoded.items() if found in JUNK]
        not_stored: dict[uuid.UUID, wire.ScanOutcome] = {}
        if junk:
            minute = a.now.replace(second=0, microsecond=0)
            kept = await a.queries.junk_allowance(
                a.tenant_id, device_id, minute, len(junk), self._junk_per_minute
            )
            for scan_id in junk[kept:]:
                row = self._row(gate, fresh[scan_id], decoded[scan_id], {}, device.created_at)
                not_stored[scan_id] = _unstored_outcome(row)
                del fresh[scan_id]
        lists = await self._list_decisions(gate, fresh, decoded, tickets, device.created_at)
        rows = [
            self._row(
                gate, scan, decoded[scan_id], tickets, device.created_at, lists=lists.get(scan_id)
            )
            for scan_id, scan in fresh.items()
        ]
        admitted = {
            r.ticket_id
            for r in rows
            if r.ticket_id is not None and r.result == VerdictResult.ADMITTED.value
        }
        inserted = await a.queries.insert_scans(rows)
        a.scans_changed(*{r.event_id for r in rows if r.id in inserted})
        changed = await a.reconcile(tickets[t] for t in sorted(admitted))
        entered = {
            r.ticket_id
            for r in rows
            if r.ticket_id is not None
            and r.result == VerdictResult.ADMITTED.value
            and r.direction == Direction.ENTRY.value
        }
        await a.checked_in((tickets[t] for t in sorted(entered)), gate)

        # What the batch stored is known without reading it back: its rows, with the conflicts
        # the replay just set. Only scans recorded before (a repeat) are read.
        repeated = known.keys() | (fresh.keys() - inserted)
        stored = await a.queries.outcomes(list(repeated)) if repeated else {}
        # A fresh id the insert skipped was taken meanwhile: by this device's own upload racing
        # this one (a duplicate), by another device, or by another tenant (whose row we
        # cannot see). The exception rolls the batch back.
        for scan_id in fresh.keys() - inserted:
            held = stored.get(scan_id)
            if held is None or not await a.same_gate(held.device_id, device_id):
                raise scan_id_taken(scan_id)
        moved = {row.id: row for row in changed}
        for row in rows:
            if row.id in inserted:
                stored[row.id] = moved.get(row.id) or _stored_outcome(row)
        batch = set(ids)
        return wire.ScanBatchOutcome(
            outcomes=[
                not_stored.get(s.scan_id)
                or outcome(stored[s.scan_id], duplicate=s.scan_id in repeated)
                for s in scans
            ],
            reclassified=[outcome(row) for row in changed if row.id not in batch],
            server_time=a.now,
        )

    async def _list_decisions(
        self,
        gate: Gate,
        fresh: dict[uuid.UUID, wire.ScanUpload],
        decoded: dict[uuid.UUID, TicketCode | VerdictReason],
        tickets: dict[uuid.UUID, LockedTicket],
        enrolled_at: datetime,
    ) -> dict[uuid.UUID, Uploaded]:
        """What the event's check-in lists say of each uploaded scan of a known ticket whose
        standing lets it through, decided in time order on the ticket's admitted scans so far
        (the stored ones and the batch's earlier ones): the list it counts on, and the server's
        opinion when the device's data was stale. Empty when the event has no lists."""
        a = self._a
        assert gate.event_id is not None
        planned = {t.id for t in tickets.values() if await a.plan(t) is not None}
        if not planned:
            return {}
        stored: dict[uuid.UUID, list[HistoryScan]] = {}
        for row in await a.queries.admitted_scans(sorted(planned)):
            stored.setdefault(row.ticket_id, []).append(row)
        histories = {t: list_history(rows) for t, rows in stored.items()}
        pending: list[tuple[datetime, uuid.UUID, wire.ScanUpload, LockedTicket]] = []
        for scan_id, scan in fresh.items():
            code = decoded[scan_id]
            if not isinstance(code, TicketCode) or code.ticket_id not in planned:
                continue
            ticket = tickets[code.ticket_id]
            at = placed_at(
                scan.scanned_at, scan.clock_offset_ms, enrolled_at=enrolled_at, received_at=a.now
            )
            if a.standing(code, scan.direction, gate_event_id=gate.event_id, ticket=ticket, at=at):
                continue
            pending.append((at, scan_id, scan, ticket))
        decided: dict[uuid.UUID, Uploaded] = {}
        for at, scan_id, scan, ticket in sorted(pending, key=lambda p: (p[0], p[1])):
            history = histories.setdefault(ticket.id, [])
            decision = await a.lists(ticket, gate.name, scan.direction, history, at)
            if decision is None:
                continue
            on = decision.list
            if decision.refusal is not None:
                plan = await a.plan(ticket)
                assert plan is not None
                on = next((x for x in plan.plan.lists if x.id == decision.refusal.list_id), None)
            list_id = uuid.UUID(on.id) if on is not None else None
            zone = on.zone if on is not None else None
            decided[scan_id] = Uploaded(decision, list_id, zone)
            if scan.device_result is VerdictResult.ADMITTED:
                history.append(
                    AdmittedScan(
                        scan_id,
                        at,
                        scan.direction,
                        gate=gate.name,
                        device_id=gate.device_id,
                        list_id=on.id if on is not None else None,
                        zone=zone,
                    )
                )
        return decided

    def _row(
        self,
        gate: Gate,
        scan: wire.ScanUpload,
        decoded: TicketCode | VerdictReason,
        tickets: dict[uuid.UUID, LockedTicket],
        enrolled_at: datetime,
        *,
        lists: Uploaded | None = None,
    ) -> NewScan:
        """The row of one uploaded scan: what the device did, at the gate it was enrolled for,
        placed in time within what is possible (``claims.placed_at``)."""
        a = self._a
        assert gate.event_id is not None
        at = placed_at(
            scan.scanned_at, scan.clock_offset_ms, enrolled_at=enrolled_at, received_at=a.now
        )
        ticket_id: uuid.UUID | None = None
        server_reason: VerdictReason | None
        version: int | None = None
        if isinstance(decoded, VerdictReason):
            server_reason = gate_reason(scan.direction, decoded)
        else:
            version = decoded.secret_version
            ticket = tickets.get(decoded.ticket_id)
            server_reason = a.standing(
                decoded, scan.direction, gate_event_id=gate.event_id, ticket=ticket, at=at
            )
            if ticket is not None and server_reason is not VerdictReason.WRONG_EVENT:
                ticket_id = ticket.id
            if server_reason is None and lists is not None:
                server_reason = lists.server_reason
        admitted = scan.device_result is VerdictResult.ADMITTED
        return NewScan(
            id=scan.scan_id,
            tenant_id=a.tenant_id,
            ticket_id=ticket_id,
            event_id=gate.event_id,
            device_id=gate.device_id,
            scanned_by=gate.actor,
            gate=gate.name,  # never the uploaded name: the device's enrolled gate
            direction=scan.direction.value,
            # What happened at the gate is what the device decided; the server's opinion of
            # an admission it would have refused is kept beside it.
            result=scan.device_result.value,
            reason=None
            if admitted
            else (scan.device_reason or server_reason or VerdictReason.INVALID_CODE).value,
            scanned_at=at,
            device_scanned_at=scan.scanned_at,
            clock_offset_ms=scan.clock_offset_ms,
            # Whatever the upload says: a scan the server did not decide was decided offline.
            offline=True,
            device_result=scan.device_result.value,
            device_reason=scan.device_reason.value if scan.device_reason else None,
            server_reason=server_reason.value if admitted and server_reason else None,
            code_secret_version=version,
            received_at=a.now,
            checkin_list_id=lists.list_id if lists is not None else None,
            zone=lists.zone if lists is not None and admitted else None,
        )


@dataclass(frozen=True, slots=True)
class Uploaded:
    """What the check-in lists say of one uploaded scan: the decision, and the list (and its
    zone) the scan is recorded on — the one that admitted it or, where the server would have
    refused, the one that refused it."""

    decision: ListDecision
    list_id: uuid.UUID | None
    zone: str | None

    @property
    def server_reason(self) -> VerdictReason | None:
        """The server's refusal, except a double entry: the timeline judges those (conflicts)."""
        refusal = self.decision.refusal
        if refusal is None or refusal.reason is VerdictReason.ALREADY_CHECKED_IN:
            return None
        return refusal.reason


def _stored_outcome(row: NewScan) -> ScanOutcomeRow:
    """What ``OUTCOMES`` reads of an uploaded scan just inserted (a conflict it became is the
    replay's, ``Admission.reconcile``)."""
    assert row.device_scanned_at is not None
    assert row.clock_offset_ms is not None
    adjusted = time_adjustment(row.device_scanned_at, row.clock_offset_ms, row.scanned_at)
    return ScanOutcomeRow(
        id=row.id,
        device_id=row.device_id,
        result=row.result,
        reason=row.reason,
        conflict_of=None,
        server_reason=row.server_reason,
        time_adjusted=None if adjusted is None else adjusted.value,
    )


def _unstored_outcome(row: NewScan) -> wire.ScanOutcome:
    """The answer for an uploaded scan counted but not stored (its code did not read and the
    device's allowance of such scans this minute was used up)."""
    return wire.ScanOutcome(
        scan_id=row.id,
        result=VerdictResult(row.result),
        reason=VerdictReason(row.reason) if row.reason else None,
        server_reason=VerdictReason(row.server_reason) if row.server_reason else None,
        stored=False,
    )
