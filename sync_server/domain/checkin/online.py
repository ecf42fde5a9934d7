"""The online check-in (POST /v1/validate) and a device's question about a recorded verdict
(GET /v1/sync/scans/{id}): one verdict, recorded before it is returned."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from shared import wire
from shared.checkin_lists import ListDecision
from shared.domain import Direction, TicketStatus, VerdictReason, VerdictResult
from shared.ids import new_id
from shared.ticket_code import TicketCode
from sync_server.db.engine import ticket_written
from sync_server.domain.checkin.admission import (
    Admission,
    Gate,
    list_history,
    list_ids,
    prior_admission,
    scan_id_taken,
)
from sync_server.domain.checkin.ownership import NotChainChecked, OwnershipCheck, OwnershipResult
from sync_server.domain.checkin.queries import HistoryScan, LockedTicket, NewScan
from sync_server.domain.tickets.chain_sync import SETTLED, ChainSync, check_move
from sync_server.http.problems import NotFound

#: Reasons only a check-in list gives (others it gives name the list on the scan).
LIST_REASONS = frozenset({VerdictReason.NOT_ON_LIST, VerdictReason.RULE_FAILED})


@dataclass(frozen=True, slots=True)
class Asked:
    """The chain's answer, and what the ticket said when it was asked (``_asked_about``)."""

    about: tuple[object, ...]
    answer: OwnershipResult


def _asked_about(ticket: LockedTicket) -> tuple[object, ...]:
    """What an ownership answer is about: change any of these and the answer is stale."""
    return (
        ticket.holder_wallet,
        ticket.nft_mint,
        ticket.secret_version,
        ticket.blockchain_sync_status,
    )


