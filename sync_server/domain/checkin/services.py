"""Check-in: online verdicts, offline uploads and annulment. Each decision is made with the
ticket's row locked, and written — scan, status, history, event — in the request's transaction,
so fifty gates presenting one ticket at once get exactly one admission."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Final

import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared import wire
from shared.domain import Direction, TicketStatus, TimeAdjustment, VerdictReason, VerdictResult
from shared.ids import new_id
from shared.rules import refusal
from shared.ticket_code import TicketCode
from shared.timeline import AdmittedScan, prior_scan, replay
from sync_server.db.engine import ticket_written
from sync_server.db.models import (
    Device,
    Event,
    Ticket,
    TicketScan,
)
from sync_server.db.raw import driver
from sync_server.domain.checkin.claims import TIME_ADJUSTED, placed_at
from sync_server.domain.checkin.ownership import OwnershipCheck
from sync_server.domain.checkin.standing import decode_for_gate, standing
from sync_server.domain.keys.services import KeyReloads, KeyStore
from sync_server.domain.tickets.chain_sync import SETTLED, ChainSync, check_move
from sync_server.domain.tickets.services import change_rows, change_ticket
from sync_server.http.problems import Conflict, Forbidden, NotFound, Unprocessable
from sync_server.messaging.outbox import add_ticket_event, ticket_event_row


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


@dataclass(frozen=True, slots=True)
class LockedTicket:
    """A ticket row locked for a decision, with what the decision needs from its event and
    type (the columns of ``_LOCK_TICKETS``)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    event_id: uuid.UUID
    ticket_type_id: uuid.UUID
    purchase_id: uuid.UUID
    user_id: str
    status: str
    secret_version: int
    holder_name: str
    holder_wallet: str | None
    nft_mint: str | None
    blockchain_sync_status: str
    ticket_type: str
    allow_reentry: bool
    admission_opens_at: datetime | None
    ends_at: datetime


