"""The gate: one scanned text in, one verdict out, recorded before it is shown.

``Gate.scan`` is the whole decision:

1. the same text again within a few seconds is the *same* scan (a phone held in front of the
   camera, a handheld scanner's double read): the earlier verdict is returned, marked as a
   repeat, and nothing is recorded twice;
2. online, when the server is reachable and online validation is on: the server decides
   (``POST /v1/validate``, short timeout); any failure falls back to step 3 with the same scan
   id, so a verdict the server did record is recognised when the scan is uploaded. A ticket
   this device admitted (or undid) offline and has not uploaded yet is decided offline: the
   server has not heard of it;
3. offline: read and verify the code with the device's keys, look the ticket up in the cache,
   apply the shared rules (``shared.rules``: event, status, secret version, time window), then
   the event's check-in lists (``shared.checkin_lists.decide``, the server's own decision: which
   list, which day, which time window, the list's rule, double entry in its zone) over the
   ticket's known admissions here and at other gates. An event without lists at this gate is
   decided as before lists: the known admissions alone (``shared.timeline``: inside already?
   re-entry allowed?);
4. the scan and its upload-queue entry are written in one durable transaction;
5. only then is the verdict returned.

A genuine code for a ticket the cache does not know yet (sold after the last sync) is admitted
on its signature alone and marked so, unless the gate is strict. Where lists apply, such a
ticket has no known type (``checkin.UNKNOWN_KIND``): only a list that admits every ticket type
can let it in; at a gate whose lists all name their ticket types it is refused ``not_on_list``
with a sentence saying why (docs/checkin-lists.md, "The scanner's side"). An exit refuses only
what ``shared.rules.refusal`` says bars a leave (a code that names no known ticket of this
event), like the server; lists never refuse an exit.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, Protocol

import msgspec
from sqlalchemy import Connection

from scanner_app.core.checkin import UNKNOWN_KIND, AccessPlan, access_plan
from scanner_app.core.store import LocalStore, StoreError
from scanner_app.core.store.cache import CachedTicket, admissions_of, find_ticket
from scanner_app.core.store.peers import append_own_record, load_peer_credentials
from scanner_app.core.store.scans import (
    MAX_CODE_CHARS,
    PendingOnline,
    ScanRecord,
    annul,
    begin_online,
    drop_from_queue,
    end_online,
    has_unsent_admission,
    local_entry,
    queued_annulments,
    record_online_verdict,
    record_scan,
)
from scanner_app.core.store.setup import load_setup, stored_setup_version
from scanner_app.core.store.state import (
    Enrollment,
    GateSettings,
    load_enrollment,
    load_event,
    load_keys,
    load_settings,
    load_sync_state,
)
from shared import wire
from shared.checkin_lists import GENERAL_AREA, decide, where_inside
from shared.clock import Clock, SystemClock
from shared.domain import Direction, TicketStatus, VerdictReason, VerdictResult
from shared.ids import new_id
from shared.keys import ScannerKeyRing
from shared.peers import Credentials, RecordKind
from shared.rules import EventWindow, TicketFacts, code_standing, refusal
from shared.ticket_code import CodeRejection, RejectionKind, TicketCode, read_code
from shared.timeline import AdmittedScan, prior_scan, replay

Mode = Literal["offline", "online"]


class GateVerdict(msgspec.Struct, kw_only=True, frozen=True):
    """What the gate shows for one scan."""

    verdict: wire.Verdict
    #: Who decided: this device from its own data, or the server.
    mode: Mode
    #: Admitted on the code's signature alone: the ticket was not in the cache yet.
    on_signature: bool = False
    #: The same scan as a moment ago (debounced): shown again, not recorded again.
    repeat: bool = False
    #: An entry after an exit, where the event allows re-entry.
    reentry: bool = False
    #: What gate staff read on the panel.
    sentence: str = ""
    #: Decided by the event's check-in lists (False: no list is scanned at this gate).
    lists_apply: bool = False
    #: The check-in list the scan counted on, or that refused it (id and name).
    checkin_list_id: str | None = None
    list_name: str | None = None
    #: For an admitted entry, the zone it enters (``GENERAL_AREA``, "", for the event's general
    #: area); the zone the person leaves by this scan (another zone's entry, or an exit).
    enters_zone: str | None = None
    leaves_zone: str | None = None

    @property
    def admitted(self) -> bool:
        return self.verdict.result is VerdictResult.ADMITTED


class OnlineCheck(Protocol):
    """Asks the server for a verdict. Returns None when the server cannot answer now (no
    network, timeout, overload); the gate then decides offline."""

    def __call__(self, request: wire.ValidateRequest) -> wire.Verdict | None: ...


class NotEnrolled(StoreError):
    """The store has no device identity or event yet."""


@dataclass(frozen=True, slots=True)
class _Context:
    enrollment: Enrollment
    gate_event: wire.GateEvent
    settings: GateSettings
    keys: ScannerKeyRing
    #: The event's check-in lists (None: no setup, decide as before lists).
    access: AccessPlan | None = None
    #: The stored setup's version these were loaded from.
    setup_version: int | None = None
    #: The device's peer credentials (None: no certificate, or peer sync is off): each local
    #: admission, exit and undo is then a record for the other gates (docs/peer-sync.md).
    peer: Credentials | None = None


class Gate:
    """Decides scans for one enrolled device. Thread-safe: the camera and a handheld scanner
    may call ``scan`` at once (decisions about one ticket are serialised by the store)."""

    def __init__(
        self,
        store: LocalStore,
        *,
        clock: Clock | None = None,
        online: OnlineCheck | None = None,
        is_online: Callable[[], bool] = lambda: True,
    ) -> None:
        self._store = store
        self._clock = clock or SystemClock()
        self._online = online
        self._is_online = is_online
        self._lock = threading.Lock()
        self._recent: dict[tuple[str, Direction], tuple[float, GateVerdict]] = {}
        self._announce: Callable[[bytes], None] | None = None
        self._context = self._load()

    def set_announcer(self, announce: Callable[[bytes], None] | None) -> None:
        """Where the envelope of each record this gate makes goes once its scan is committed:
        the peer node's ``announce`` (thread-safe, returns at once)."""
        self._announce = announce

    def _announced(self, envelope: bytes | None) -> None:
        announce = self._announce
        if envelope is not None and announce is not None:
            announce(envelope)

    def _own_record(
        self,
        conn: Connection,
        context: _Context,
        kind: RecordKind,
        *,
        scan_id: uuid.UUID,
        ticket_id: uuid.UUID | None,
        at: datetime,
        checkin_list_id: str | None,
        zone: str | None,
    ) -> bytes | None:
        """In the scan's own write transaction: the record the other gates are told of (its
        envelope), so a scan is never recorded without it, nor told and then lost."""
        if context.peer is None or ticket_id is None:
            return None
        return append_own_record(
            conn,
            context.peer,
            kind=kind,
            scan_id=scan_id,
            ticket_id=ticket_id,
            at=at,
            gate=context.enrollment.gate,
            checkin_list_id=checkin_list_id,
            zone=zone,
        )

    def _load(self) -> _Context:
        with self._store.read() as conn:
            enrollment = load_enrollment(conn)
            if enrollment is None:
                raise NotEnrolled(
                    "This scanner is not set up yet. Enroll it with a code from a manager."
                )
            gate_event = load_event(conn, enrollment.event_id)
            if gate_event is None:
                raise NotEnrolled(
                    "This scanner does not know its event yet. Sync it with the server."
                )
            settings = load_settings(conn)
            return _Context(
                enrollment,
                gate_event,
                settings,
                load_keys(conn),
                access=access_plan(gate_event, load_setup(conn)),
                setup_version=stored_setup_version(conn),
                peer=load_peer_credentials(conn, self._store.sealer)
                if settings.peer_sync
                else None,
            )

    def reload(self) -> None:
        """Pick up new settings, keys or event details (after a sync or a settings change)."""
        context = self._load()
        with self._lock:
            self._context = context

    @property
    def settings(self) -> GateSettings:
        return self._context.settings

    @property
    def enrollment(self) -> Enrollment:
        return self._context.enrollment

    @property
    def gate_event(self) -> wire.GateEvent:
        return self._context.gate_event

    @property
    def access(self) -> AccessPlan | None:
        """The event's check-in lists as this gate last loaded them."""
        return self._context.access

    def scan(self, text: str, *, direction: Direction | None = None) -> GateVerdict:
        """Decide, record and return the verdict for one scanned ``text``.

        Never raises for any text. Raises ``StoreError`` (or SQLAlchemy's errors) only when the
        scan cannot be recorded — the one case where no verdict may be shown.
        """
        context = self._context
        direction = direction or context.settings.direction
        now_mono = self._clock.monotonic()
        repeat = self._repeat_of(text, direction, now_mono, context.settings.debounce_seconds)
        if repeat is not None:
            return repeat
        scan_id = new_id()
        device_now = self._clock.now()
        verdict = None
        if (
            self._online is not None
            and context.settings.online_validation
            and self._is_online()
            and text.strip()
        ):
            verdict = self._scan_online(context, text, direction, scan_id, device_now)
        if verdict is None:
            verdict = self._scan_offline(context, text, direction, scan_id, device_now)
        with self._lock:
            self._recent[(_same_scan_key(text), direction)] = (now_mono, verdict)
        return verdict

    def annul(self, scan_id: uuid.UUID) -> bool:
        """Undo an entry this device admitted (staff let the wrong person in, or the guest
        turned back): it stops counting for later verdicts, and the server is told at the next
        sync. Returns False when ``scan_id`` is not an admitted entry of this device that still
        counts. Raises ``StoreError`` when the annulment cannot be recorded.

        The same code scanned right after the undo is a new scan, not a debounced repeat of
        the admission that was undone.
        """
        context = self._context
        envelope = None
        with self._store.write() as conn:
            if not annul(conn, scan_id, self._clock.now()):
                return False
            undone = local_entry(conn, scan_id)
            if undone is not None:
                envelope = self._own_record(
                    conn,
                    context,
                    RecordKind.UNDO,
                    scan_id=scan_id,
                    ticket_id=undone.ticket_id,
                    at=undone.at,
                    checkin_list_id=undone.checkin_list_id,
                    zone=undone.zone,
                )
            if not context.enrollment.server_url:
                # A device without a server (the demo) has nowhere to send the annulment, as it
                # has nowhere to send its scans: keep the queue empty.
                for queued in queued_annulments(conn, limit=1_000_000):
                    if queued.scan_id == scan_id:
                        drop_from_queue(conn, queued.seq)
        self._announced(envelope)
        with self._lock:
            self._recent = {
                key: seen
                for key, seen in self._recent.items()
                if seen[1].verdict.scan_id != scan_id
            }
        return True

    # --- debounce -------------------------------------------------------------------------

    def _repeat_of(
        self, text: str, direction: Direction, now: float, window: float
    ) -> GateVerdict | None:
        if window <= 0:
            # Debouncing is off: every read is a scan, even at the same clock tick (a coarse
            # monotonic clock, or camera and handheld reading one code at once).
            return None
        with self._lock:
            if len(self._recent) > 256:
                self._recent = {
                    key: seen for key, seen in self._recent.items() if now - seen[0] <= window
                }
            seen = self._recent.get((_same_scan_key(text), direction))
            if seen is None or now - seen[0] > window:
                return None
            return msgspec.structs.replace(seen[1], repeat=True)

    # --- online ----------------------------------------------------------------------------

    def _scan_online(
        self,
        context: _Context,
        text: str,
        direction: Direction,
        scan_id: uuid.UUID,
        device_now: datetime,
    ) -> GateVerdict | None:
        assert self._online is not None
        # The code's name secret goes in the log with the scan, so that the scan log opens the
        # name from the cache (sealed as the feed brought it), as for offline scans. Read before
        # asking: nothing more runs between the server's answer and its record than before.
        code = read_code(context.keys, text)
        name_secret = code.name_secret if isinstance(code, TicketCode) else None
        request = wire.ValidateRequest(
            code=text.strip()[:MAX_CODE_CHARS],
            direction=direction,
            scan_id=scan_id,
            scanned_at=device_now,
        )
        # Written down before asking: if the program dies before the answer is recorded, the
        # next sync asks the server whether this question arrived (see the sync engine).
        with self._store.write() as conn:
            if isinstance(code, TicketCode) and has_unsent_admission(
                conn, self._store.sealer.lookup(code.ticket_id)
            ):
                # This device admitted the ticket (or undid that) offline and has not uploaded
                # it yet: the server would answer from older facts and could admit it twice.
                return None
            begin_online(conn, PendingOnline(scan_id, text, direction, device_now))
        answer = self._online(request)
        if answer is None:
            return None  # the offline verdict's transaction clears the pending row
        with self._store.write() as conn:
            context = self._fresh_setup(conn, context)
            listed = self._lists_agree(conn, context, answer, direction, device_now)
            record_online_verdict(
                conn,
                self._store.sealer,
                context.enrollment,
                scan_id=scan_id,
                answer=answer,
                code=text,
                direction=direction,
                device_time=device_now,
                name_secret=name_secret if answer.ticket_id is not None else None,
                checkin_list_id=listed.list_id if listed else None,
                zone=listed.zone if listed else None,
            )
            # A gate online still tells its peers: one of them may be offline.
            envelope = (
                self._own_record(
                    conn,
                    context,
                    _record_kind(direction),
                    scan_id=scan_id,
                    ticket_id=answer.ticket_id,
                    at=answer.scanned_at or device_now,
                    checkin_list_id=listed.list_id if listed else None,
                    zone=listed.zone if listed else None,
                )
                if answer.result is VerdictResult.ADMITTED
                else None
            )
        self._announced(envelope)
        verdict = msgspec.structs.replace(answer, scan_id=scan_id, direction=direction)
        if listed is None:
            # The server's own sentence for a list's refusal ("VIP tickets enter at the VIP
            # gate."), where it gave one.
            sentence = _sentence(verdict, False, specific=answer.message)
            return GateVerdict(verdict=verdict, mode="online", sentence=sentence)
        return GateVerdict(
            verdict=verdict,
            mode="online",
            reentry=listed.reentry,
            sentence=_sentence(
                verdict,
                False,
                reentry=listed.reentry,
                specific=answer.message or listed.sentence,
                enters_zone=listed.enters_zone,
                leaves_zone=listed.leaves_zone,
            ),
            lists_apply=True,
            checkin_list_id=listed.list_id,
            list_name=listed.list_name,
            enters_zone=listed.enters_zone,
            leaves_zone=listed.leaves_zone,
        )

    def _lists_agree(
        self,
        conn: Connection,
        context: _Context,
        answer: wire.Verdict,
        direction: Direction,
        device_now: datetime,
    ) -> _Decision | None:
        """For a verdict the server gave, what this device's lists say with the same facts
        (``shared.checkin_lists.decide`` on the server too): when both agree, the list and zone
        the scan counted on (recorded with it, so that the next offline verdict knows which
        zone the person is in before the feed's echo says so) and the list's own sentence.
        None when no list is scanned here, or the two disagree (the device's facts are older:
        the server's verdict stands, with its reason's sentence)."""
        access = context.access
        if (
            access is None
            or not access.lists_at(context.enrollment.gate)
            or answer.ticket_id is None
            or answer.event_id not in {None, context.gate_event.event_id}
        ):
            return None
        lookup = self._store.sealer.lookup(answer.ticket_id)
        cached = find_ticket(conn, lookup)
        base = _Decision(VerdictResult.ADMITTED, None, ticket_id=answer.ticket_id, lookup=lookup)
        now = answer.scanned_at or device_now
        local = self._decide_by_lists(
            conn, context, access, base, cached, direction=direction, now=now
        )
        if (local.result, local.reason) != (answer.result, answer.reason):
            return None
        return local

    # --- offline ---------------------------------------------------------------------------

    def _scan_offline(
        self,
        context: _Context,
        text: str,
        direction: Direction,
        scan_id: uuid.UUID,
        device_now: datetime,
    ) -> GateVerdict:
        code = read_code(context.keys, text)
        if isinstance(code, CodeRejection) and code.kind is RejectionKind.UNKNOWN_KEY:
            # Keys may have arrived (another process synced) since they were loaded.
            self.reload()
            context = self._context
            code = read_code(context.keys, text)
        with self._store.write() as conn:
            context = self._fresh_setup(conn, context)
            sync = load_sync_state(conn)
            offset_ms = sync.clock_offset_ms
            now = device_now + timedelta(milliseconds=offset_ms)
            if sync.revoked:
                # A manager switched this scanner off: it admits nobody until enrolled again.
                decision = _Decision(VerdictResult.REJECTED, VerdictReason.DEVICE_REVOKED)
            else:
                decision = self._decide(conn, context, code, direction, now)
            record = ScanRecord(
                scan_id=scan_id,
                device_id=context.enrollment.device_id,
                gate=context.enrollment.gate,
                direction=direction,
                at=now,
                device_time=device_now,
                clock_offset_ms=offset_ms,
                result=decision.result,
                reason=decision.reason,
                mode="offline",
                code=text,
                ticket_lookup=decision.lookup,
                ticket_id=decision.ticket_id,
                ticket_type=decision.ticket_type,
                name_secret=code.name_secret if isinstance(code, TicketCode) else None,
                on_signature=decision.on_signature,
                # Refusals keep the list that refused them too, for the scan log; only admitted
                # scans count (``admissions_of``).
                checkin_list_id=decision.list_id,
                zone=decision.zone,
            )
            # A device without a server (the demo) has nowhere to send its scans.
            record_scan(conn, record, upload=bool(context.enrollment.server_url), now=device_now)
            end_online(conn, scan_id)
            envelope = (
                self._own_record(
                    conn,
                    context,
                    _record_kind(direction),
                    scan_id=scan_id,
                    ticket_id=decision.ticket_id,
                    at=now,
                    checkin_list_id=decision.list_id,
                    zone=decision.zone,
                )
                if decision.admitted
                else None
            )
        self._announced(envelope)
        verdict = wire.Verdict(
            result=decision.result,
            reason=decision.reason,
            scan_id=scan_id,
            direction=direction,
            gate=context.enrollment.gate,
            scanned_at=now,
            ticket_id=decision.ticket_id,
            event_id=decision.event_id,
            ticket_type=decision.ticket_type,
            holder_name=decision.holder_name,
            prior=decision.prior,
        )
        return GateVerdict(
            verdict=verdict,
            mode="offline",
            on_signature=decision.on_signature,
            reentry=decision.reentry,
            sentence=_sentence(
                verdict,
                decision.on_signature,
                reentry=decision.reentry,
                old_format=decision.old_format,
                specific=decision.sentence,
                enters_zone=decision.enters_zone,
                leaves_zone=decision.leaves_zone,
            ),
            lists_apply=decision.lists_apply,
            checkin_list_id=decision.list_id,
            list_name=decision.list_name,
            enters_zone=decision.enters_zone,
            leaves_zone=decision.leaves_zone,
        )

    def _fresh_setup(self, conn: Connection, context: _Context) -> _Context:
        """``context`` with the setup stored now: a sync (here or in another program) may have
        brought a new one since it was loaded. One indexed read of one row per scan."""
        version = stored_setup_version(conn)
        if version == context.setup_version:
            return context
        fresh = replace(
            context,
            access=access_plan(context.gate_event, load_setup(conn)),
            setup_version=version,
        )
        with self._lock:
            if self._context.gate_event == context.gate_event:
                self._context = replace(self._context, access=fresh.access, setup_version=version)
        return fresh

    def _decide(
        self,
        conn: Connection,
        context: _Context,
        code: TicketCode | CodeRejection,
        direction: Direction,
        now: datetime,
    ) -> _Decision:
        if isinstance(code, CodeRejection):
            return _Decision(VerdictResult.REJECTED, code.reason)
        gate_event = context.gate_event
        decision = _Decision(
            VerdictResult.ADMITTED, None, ticket_id=code.ticket_id, event_id=code.event_id
        )
        if code.event_id != gate_event.event_id:
            return replace(
                decision, result=VerdictResult.REJECTED, reason=VerdictReason.WRONG_EVENT
            )
        lookup = self._store.sealer.lookup(code.ticket_id)
        cached = find_ticket(conn, lookup)
        decision = replace(
            decision,
            lookup=lookup,
            ticket_type=cached.ticket_type if cached else None,
            # Opened with the secret the code carries; a GH1 code carries none.
            holder_name=cached.holder_name(code) if cached else None,
            old_format=code.name_secret is None,
        )
        if cached is None and not context.settings.strict:
            facts = TicketFacts(
                code.ticket_id, code.event_id, TicketStatus.ACTIVE, code.secret_version
            )
            decision = replace(decision, on_signature=True)
        elif cached is None:
            facts = None
        else:
            facts = TicketFacts(code.ticket_id, code.event_id, cached.status, cached.secret_version)
        window = EventWindow(
            event_id=gate_event.event_id,
            opens_at=(cached.valid_from if cached else None) or gate_event.admission_opens_at,
            ends_at=(cached.valid_until if cached else None) or gate_event.ends_at,
        )
        reason = refusal(
            code_standing(
                code, gate_event_id=gate_event.event_id, ticket=facts, window=window, now=now
            ),
            direction,
        )
        if reason is not None:
            return replace(decision, result=VerdictResult.REJECTED, reason=reason)
        access = context.access
        if access is not None and access.lists_at(context.enrollment.gate):
            return self._decide_by_lists(
                conn, context, access, decision, cached, direction=direction, now=now
            )
        if direction is Direction.EXIT:
            return decision
        known = [
            AdmittedScan(a.scan_id, a.at, a.direction, gate=a.gate, device_id=a.device_id)
            for a in admissions_of(conn, lookup)
        ]
        prior = prior_scan(known, allow_reentry=gate_event.allow_reentry)
        if prior is not None:
            return replace(
                decision,
                result=VerdictResult.REJECTED,
                reason=VerdictReason.ALREADY_CHECKED_IN,
                prior=prior,
            )
        reentry = replay(known, allow_reentry=gate_event.allow_reentry).first_entry is not None
        return replace(decision, reentry=reentry)

    def _decide_by_lists(
        self,
        conn: Connection,
        context: _Context,
        access: AccessPlan,
        decision: _Decision,
        cached: CachedTicket | None,
        *,
        direction: Direction,
        now: datetime,
    ) -> _Decision:
        """The event's lists decide (``shared.checkin_lists.decide``, as the server does), over
        the ticket's known admissions with the list and zone each counted on."""
        assert decision.lookup is not None
        known = [
            AdmittedScan(
                a.scan_id,
                a.at,
                a.direction,
                gate=a.gate,
                device_id=a.device_id,
                list_id=a.list_id,
                zone=a.zone,
            )
            for a in admissions_of(conn, decision.lookup)
        ]
        kind = (
            access.kind(cached.ticket_type_id, cached.ticket_type)
            if cached is not None
            else UNKNOWN_KIND
        )
        listed = decide(
            access.plan,
            gate=context.enrollment.gate,
            direction=direction,
            ticket=kind,
            history=known,
            now=now,
        )
        assert listed is not None  # a list is scanned here (the caller checked)
        refusal = listed.refusal
        chosen = listed.list
        decision = replace(
            decision,
            lists_apply=True,
            list_id=refusal.list_id if refusal is not None else (chosen.id if chosen else None),
            list_name=(
                refusal.list_name if refusal is not None else (chosen.name if chosen else None)
            ),
            zone=chosen.zone if chosen is not None else None,
            enters_zone=listed.enters_zone,
            leaves_zone=listed.leaves_zone,
        )
        if refusal is not None:
            sentence = refusal.sentence
            if kind is UNKNOWN_KIND and refusal.reason is VerdictReason.NOT_ON_LIST:
                sentence = _UNKNOWN_TYPE_SENTENCE
            return replace(
                decision,
                result=VerdictResult.REJECTED,
                reason=refusal.reason,
                prior=listed.prior,
                sentence=sentence,
                on_signature=False,
            )
        if direction is Direction.EXIT:
            return decision
        # A re-entry: this zone was entered before and left since (an exit, or another zone's
        # entry) — not a further entry while inside, which a list with multiple entries allows.
        earlier = [a for a in known if a.at <= now]
        reentry = where_inside(earlier) != listed.enters_zone and any(
            a.direction is Direction.ENTRY and (a.zone or GENERAL_AREA) == listed.enters_zone
            for a in earlier
        )
        return replace(decision, reentry=reentry)