class OnlineCheckIn:
    def __init__(self, admission: Admission, ownership: OwnershipCheck) -> None:
        self._a = admission
        self._ownership = ownership
        # Without a chain every answer is "not checked": nothing to ask, nothing to read first.
        self._asks_chain = not isinstance(ownership, NotChainChecked)

    async def validate(self, gate: Gate, request: wire.ValidateRequest) -> wire.Verdict:
        """The authoritative verdict for one scan, recorded before it is returned. A retried
        request with the same ``scan_id`` gets the recorded verdict again; a ``scan_id`` that
        is another caller's (of any tenant) raises ``Conflict`` (``scan_id_taken``)."""
        a = self._a
        scan_id = request.scan_id or new_id()
        if request.scan_id is not None:
            stored = await self._own_verdict(scan_id, gate)
            if stored is not None:
                return stored
        decoded = await a.decode(request.code, gate.event_id)
        event_id = gate.event_id
        if isinstance(decoded, TicketCode):
            event_id = event_id or decoded.event_id
        if event_id is None:  # a manager's scan of a code no event of theirs can read
            refused = decoded if isinstance(decoded, VerdictReason) else VerdictReason.UNKNOWN_KEY
            return a.verdict(scan_id, gate, request.direction, reason=refused)
        if isinstance(decoded, VerdictReason):
            rejected = self._scan(
                scan_id, gate, event_id, request.direction, ticket_id=None, reason=decoded
            )
            if not await a.record_online(rejected, None, gate, request.direction):
                return await self._raced(scan_id, gate)
            return a.verdict(scan_id, gate, request.direction, reason=decoded)

        asked: Asked | None = None
        if request.direction is Direction.ENTRY and self._asks_chain:
            asked = await self._ask_chain(decoded, event_id)
        ticket, history = await a.queries.checkin_ticket(decoded.ticket_id)
        reason = a.standing(
            decoded, request.direction, gate_event_id=event_id, ticket=ticket, at=a.now
        )
        prior: wire.PriorScan | None = None
        chain_verified: bool | None = None
        message: str | None = None
        decision: ListDecision | None = None
        if ticket is not None and reason is None:
            # The event's check-in lists (issue 16), after the history-free rules; None: none
            # applies at this gate, decide as without lists.
            decision = await a.lists(
                ticket, gate.name, request.direction, list_history(history or []), a.now
            )
            if decision is not None and decision.refusal is not None:
                reason, prior = decision.refusal.reason, decision.prior
                message = decision.refusal.sentence
        if ticket is not None and reason is None and request.direction is Direction.ENTRY:
            reason, prior, chain_verified = await self._may_enter(
                ticket, history, asked, lists_decided=decision is not None
            )

        ticket_id = ticket.id if ticket and reason is not VerdictReason.WRONG_EVENT else None
        scan = self._scan(
            scan_id,
            gate,
            event_id,
            request.direction,
            ticket_id=ticket_id,
            reason=reason,
            code_secret_version=decoded.secret_version,
            decision=decision,
        )
        if not await a.record_online(scan, ticket, gate, request.direction):
            return await self._raced(scan_id, gate)
        return a.verdict(
            scan_id,
            gate,
            request.direction,
            reason=reason,
            ticket=ticket,
            prior=prior,
            chain_verified=chain_verified,
            message=message,
        )

    async def _ask_chain(self, code: TicketCode, event_id: uuid.UUID) -> Asked | None:
        """The chain's word on the ticket's owner, asked before the ticket is locked: the call
        may take up to its timeout (0.5 s), and a row lock held meanwhile would queue every
        other gate presenting the ticket behind it. Asked only when the ticket, as read now
        without a lock, is one whose entry would ask (genuine, valid, settled on chain, not a
        ticket inside with no re-entry); ``_may_enter`` uses the answer only if the locked
        row still says what was asked about."""
        a = self._a
        facts = await a.queries.ticket_facts(code.ticket_id)
        if facts is None or facts.blockchain_sync_status not in SETTLED:
            return None
        if a.standing(code, Direction.ENTRY, gate_event_id=event_id, ticket=facts, at=a.now):
            return None
        if (
            facts.status == TicketStatus.CHECKED_IN
            and not facts.allow_reentry
            and await a.plan(facts) is None  # lists: another zone may still admit it
        ):
            return None  # refused as already checked in: nothing to ask
        answer = await self._ownership.check(
            ticket_id=facts.id, nft_mint=facts.nft_mint, holder_wallet=facts.holder_wallet
        )
        return Asked(_asked_about(facts), answer)

    async def _may_enter(
        self,
        ticket: LockedTicket,
        history: list[HistoryScan] | None,
        asked: Asked | None,
        *,
        lists_decided: bool = False,
    ) -> tuple[VerdictReason | None, wire.PriorScan | None, bool | None]:
        """For a genuine, valid ticket at an entry: is it inside already (or was, with no
        re-entry), and does the chain agree on its owner? Reason, prior scan, chain verdict.
        The chain was asked before the lock (``_ask_chain``); an answer about a ticket that
        changed since (holder, mint, code version or chain state) is not used: the verdict
        is then "not chain-verified", as when the chain is slow or down. ``lists_decided``: a
        check-in list admitted the entry, double entry (per zone) included."""
        # An active ticket has no standing admission (the first one makes it checked_in,
        # undoing the last one makes it active again): no need to read its scans.
        if ticket.status != TicketStatus.ACTIVE and not lists_decided:
            prior = prior_admission(history or [], ticket.allow_reentry)
            if prior is not None:
                return VerdictReason.ALREADY_CHECKED_IN, prior, None
        if ticket.blockchain_sync_status not in SETTLED:
            # 'pending': a mint or transfer of ours is in flight, so the chain may still name
            # the previous holder (or nobody) — asking would refuse a rightful guest.
            # 'not_minted' / 'failed': there is nothing on the chain to ask about.
            return None, None, None
        if asked is None or asked.about != _asked_about(ticket):
            return None, None, None
        ownership = asked.answer
        if ownership.mismatch:
            await self._flag_out_of_sync(ticket)
            return VerdictReason.OWNERSHIP_MISMATCH, None, ownership.verified
        return None, None, ownership.verified

    async def _flag_out_of_sync(self, ticket: LockedTicket) -> None:
        """The chain named another holder: mark the ticket ``out_of_sync`` in the verdict's
        transaction, so managers see it at once and the chain listener reconciles it. The
        ticket stays as it is otherwise: who really holds it is the listener's to settle."""
        if not check_move(ticket.blockchain_sync_status, ChainSync.OUT_OF_SYNC):
            return
        await self._a.queries.flag_out_of_sync(ticket.id, self._a.now, ChainSync.OUT_OF_SYNC.value)
        ticket_written(self._a.session, ticket.id)

    def _scan(
        self,
        scan_id: uuid.UUID,
        gate: Gate,
        event_id: uuid.UUID,
        direction: Direction,
        *,
        ticket_id: uuid.UUID | None,
        reason: VerdictReason | None,
        code_secret_version: int | None = None,
        decision: ListDecision | None = None,
    ) -> NewScan:
        now = self._a.now
        checkin_list_id, zone = list_ids(decision)
        return NewScan(
            id=scan_id,
            tenant_id=self._a.tenant_id,
            ticket_id=ticket_id,
            event_id=event_id,
            device_id=gate.device_id,
            scanned_by=gate.actor,
            gate=gate.name,
            direction=direction.value,
            result=(VerdictResult.ADMITTED if reason is None else VerdictResult.REJECTED).value,
            reason=reason.value if reason else None,
            scanned_at=now,
            device_scanned_at=None,
            clock_offset_ms=None,
            offline=False,
            device_result=None,
            device_reason=None,
            server_reason=None,
            code_secret_version=code_secret_version,
            received_at=now,
            checkin_list_id=checkin_list_id,
            zone=zone if reason is None else None,
        )

    async def recorded(self, scan_id: uuid.UUID, gate: Gate) -> wire.Verdict:
        """The verdict the server recorded for one of this device's scans. A device that crashed
        while asking online uses it to learn whether its question arrived. Raises ``NotFound``
        when the server has no scan with that id, ``Conflict`` (``scan_id_taken``) when the id
        is another device's (of any tenant)."""
        verdict = await self._own_verdict(scan_id, gate)
        if verdict is not None:
            return verdict
        assert gate.event_id is not None
        probe = self._scan(
            scan_id, gate, gate.event_id, Direction.ENTRY, ticket_id=None, reason=None
        )
        if not await self._a.queries.scan_id_is_free(probe):
            raise scan_id_taken(scan_id)
        raise NotFound("scan of this device")

    async def _own_verdict(self, scan_id: uuid.UUID, gate: Gate) -> wire.Verdict | None:
        """The recorded verdict of the caller's scan ``scan_id``; None when the tenant has no
        such scan. Raises ``Conflict`` when it is another device's or person's: a scan id
        never opens another's verdict (nor its holder's name)."""
        a = self._a
        scan = await a.queries.stored_scan(scan_id)
        if scan is None:
            return None
        own = (
            await a.same_gate(scan.device_id, gate.device_id)
            if gate.device_id is not None
            else scan.device_id is None and scan.scanned_by == gate.actor
        )
        if not own:
            raise scan_id_taken(scan_id)
        reason = VerdictReason(scan.reason) if scan.reason else None
        prior = None
        ticket = None
        message: str | None = None
        if scan.ticket_id is not None:
            ticket = (await a.queries.lock_tickets([scan.ticket_id])).get(scan.ticket_id)
            by_list = scan.checkin_list_id is not None or reason in LIST_REASONS
            if reason is not None and ticket is not None and by_list:
                # A list refused it: its refusal again, from the scans before it.
                history = [
                    s
                    for s in await a.queries.admitted_scans([ticket.id])
                    if s.scanned_at <= scan.scanned_at
                ]
                decision = await a.lists(
                    ticket,
                    scan.gate,
                    Direction(scan.direction),
                    list_history(history),
                    scan.scanned_at,
                )
                if decision is not None and decision.refusal is not None:
                    prior, message = decision.prior, decision.refusal.sentence
            elif reason is VerdictReason.ALREADY_CHECKED_IN and ticket is not None:
                prior = await a.prior(ticket, before=scan.scanned_at)
        return a.verdict(
            scan.id,
            Gate(scan.gate, scan.scanned_by, scan.event_id, scan.device_id),
            Direction(scan.direction),
            reason=reason,
            ticket=ticket,
            prior=prior,
            scanned_at=scan.scanned_at,
            message=message,
        )

    async def _raced(self, scan_id: uuid.UUID, gate: Gate) -> wire.Verdict:
        """The verdict for ``scan_id`` when inserting its scan found the id taken: the same
        caller's request raced in (its verdict stands), or someone else's scan — of this tenant
        or of another, whose row we cannot see — holds it (``Conflict``)."""
        stored = await self._own_verdict(scan_id, gate)
        if stored is None:
            raise scan_id_taken(scan_id)
        return stored