class CheckInService:
    def __init__(
        self,
        session: AsyncSession,
        keys: KeyStore,
        ownership: OwnershipCheck,
        *,
        tenant_id: uuid.UUID,
        now: datetime,
        junk_per_minute: int = 100,
    ) -> None:
        """``junk_per_minute``: uploaded scans whose code does not read stored per device and
        minute (the rest are counted, not stored)."""
        self._session = session
        self._keys = keys
        self._ownership = ownership
        self._tenant_id = tenant_id
        self._now = now
        self._junk_per_minute = max(junk_per_minute, 0)
        # One service per request: a batch of codes reloads the key rings at most once.
        self._reloads = KeyReloads()

    # --- online -----------------------------------------------------------------------------

    async def validate(self, gate: Gate, request: wire.ValidateRequest) -> wire.Verdict:
        """The authoritative verdict for one scan, recorded before it is returned. A retried
        request with the same ``scan_id`` gets the recorded verdict again; a ``scan_id`` that
        is another caller's (of any tenant) raises ``Conflict`` (``scan_id_taken``)."""
        scan_id = request.scan_id or new_id()
        if request.scan_id is not None:
            stored = await self._own_verdict(scan_id, gate)
            if stored is not None:
                return stored
        decoded = await self._decode(request.code, gate.event_id)
        event_id = gate.event_id
        if isinstance(decoded, TicketCode):
            event_id = event_id or decoded.event_id
        if event_id is None:  # a manager's scan of a code no event of theirs can read
            refused = decoded if isinstance(decoded, VerdictReason) else VerdictReason.UNKNOWN_KEY
            return self._verdict(scan_id, gate, request.direction, reason=refused)
        if isinstance(decoded, VerdictReason):
            if not await self._insert_scan(
                scan_id, gate, event_id, request.direction, ticket_id=None, reason=decoded
            ):
                return await self._raced(scan_id, gate)
            return self._verdict(scan_id, gate, request.direction, reason=decoded)

        state = await self._lock_ticket(decoded.ticket_id)
        reason: VerdictReason | None = standing(
            decoded, gate_event_id=event_id, ticket=state, now=self._now
        )
        reason = refusal(reason, request.direction)
        prior: wire.PriorScan | None = None
        chain_verified: bool | None = None
        if state is not None and reason is None and request.direction is Direction.ENTRY:
            reason, prior, chain_verified = await self._may_enter(state)

        ticket_id = state.id if state and reason is not VerdictReason.WRONG_EVENT else None
        inserted = await self._insert_scan(
            scan_id,
            gate,
            event_id,
            request.direction,
            ticket_id=ticket_id,
            reason=reason,
            code_secret_version=decoded.secret_version,
        )
        if not inserted:
            return await self._raced(scan_id, gate)
        if reason is None and state is not None:
            await self._admitted(state, scan_id, gate, request.direction)
        return self._verdict(
            scan_id,
            gate,
            request.direction,
            reason=reason,
            state=state,
            prior=prior,
            chain_verified=chain_verified,
        )

    async def _may_enter(
        self, state: LockedTicket
    ) -> tuple[VerdictReason | None, wire.PriorScan | None, bool | None]:
        """For a genuine, valid ticket at an entry: is it inside already (or was, with no
        re-entry), and does the chain agree on its owner? Reason, prior scan, chain verdict."""
        # An active ticket has no standing admission (the first one makes it checked_in,
        # undoing the last one makes it active again): no need to read its scans.
        if state.status != TicketStatus.ACTIVE:
            prior = _prior_in(await self._history([state.id]), state.allow_reentry)
            if prior is not None:
                return VerdictReason.ALREADY_CHECKED_IN, prior, None
        if state.blockchain_sync_status not in SETTLED:
            # 'pending': a mint or transfer of ours is in flight, so the chain may still name
            # the previous holder (or nobody) — asking would refuse a rightful guest.
            # 'not_minted' / 'failed': there is nothing on the chain to ask about.
            return None, None, None
        ownership = await self._ownership.check(
            ticket_id=state.id,
            nft_mint=state.nft_mint,
            holder_wallet=state.holder_wallet,
        )
        if ownership.mismatch:
            await self._flag_out_of_sync(state)
            return VerdictReason.OWNERSHIP_MISMATCH, None, ownership.verified
        return None, None, ownership.verified

    async def _flag_out_of_sync(self, state: LockedTicket) -> None:
        """The chain named another holder: mark the ticket ``out_of_sync`` in the verdict's
        transaction, so managers see it at once and the chain listener reconciles it. The
        ticket stays as it is otherwise: who really holds it is the listener's to settle."""
        if not check_move(state.blockchain_sync_status, ChainSync.OUT_OF_SYNC):
            return
        raw = await driver(self._session)
        await raw.execute(_FLAG_OUT_OF_SYNC, state.id, self._now, ChainSync.OUT_OF_SYNC.value)
        ticket_written(self._session, state.id)

    async def annul(
        self, scan_id: uuid.UUID, actor: str, device_id: uuid.UUID | None
    ) -> wire.Verdict:
        """Undo an admission (staff let someone in by mistake). Only a manager or the device that
        admitted may. The ticket goes back to ``active`` when no admission remains."""
        scan = await self._session.get(TicketScan, scan_id)
        if scan is None:
            raise NotFound("scan")
        if device_id is not None and scan.device_id != device_id:
            raise Forbidden("not_your_scan", "A device can only undo its own admissions.")
        if scan.result != VerdictResult.ADMITTED or scan.direction != Direction.ENTRY:
            raise Unprocessable("not_an_admission", "Only an admitted entry can be undone.")
        if scan.annulled_at is not None:
            raise Unprocessable("already_annulled", "This admission was already undone.")
        assert scan.ticket_id is not None
        state = await self._lock_ticket(scan.ticket_id)
        assert state is not None
        scan.annulled_at = self._now
        scan.annulled_by = actor
        await self._session.flush()
        changed = await self._reconcile([state])
        ticket = await self._session.get(Ticket, scan.ticket_id)
        assert ticket is not None
        remaining = replay(
            await self._admitted_scans([ticket.id]), allow_reentry=state.allow_reentry
        )
        reopened = remaining.first_entry is None and ticket.status == TicketStatus.CHECKED_IN
        change_ticket(
            self._session,
            ticket,
            "checkin_annulled",
            "ticket.checkin_annulled",
            actor=actor,
            now=self._now,
            status=TicketStatus.ACTIVE if reopened else None,
            details={"scan_id": str(scan_id), "gate": scan.gate, "reclassified": len(changed)},
        )
        return self._verdict(
            scan_id,
            Gate(scan.gate, actor, scan.event_id, scan.device_id),
            Direction.ENTRY,
            reason=None,
            state=state,
        )

    # --- offline uploads --------------------------------------------------------------------

    async def ingest(self, gate: Gate, scans: Sequence[wire.ScanUpload]) -> wire.ScanBatchOutcome:
        """Record a batch of offline scans, at most once each, and place every admission in its
        ticket's timeline by corrected scan time (bounded: ``claims``): the earliest entry is
        the admission, later ones without an exit between are conflicts — except that no
        offline claim displaces an online admission. Scans count for the gate the device was
        enrolled for. Raises ``Conflict`` (``scan_id_taken``), refusing the whole batch, when
        one of its scan ids is another device's (of any tenant)."""
        assert gate.event_id is not None
        assert gate.device_id is not None
        device_id = gate.device_id
        device = (
            await self._session.execute(
                select(Device.gate, Device.created_at).where(Device.id == gate.device_id)
            )
        ).one()
        gate = replace(gate, name=device.gate)
        ids = [s.scan_id for s in scans]
        known = {
            row.id: row
            for row in await self._session.execute(
                select(TicketScan.id, TicketScan.device_id).where(TicketScan.id.in_(ids))
            )
        }
        for scan_id, seen in known.items():
            if seen.device_id != gate.device_id:
                raise _scan_id_taken(scan_id)
        fresh: dict[uuid.UUID, wire.ScanUpload] = {}
        for scan in scans:
            if scan.scan_id not in known:
                fresh.setdefault(scan.scan_id, scan)

        decoded = {
            scan_id: await self._decode(scan.code, gate.event_id) for scan_id, scan in fresh.items()
        }
        known_tickets = await self._ticket_facts(
            {d.ticket_id for d in decoded.values() if isinstance(d, TicketCode)}
        )
        # Scans whose code does not read: stored up to the device's allowance this minute, the
        # rest only counted (and answered, so the device stops sending them).
        junk = [scan_id for scan_id, found in decoded.items() if found in JUNK]
        not_stored: dict[uuid.UUID, wire.ScanOutcome] = {}
        if junk:
            kept = await self._junk_allowance(device_id, len(junk))
            for scan_id in junk[kept:]:
                row = self._offline_row(
                    gate, fresh[scan_id], decoded[scan_id], {}, enrolled_at=device.created_at
                )
                not_stored[scan_id] = _unstored_outcome(row)
                del fresh[scan_id]
        rows: list[dict[str, Any]] = []
        tickets: set[uuid.UUID] = set()
        for scan_id, scan in fresh.items():
            row = self._offline_row(
                gate, scan, decoded[scan_id], known_tickets, enrolled_at=device.created_at
            )
            rows.append(row)
            if row["ticket_id"] is not None and row["result"] == VerdictResult.ADMITTED:
                tickets.add(row["ticket_id"])
        states = await self._lock_tickets(sorted(tickets))
        inserted: set[uuid.UUID] = set()
        if rows:
            raw = await driver(self._session)
            columns = ([row[c] for row in rows] for c, _ in _SCAN_COLUMNS)
            inserted = {r["id"] for r in await raw.fetch(_INSERT_SCANS, *columns)}
        changed = await self._reconcile(states.values())
        entered = {
            row["ticket_id"]
            for row in rows
            if row["ticket_id"] is not None
            and row["result"] == VerdictResult.ADMITTED
            and row["direction"] == Direction.ENTRY
        }
        await self._mark_checked_in([s for s in states.values() if s.id in entered], gate)

        stored = {
            row.id: row
            for row in await self._session.execute(
                select(*_OUTCOME_COLUMNS).where(TicketScan.id.in_(ids))
            )
        }
        # A fresh id the insert skipped was taken meanwhile: by this device's own upload racing
        # this one (a duplicate), by another device, or by another tenant (whose row we
        # cannot see). The exception rolls the batch back.
        for scan_id in fresh.keys() - inserted:
            holder = stored.get(scan_id)
            if holder is None or holder.device_id != gate.device_id:
                raise _scan_id_taken(scan_id)
        repeated = known.keys() | (fresh.keys() - inserted)
        batch = set(ids)
        return wire.ScanBatchOutcome(
            outcomes=[
                not_stored.get(s.scan_id)
                or _outcome(stored[s.scan_id], duplicate=s.scan_id in repeated)
                for s in scans
            ],
            reclassified=[
                _outcome(stored_row) for stored_row in changed if stored_row.id not in batch
            ],
            server_time=self._now,
        )

    async def _junk_allowance(self, device_id: uuid.UUID, count: int) -> int:
        """How many of ``count`` scans whose code did not read the device may still have stored
        this minute; all ``count`` are counted (``junk_scans``: stored and dropped). The row is
        locked by the first statement, so concurrent uploads of one device share one allowance."""
        minute = self._now.replace(second=0, microsecond=0)
        raw = await driver(self._session)
        already = await raw.fetchval(_LOCK_JUNK_MINUTE, self._tenant_id, device_id, minute)
        kept = max(0, min(count, self._junk_per_minute - int(already)))
        await raw.execute(_COUNT_JUNK, self._tenant_id, device_id, minute, kept, count - kept)
        return kept

    async def _ticket_facts(self, ticket_ids: set[uuid.UUID]) -> dict[uuid.UUID, Any]:
        """What the rules need to know of these tickets and their events, in one query."""
        if not ticket_ids:
            return {}
        rows = await self._session.execute(
            select(
                Ticket.id,
                Ticket.event_id,
                Ticket.status,
                Ticket.secret_version,
                Event.admission_opens_at,
                Event.ends_at,
            )
            .join(Event, Event.id == Ticket.event_id)
            .where(Ticket.id.in_(list(ticket_ids)))
        )
        return {row.id: row for row in rows}

    def _offline_row(
        self,
        gate: Gate,
        scan: wire.ScanUpload,
        decoded: TicketCode | VerdictReason,
        tickets: dict[uuid.UUID, Any],
        *,
        enrolled_at: datetime,
    ) -> dict[str, Any]:
        """The row of one uploaded scan: what the device did, at the gate it was enrolled for,
        placed in time within what is possible (``claims.placed_at``)."""
        assert gate.event_id is not None
        at = placed_at(
            scan.scanned_at, scan.clock_offset_ms, enrolled_at=enrolled_at, received_at=self._now
        )
        ticket_id: uuid.UUID | None = None
        server_reason: VerdictReason | None = None
        version: int | None = None
        if isinstance(decoded, VerdictReason):
            server_reason = decoded
        else:
            version = decoded.secret_version
            ticket = tickets.get(decoded.ticket_id)
            server_reason = standing(decoded, gate_event_id=gate.event_id, ticket=ticket, now=at)
            if ticket is not None and server_reason is not VerdictReason.WRONG_EVENT:
                ticket_id = ticket.id
        server_reason = refusal(server_reason, scan.direction)
        admitted = scan.device_result is VerdictResult.ADMITTED
        return {
            "id": scan.scan_id,
            "tenant_id": self._tenant_id,
            "ticket_id": ticket_id,
            "event_id": gate.event_id,
            "device_id": gate.device_id,
            "scanned_by": gate.actor,
            "gate": gate.name,  # never the uploaded name: the device's enrolled gate
            "direction": scan.direction.value,
            # What happened at the gate is what the device decided; the server's opinion of
            # an admission it would have refused is kept beside it.
            "result": scan.device_result.value,
            "reason": None
            if admitted
            else (scan.device_reason or server_reason or VerdictReason.INVALID_CODE).value,
            "scanned_at": at,
            "device_scanned_at": scan.scanned_at,
            "clock_offset_ms": scan.clock_offset_ms,
            # Whatever the upload says: a scan the server did not decide was decided offline.
            "offline": True,
            "device_result": scan.device_result.value,
            "device_reason": scan.device_reason.value if scan.device_reason else None,
            "server_reason": server_reason.value if admitted and server_reason else None,
            "code_secret_version": version,
            "received_at": self._now,
        }

    # --- shared steps -----------------------------------------------------------------------

    async def _decode(
        self, text: str, gate_event_id: uuid.UUID | None
    ) -> TicketCode | VerdictReason:
        return await decode_for_gate(
            self._session,
            self._keys,
            text,
            tenant_id=self._tenant_id,
            gate_event_id=gate_event_id,
            reloads=self._reloads,
        )

    async def _lock_ticket(self, ticket_id: uuid.UUID) -> LockedTicket | None:
        states = await self._lock_tickets([ticket_id])
        return states.get(ticket_id)

    async def _lock_tickets(self, ticket_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, LockedTicket]:
        """Lock the tickets (in id order, so two uploads never deadlock) with what decisions
        need from their event and type."""
        if not ticket_ids:
            return {}
        rows = await (await driver(self._session)).fetch(_LOCK_TICKETS, list(ticket_ids))
        return {row["id"]: LockedTicket(**dict(row)) for row in rows}

    async def _history(self, ticket_ids: Iterable[uuid.UUID]) -> list[Any]:
        """The tickets' admitted, not annulled scans (entries and exits)."""
        rows = await (await driver(self._session)).fetch(_ADMITTED_SCANS, list(ticket_ids))
        return [SimpleNamespace(**dict(row)) for row in rows]

    async def _admitted_scans(self, ticket_ids: Iterable[uuid.UUID]) -> list[AdmittedScan]:
        return [_admitted_scan(r) for r in await self._history(ticket_ids)]

    async def _reconcile(self, states: Iterable[LockedTicket]) -> list[Any]:
        """Replay each ticket's admitted scans and store who is a conflict of whom. Returns the
        scans whose conflict status changed."""
        by_ticket = {state.id: state for state in states}
        if not by_ticket:
            return []
        per_ticket: dict[uuid.UUID, list[Any]] = {}
        for row in await self._history(by_ticket):
            per_ticket.setdefault(row.ticket_id, []).append(row)
        updates: list[dict[str, Any]] = []
        new_conflicts: list[tuple[Any, uuid.UUID]] = []
        for ticket_id, scans in per_ticket.items():
            timeline = replay(
                (_admitted_scan(s) for s in scans),
                allow_reentry=by_ticket[ticket_id].allow_reentry,
            )
            for scan in scans:
                wanted = timeline.conflicts.get(scan.id)
                if wanted != scan.conflict_of:
                    updates.append({"scan": scan.id, "conflict_of": wanted})
                    if wanted is not None:
                        new_conflicts.append((scan, wanted))
        if not updates:
            return []
        for change in updates:  # few: only scans whose place in a timeline moved
            await self._session.execute(
                update(TicketScan)
                .where(TicketScan.id == change["scan"])
                .values(conflict_of=change["conflict_of"])
            )
        for scan, winner in new_conflicts:
            add_ticket_event(
                self._session,
                routing_key="scan.conflict",
                tenant_id=self._tenant_id,
                ticket_id=scan.ticket_id,
                time=self._now,
                data={
                    "scan_id": str(scan.id),
                    "ticket_id": str(scan.ticket_id),
                    "conflict_of": str(winner),
                    "scanned_at": scan.scanned_at.isoformat(),
                },
            )
        changed_ids = [change["scan"] for change in updates]
        return list(
            (
                await self._session.execute(
                    select(*_OUTCOME_COLUMNS).where(TicketScan.id.in_(changed_ids))
                )
            ).all()
        )

    async def _mark_checked_in(self, states: Iterable[LockedTicket], gate: Gate) -> None:
        """Tickets (locked, each with an admitted entry in this batch) that were ``active``
        become ``checked_in``, with history and event: three statements for the batch."""
        first = [s for s in states if s.status == TicketStatus.ACTIVE]
        if not first:
            return
        raw = await driver(self._session)
        await raw.execute(_CHECKED_IN, [t.id for t in first], self._now)
        ticket_written(self._session, *(t.id for t in first))
        written = [
            change_rows(
                replace(ticket, status=TicketStatus.CHECKED_IN.value),
                "checked_in",
                "ticket.checked_in",
                actor=gate.actor,
                now=self._now,
                from_status=TicketStatus.ACTIVE.value,
                details={"gate": gate.name, "offline": True},
            )
            for ticket in first
        ]
        await raw.executemany(
            _HISTORY,
            [
                (
                    h["id"],
                    h["tenant_id"],
                    h["ticket_id"],
                    h["kind"],
                    h["from_status"],
                    h["to_status"],
                    h["secret_version"],
                    h["actor"],
                    _json(h["details"]),
                    h["occurred_at"],
                )
                for h, _ in written
            ],
        )
        await raw.executemany(
            _EVENT,
            [
                (
                    e["id"],
                    e["tenant_id"],
                    e["routing_key"],
                    e["ticket_id"],
                    _json(e["payload"]),
                    e["created_at"],
                )
                for _, e in written
            ],
        )

    async def _admitted(
        self, state: LockedTicket, scan_id: uuid.UUID, gate: Gate, direction: Direction
    ) -> None:
        """Status, history and event for an online admission (entry or exit), in one
        statement."""
        details = {"scan_id": str(scan_id), "gate": gate.name, "direction": direction.value}
        raw = await driver(self._session)
        if direction is Direction.ENTRY and state.status == TicketStatus.ACTIVE:
            after = replace(state, status=TicketStatus.CHECKED_IN.value)
            history, event = change_rows(
                after,
                "checked_in",
                "ticket.checked_in",
                actor=gate.actor,
                now=self._now,
                from_status=TicketStatus.ACTIVE.value,
                details=details,
            )
            ticket_written(self._session, state.id)
            await raw.execute(
                _FIRST_ADMISSION,
                state.id,
                self._now,
                history["id"],
                gate.actor,
                _json(details),
                event["id"],
                _json(event["payload"]),
            )
            return
        # A re-entry or an exit: no change of status, but other services still hear of it.
        event = ticket_event_row(
            routing_key="ticket.checked_in"
            if direction is Direction.ENTRY
            else "ticket.checked_out",
            tenant_id=self._tenant_id,
            ticket_id=state.id,
            time=self._now,
            data={
                "ticket_id": str(state.id),
                "event_id": str(state.event_id),
                "actor": gate.actor,
                **details,
            },
        )
        await raw.execute(
            _EVENT,
            event["id"],
            self._tenant_id,
            event["routing_key"],
            state.id,
            _json(event["payload"]),
            self._now,
        )

    async def _insert_scan(
        self,
        scan_id: uuid.UUID,
        gate: Gate,
        event_id: uuid.UUID,
        direction: Direction,
        *,
        ticket_id: uuid.UUID | None,
        reason: VerdictReason | None,
        code_secret_version: int | None = None,
    ) -> bool:
        inserted = await (await driver(self._session)).fetchval(
            _INSERT_SCAN,
            scan_id,
            self._tenant_id,
            ticket_id,
            event_id,
            gate.device_id,
            gate.actor,
            gate.name,
            direction.value,
            (VerdictResult.ADMITTED if reason is None else VerdictResult.REJECTED).value,
            reason.value if reason else None,
            self._now,
            code_secret_version,
        )
        return inserted is not None

    async def recorded(self, scan_id: uuid.UUID, gate: Gate) -> wire.Verdict:
        """The verdict the server recorded for one of this device's scans. A device that crashed
        while asking online uses it to learn whether its question arrived. Raises ``NotFound``
        when the server has no scan with that id, ``Conflict`` (``scan_id_taken``) when the id
        is another device's (of any tenant)."""
        verdict = await self._own_verdict(scan_id, gate)
        if verdict is not None:
            return verdict
        if await self._taken_by_another_tenant(scan_id, gate):
            raise _scan_id_taken(scan_id)
        raise NotFound("scan of this device")

    async def _own_verdict(self, scan_id: uuid.UUID, gate: Gate) -> wire.Verdict | None:
        """The recorded verdict of the caller's scan ``scan_id``; None when the tenant has no
        such scan. Raises ``Conflict`` when it is another device's or person's: a scan id
        never opens another's verdict (nor its holder's name)."""
        scan = await self._session.get(TicketScan, scan_id)
        if scan is None:
            return None
        if scan.device_id != gate.device_id or scan.scanned_by != gate.actor:
            raise _scan_id_taken(scan_id)
        return await self._recorded_verdict(scan_id)

    async def _raced(self, scan_id: uuid.UUID, gate: Gate) -> wire.Verdict:
        """The verdict for ``scan_id`` when inserting its scan found the id taken: the same
        caller's request raced in (its verdict stands), or someone else's scan — of this tenant
        or of another, whose row we cannot see — holds it (``Conflict``)."""
        stored = await self._own_verdict(scan_id, gate)
        if stored is None:
            raise _scan_id_taken(scan_id)
        return stored

    async def _taken_by_another_tenant(self, scan_id: uuid.UUID, gate: Gate) -> bool:
        """Whether another tenant's scan has ``scan_id``. Row-level security hides its row but
        not its id, which the primary key still holds: try to take the id, in a savepoint that
        is always rolled back. Only for a read that found nothing (rare: a crash's recovery)."""
        assert gate.event_id is not None
        async with self._session.begin_nested() as probe:
            free = await (await driver(self._session)).fetchval(
                _PROBE_SCAN_ID,
                scan_id,
                self._tenant_id,
                gate.event_id,
                gate.device_id,
                gate.actor,
                gate.name,
                self._now,
            )
            await probe.rollback()
        return free is None

    async def _recorded_verdict(self, scan_id: uuid.UUID) -> wire.Verdict | None:
        scan = await self._session.get(TicketScan, scan_id)
        if scan is None:
            return None
        reason = VerdictReason(scan.reason) if scan.reason else None
        prior = None
        state = None
        if scan.ticket_id is not None:
            state = await self._lock_ticket(scan.ticket_id)
            if reason is VerdictReason.ALREADY_CHECKED_IN and state is not None:
                earlier = [
                    s
                    for s in await self._history([scan.ticket_id])
                    if s.scanned_at <= scan.scanned_at
                ]
                prior = _prior_in(earlier, state.allow_reentry)
        return self._verdict(
            scan.id,
            Gate(scan.gate, scan.scanned_by, scan.event_id, scan.device_id),
            Direction(scan.direction),
            reason=reason,
            state=state,
            prior=prior,
            scanned_at=scan.scanned_at,
        )

    def _verdict(
        self,
        scan_id: uuid.UUID,
        gate: Gate,
        direction: Direction,
        *,
        reason: VerdictReason | None,
        state: LockedTicket | None = None,
        prior: wire.PriorScan | None = None,
        chain_verified: bool | None = None,
        scanned_at: datetime | None = None,
    ) -> wire.Verdict:
        known = state is not None and reason not in (
            VerdictReason.WRONG_EVENT,
            VerdictReason.NOT_FOUND,
        )
        return wire.Verdict(
            result=VerdictResult.ADMITTED if reason is None else VerdictResult.REJECTED,
            reason=reason,
            scan_id=scan_id,
            direction=direction,
            gate=gate.name,
            scanned_at=scanned_at or self._now,
            ticket_id=state.id if known and state else None,
            event_id=state.event_id if known and state else None,
            ticket_type=state.ticket_type if known and state else None,
            holder_name=state.holder_name if known and state else None,
            prior=prior,
            chain_verified=chain_verified,
        )