#: Why a ticket the cache does not know (or whose type it does not know) is refused where every
#: list names its ticket types: the scanner cannot tell whether its type is one of them.
_UNKNOWN_TYPE_SENTENCE = (
    "This scanner does not know this ticket's type yet (it needs a sync): "
    "this gate admits only some ticket types."
)


@dataclass(frozen=True, slots=True)
class _Decision:
    result: VerdictResult
    reason: VerdictReason | None
    ticket_id: uuid.UUID | None = None
    event_id: uuid.UUID | None = None
    lookup: bytes | None = None
    ticket_type: str | None = None
    holder_name: str | None = None
    prior: wire.PriorScan | None = None
    on_signature: bool = False
    reentry: bool = False
    #: A GH1 code: genuine, but it carries no name secret, so no name can be shown offline.
    old_format: bool = False
    #: Decided by the event's check-in lists; the list it counts on (or that refused it), that
    #: list's zone, and the zones entered and left (``ListDecision``).
    lists_apply: bool = False
    list_id: str | None = None
    list_name: str | None = None
    zone: str | None = None
    enters_zone: str | None = None
    leaves_zone: str | None = None
    #: A refusal's own sentence (a list's or its rule's), more specific than its reason's.
    sentence: str | None = None

    @property
    def admitted(self) -> bool:
        return self.result is VerdictResult.ADMITTED