def _scan_id_taken(scan_id: uuid.UUID) -> Conflict:
    return Conflict(
        "scan_id_taken",
        f"Scan id {scan_id} belongs to another device's scan.",
        scan_id=str(scan_id),
    )


def _admitted_scan(row: Any) -> AdmittedScan:
    """A history row (``_ADMITTED_SCANS``) as the timeline takes it."""
    return AdmittedScan(row.id, row.scanned_at, Direction(row.direction), online=row.online)


#: What an upload's answer says of a stored scan (``_outcome``).
_OUTCOME_COLUMNS = (
    TicketScan.id,
    TicketScan.device_id,
    TicketScan.result,
    TicketScan.reason,
    TicketScan.conflict_of,
    TicketScan.server_reason,
    TIME_ADJUSTED,
)


def _unstored_outcome(row: dict[str, Any]) -> wire.ScanOutcome:
    """The answer for an uploaded scan counted but not stored (its code did not read and the
    device's allowance of such scans this minute was used up)."""
    return wire.ScanOutcome(
        scan_id=row["id"],
        result=VerdictResult(row["result"]),
        reason=VerdictReason(row["reason"]) if row["reason"] else None,
        server_reason=VerdictReason(row["server_reason"]) if row["server_reason"] else None,
        stored=False,
    )


def _outcome(row: Any, *, duplicate: bool = False) -> wire.ScanOutcome:
    return wire.ScanOutcome(
        scan_id=row.id,
        result=VerdictResult(row.result),
        reason=VerdictReason(row.reason) if row.reason else None,
        conflict_of=row.conflict_of,
        duplicate_upload=duplicate,
        server_reason=VerdictReason(row.server_reason) if row.server_reason else None,
        time_adjusted=TimeAdjustment(row.time_adjusted) if row.time_adjusted else None,
    )


def _prior_in(history: Sequence[Any], allow_reentry: bool) -> wire.PriorScan | None:
    """The admission a new entry would collide with, given the ticket's admitted scans (rows
    with id, scanned_at, direction, gate, device_id); None when it may enter."""
    return prior_scan(
        [
            AdmittedScan(
                s.id,
                s.scanned_at,
                Direction(s.direction),
                online=s.online,
                gate=s.gate,
                device_id=s.device_id,
            )
            for s in history
        ],
        allow_reentry=allow_reentry,
    )


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


#: Scans whose code did not read as a genuine code of any event of the tenant (a genuine code
#: of another event, ``wrong_event``, is not junk).
JUNK: Final = frozenset({VerdictReason.INVALID_CODE, VerdictReason.UNKNOWN_KEY})