def _record_kind(direction: Direction) -> RecordKind:
    return RecordKind.EXIT if direction is Direction.EXIT else RecordKind.ADMISSION


def _same_scan_key(text: str) -> str:
    # The code reader forgives case and surrounding whitespace, so a camera's "GH1…" and a
    # handheld scanner's "gh1…\n" are the same code.
    return text.strip().upper()


def _sentence(
    verdict: wire.Verdict,
    on_signature: bool,
    *,
    reentry: bool = False,
    old_format: bool = False,
    specific: str | None = None,
    enters_zone: str | None = None,
    leaves_zone: str | None = None,
) -> str:
    """The verdict as gate staff read it. ``specific`` is a refusal's own sentence (a check-in
    list's: "VIP tickets enter at the VIP gate."), said instead of its reason's; an entry that
    moves someone from one zone into another says so."""
    if (
        specific
        and verdict.reason is not None
        and not (verdict.reason is VerdictReason.ALREADY_CHECKED_IN and verdict.prior)
    ):
        return specific
    text = _verdict_sentence(verdict, on_signature, reentry=reentry)
    if (
        verdict.result is VerdictResult.ADMITTED
        and verdict.direction is Direction.ENTRY
        and enters_zone is not None
        and leaves_zone is not None
    ):
        # A move between zones (the gate screen names the zone a gate leads into).
        text += f" Into {_zone_phrase(enters_zone)}, out of {_zone_phrase(leaves_zone)}."
    if old_format and verdict.result is VerdictResult.ADMITTED:
        # GH1 codes carry no name secret: the name cannot be opened offline.
        text += " Old-format code: no name is shown offline."
    return text


def _zone_phrase(zone: str) -> str:
    return zone if zone != GENERAL_AREA else "the general area"


def _verdict_sentence(verdict: wire.Verdict, on_signature: bool, *, reentry: bool) -> str:
    if verdict.reason is VerdictReason.ALREADY_CHECKED_IN and verdict.prior is not None:
        when = verdict.prior.scanned_at.astimezone().strftime("%H:%M")
        return f"Already checked in at {when} at {verdict.prior.gate}."
    if verdict.reason is not None:
        return verdict.reason.sentence
    if verdict.direction is Direction.EXIT:
        return "Goodbye — exit recorded."
    if on_signature:
        return "Genuine ticket, not yet on this scanner's list (sold after the last sync)."
    if reentry:
        return "Welcome back (re-entry)."
    return "Welcome!"