# The device's row for this minute, made if new and locked either way; its stored count.
_LOCK_JUNK_MINUTE = """
INSERT INTO junk_scans AS j (tenant_id, device_id, minute, stored, dropped)
VALUES ($1, $2, $3, 0, 0)
ON CONFLICT (tenant_id, device_id, minute) DO UPDATE SET stored = j.stored
RETURNING stored
"""
_COUNT_JUNK = """
UPDATE junk_scans SET stored = stored + $4, dropped = dropped + $5
WHERE tenant_id = $1 AND device_id = $2 AND minute = $3
"""

_LOCK_TICKETS = """
SELECT t.id, t.tenant_id, t.event_id, t.ticket_type_id, t.purchase_id, t.user_id, t.status,
       t.secret_version, t.holder_name, t.holder_wallet, t.nft_mint, t.blockchain_sync_status,
       tt.name AS ticket_type,
       e.allow_reentry, e.admission_opens_at, e.ends_at
FROM tickets t
JOIN events e ON e.id = t.event_id
JOIN ticket_types tt ON tt.id = t.ticket_type_id
WHERE t.id = ANY($1::uuid[])
ORDER BY t.id
FOR UPDATE OF t
"""

_FLAG_OUT_OF_SYNC = """
UPDATE tickets SET blockchain_sync_status = $3, updated_at = $2 WHERE id = $1
"""

# ``online``: recorded by POST /v1/validate, on the server's clock (an upload always carries
# the device's own reading). Never what the device says of itself.
_ADMITTED_SCANS = """
SELECT id, ticket_id, scanned_at, direction, gate, device_id, conflict_of,
       device_scanned_at IS NULL AS online
FROM ticket_scans
WHERE ticket_id = ANY($1::uuid[]) AND result = 'admitted' AND annulled_at IS NULL
"""

_INSERT_SCAN = """
INSERT INTO ticket_scans (id, tenant_id, ticket_id, event_id, device_id, scanned_by, gate,
                          direction, result, reason, scanned_at, received_at, code_secret_version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12)
ON CONFLICT DO NOTHING
RETURNING id
"""

# A first admission: status, history row and event in one round trip.
# Takes ``scan_id`` if no scan of any tenant has it (``_taken_by_another_tenant`` rolls it back).
_PROBE_SCAN_ID = """
INSERT INTO ticket_scans (id, tenant_id, event_id, device_id, scanned_by, gate, direction, result,
                          scanned_at, received_at)
VALUES ($1, $2, $3, $4, $5, $6, 'entry', 'rejected', $7, $7)
ON CONFLICT DO NOTHING
RETURNING id
"""

_FIRST_ADMISSION = """
WITH ticket AS (
    UPDATE tickets SET status = 'checked_in', updated_at = $2
    WHERE id = $1
    RETURNING id, tenant_id, secret_version
), history AS (
    INSERT INTO ticket_state_transitions (id, tenant_id, ticket_id, kind, from_status, to_status,
                                          secret_version, actor, details, occurred_at)
    SELECT $3, tenant_id, id, 'checked_in', 'active', 'checked_in', secret_version, $4,
           $5::text::jsonb, $2
    FROM ticket
)
INSERT INTO outbox (id, tenant_id, routing_key, ticket_id, payload, created_at)
SELECT $6, tenant_id, 'ticket.checked_in', id, $7::text::jsonb, $2 FROM ticket
"""

_EVENT = """
INSERT INTO outbox (id, tenant_id, routing_key, ticket_id, payload, created_at)
VALUES ($1, $2, $3, $4, $5::text::jsonb, $6)
"""

_SCAN_COLUMNS = (
    ("id", "uuid"),
    ("tenant_id", "uuid"),
    ("ticket_id", "uuid"),
    ("event_id", "uuid"),
    ("device_id", "uuid"),
    ("scanned_by", "text"),
    ("gate", "text"),
    ("direction", "text"),
    ("result", "text"),
    ("reason", "text"),
    ("scanned_at", "timestamptz"),
    ("device_scanned_at", "timestamptz"),
    ("clock_offset_ms", "integer"),
    ("offline", "boolean"),
    ("device_result", "text"),
    ("device_reason", "text"),
    ("server_reason", "text"),
    ("code_secret_version", "integer"),
    ("received_at", "timestamptz"),
)
# A whole batch of scans in one statement: one array per column.
# Built from the constant column list above; no input reaches the text.
_INSERT_SCANS = (
    f"INSERT INTO ticket_scans ({', '.join(c for c, _ in _SCAN_COLUMNS)}) "  # noqa: S608
    "SELECT * FROM unnest("
    + ", ".join(f"${i}::{t}[]" for i, (_, t) in enumerate(_SCAN_COLUMNS, start=1))
    + ") ON CONFLICT DO NOTHING RETURNING id"
)

_CHECKED_IN = """
UPDATE tickets SET status = 'checked_in', updated_at = $2 WHERE id = ANY($1::uuid[])
"""

_HISTORY = """
INSERT INTO ticket_state_transitions (id, tenant_id, ticket_id, kind, from_status, to_status,
                                      secret_version, actor, details, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10)
"""
