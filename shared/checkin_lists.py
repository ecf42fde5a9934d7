"""Check-in lists, event days and zones: who may enter where and when (issue 16).

An event may have check-in lists. A list names the ticket types it admits, the gates that scan
it, its time windows, its re-entry policy, an optional zone and an optional rule
(``shared.checkin_rules``). ``decide`` is the one place both sides ask: the server's check-in
and the scanner's offline gate call it with the same facts and so give the same verdict. An
event without lists, or a gate no list scans, gets ``None`` from it: decide as before lists.

Zones: every list leads into its zone (``None``: the event's general area). A person is in at
most one zone at a time — an entry into one zone takes them out of the one they were in, an
exit takes them out of the event — and ``where_inside`` / ``inside_by_zone`` replay admitted
scans into that presence, the same way on both sides. docs/checkin-lists.md tells the whole
story.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared import wire
from shared.checkin_rules import EntryRecord, RuleFacts, RuleOutcome, evaluate_rule
from shared.domain import Direction, VerdictReason
from shared.timeline import AdmittedScan, prior_scan, replay

#: The presence key of the event's general area: where lists without a zone lead.
GENERAL_AREA: Final = ""

_WEEKDAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """When a list admits: from ``opens_at`` (inclusive) until ``closes_at`` (exclusive);
    None is open-ended on that side."""

    opens_at: datetime | None = None
    closes_at: datetime | None = None

    def contains(self, when: datetime) -> bool:
        return (self.opens_at is None or self.opens_at <= when) and (
            self.closes_at is None or when < self.closes_at
        )


@dataclass(frozen=True, slots=True)
class CheckinList:
    """Who enters through which gates, when, how often, into which zone, under which rule."""

    id: str
    name: str
    #: The ticket types it admits; empty: every ticket type of the event.
    ticket_type_ids: frozenset[str] = frozenset()
    #: The gates that scan it; empty: every gate.
    gates: frozenset[str] = frozenset()
    #: The zone it leads into; None: the event's general area.
    zone: str | None = None
    #: Whether someone who left may enter again on it; None: as the event says.
    allow_reentry: bool | None = None
    #: pretix's "allow multiple entries": no double-entry check at all, its rule alone decides
    #: how often (an entry while inside stays in the same zone).
    allow_multiple_entries: bool = False
    #: When it admits; empty: whenever the event does.
    windows: tuple[TimeWindow, ...] = ()
    #: A JSON Logic rule (``shared.checkin_rules``) entries must pass; None: no rule.
    rules: object = None
    #: What staff read when the rule refuses (e.g. "Backstage only after the show"); None: a
    #: sentence derived from the part of the rule that said no.
    explanation: str | None = None
    archived: bool = False
    event_id: str = ""

    def scans_at(self, gate: str) -> bool:
        return not self.gates or gate in self.gates

    def admits_type(self, ticket_type_id: str) -> bool:
        return not self.ticket_type_ids or ticket_type_id in self.ticket_type_ids

    @property
    def zone_key(self) -> str:
        return self.zone if self.zone is not None else GENERAL_AREA


@dataclass(frozen=True, slots=True)
class EventDay:
    """One day of a multi-day event: a date in the event's time zone, or a session (which may
    run past midnight) when ``starts_at`` and ``ends_at`` are set."""

    date: date
    name: str = ""
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    #: When the doors open for this session; None: at ``starts_at``.
    admission_at: datetime | None = None

    @property
    def label(self) -> str:
        return self.name or _WEEKDAYS[self.date.weekday()]

    def covers(self, now: datetime, tz: ZoneInfo) -> bool:
        if self.starts_at is not None and self.ends_at is not None:
            opens = self.admission_at or self.starts_at
            return opens <= now < self.ends_at
        return now.astimezone(tz).date() == self.date


@dataclass(frozen=True, slots=True)
class TicketKind:
    """What a decision needs to know of a ticket's type."""

    id: str
    name: str
    #: The event days it admits (dates of ``EventPlan.days``); empty: every day.
    days: frozenset[date] = frozenset()


@dataclass(frozen=True, slots=True)
class EventPlan:
    """An event as check-in lists see it."""

    tz: ZoneInfo
    lists: tuple[CheckinList, ...] = ()
    days: tuple[EventDay, ...] = ()
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    admission_at: datetime | None = None
    #: The event's re-entry setting, for lists that do not say.
    allow_reentry: bool = False

    def day_of(self, now: datetime) -> tuple[int, EventDay] | None:
        """Today's event day and its 1-based position, or None when ``now`` is on none."""
        for index, day in enumerate(self.days, start=1):
            if day.covers(now, self.tz):
                return index, day
        return None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a list refuses a scan: a reason, the sentence staff read (specific where the list or
    its rule says more than the reason's own sentence), and the list that said it."""

    reason: VerdictReason
    sentence: str
    list_id: str | None = None
    list_name: str | None = None
    #: Set when the list's rule could not be evaluated: what went wrong, for the log.
    rule_error: str | None = None


@dataclass(frozen=True, slots=True)
class ListDecision:
    """What the event's lists say about one scan."""

    #: The list the scan counts on (an admitted scan records it); None for an exit at a gate
    #: whose lists do not name the ticket's type (exits are never refused for that).
    list: CheckinList | None
    refusal: Refusal | None = None
    #: For an admitted entry: the zone it enters (``GENERAL_AREA`` for lists without one).
    enters_zone: str | None = None
    #: The zone the person leaves by this scan, if they were in one: another zone's entry moves
    #: them out of it, an exit out of wherever they were.
    leaves_zone: str | None = None
    #: For ``already_checked_in``: the admission this entry collides with.
    prior: wire.PriorScan | None = None

    @property
    def admitted(self) -> bool:
        return self.refusal is None


def decide(
    plan: EventPlan,
    *,
    gate: str,
    direction: Direction,
    ticket: TicketKind,
    history: Iterable[AdmittedScan],
    now: datetime,
) -> ListDecision | None:
    """Which list applies to this scan and whether it lets the ticket through.

    ``history`` is the ticket's admitted scans for the event (not the double entries a replay
    marks as conflicts); only those not later than ``now`` count. Returns None when the event
    has no lists or none of them is scanned at ``gate``: decide as without lists.

    An entry is refused ``not_on_list`` when no list at this gate admits the ticket's type;
    otherwise the lists that do are tried in order of id and the first that admits it wins —
    each checks the ticket's days, its own time windows, its rule, then double entry in its
    zone. When none admits, the first one's refusal stands. An exit is never refused here.
    """
    now = now.astimezone(UTC)  # one zone for all comparisons (see shared.checkin_rules)
    at_gate = sorted(
        (item for item in plan.lists if not item.archived and item.scans_at(gate)),
        key=lambda item: item.id,
    )
    if not at_gate:
        return None
    # In UTC, so that the timeline's own ordering cannot be fooled by a DST fold (two times of
    # one zone compare by their wall clocks) whatever zone a side keeps its scans in.
    past = sorted(
        (dataclasses.replace(s, at=s.at.astimezone(UTC)) for s in history if s.at <= now),
        key=_in_time,
    )
    current = where_inside(past)
    candidates = [item for item in at_gate if item.admits_type(ticket.id)]
    if direction is Direction.EXIT:
        # It counts on the list of the zone it leaves, where that list is scanned here.
        leaving = [item for item in candidates if item.zone_key == current] or candidates
        return ListDecision(list=leaving[0] if leaving else None, leaves_zone=current)
    if not candidates:
        return ListDecision(
            list=None,
            refusal=Refusal(VerdictReason.NOT_ON_LIST, _not_on_list_sentence(plan, ticket)),
        )
    first: ListDecision | None = None
    for candidate in candidates:
        decision = _judge(plan, candidate, ticket=ticket, gate=gate, past=past, now=now)
        if decision.admitted:
            return dataclasses.replace(
                decision,
                enters_zone=candidate.zone_key,
                leaves_zone=current if current not in {None, candidate.zone_key} else None,
            )
        first = first or decision
    assert first is not None
    return first


def _judge(
    plan: EventPlan,
    checkin_list: CheckinList,
    *,
    ticket: TicketKind,
    gate: str,
    past: Sequence[AdmittedScan],
    now: datetime,
) -> ListDecision:
    def refuse(
        reason: VerdictReason,
        sentence: str,
        *,
        rule_error: str | None = None,
        prior: wire.PriorScan | None = None,
    ) -> ListDecision:
        refusal = Refusal(
            reason,
            sentence,
            list_id=checkin_list.id,
            list_name=checkin_list.name,
            rule_error=rule_error,
        )
        return ListDecision(list=checkin_list, refusal=refusal, prior=prior)

    today = plan.day_of(now)
    if ticket.days and (today is None or today[1].date not in ticket.days):
        return refuse(VerdictReason.RULE_FAILED, _wrong_day_sentence(plan, ticket, today, now))
    if checkin_list.windows and not any(w.contains(now) for w in checkin_list.windows):
        return refuse(*_window_refusal(checkin_list.windows, now, plan.tz))
    if checkin_list.rules is not None and checkin_list.rules != {}:  # pretix: {} is no rule
        facts = rule_facts(plan, checkin_list, ticket=ticket, gate=gate, past=past, now=now)
        outcome = evaluate_rule(checkin_list.rules, facts)
        if outcome.error is not None:
            sentence = f"The rule of “{checkin_list.name}” could not be checked: entry refused."
            return refuse(VerdictReason.RULE_FAILED, sentence, rule_error=outcome.error)
        if not outcome.allowed:
            sentence = checkin_list.explanation or explain(outcome, facts, ticket)
            return refuse(VerdictReason.RULE_FAILED, sentence)
    allow_reentry = (
        checkin_list.allow_reentry if checkin_list.allow_reentry is not None else plan.allow_reentry
    )
    if checkin_list.allow_multiple_entries:
        return ListDecision(list=checkin_list)
    prior = prior_scan(_zone_view(past, checkin_list.zone_key), allow_reentry=allow_reentry)
    if prior is not None:
        return refuse(
            VerdictReason.ALREADY_CHECKED_IN,
            VerdictReason.ALREADY_CHECKED_IN.sentence,
            prior=prior,
        )
    return ListDecision(list=checkin_list)


def rule_facts(
    plan: EventPlan,
    checkin_list: CheckinList,
    *,
    ticket: TicketKind,
    gate: str,
    past: Sequence[AdmittedScan],
    now: datetime,
) -> RuleFacts:
    """What ``checkin_list``'s rule sees for this entry: counts over its own earlier scans
    (``past``: the ticket's admitted scans up to ``now``, in time order)."""
    today = plan.day_of(now)
    day = today[1] if today is not None else None
    session = day is not None and day.starts_at is not None
    return RuleFacts(
        now=now,
        tz=plan.tz,
        ticket_type=ticket.id,
        variation=ticket.id,  # our ticket types stand in for pretix's variations too
        gate=gate,
        history=tuple(
            EntryRecord(at=s.at, entry=s.direction is Direction.ENTRY)
            for s in past
            if s.list_id == checkin_list.id
        ),
        zone=checkin_list.zone,
        event_day=day.date.isoformat() if day is not None else None,
        event_day_index=today[0] if today is not None else 0,
        inside=where_inside(past) is not None,
        date_from=day.starts_at if session and day is not None else plan.starts_at,
        date_to=day.ends_at if session and day is not None else plan.ends_at,
        date_admission=(
            (day.admission_at or day.starts_at) if session and day is not None else None
        )
        or plan.admission_at,
    )


def _zone_view(past: Sequence[AdmittedScan], zone: str) -> list[AdmittedScan]:
    """The scans as ``zone`` sees them: its own entries, and every way out of it — an exit, or
    an entry into another zone — as an exit."""
    view = []
    for scan in past:
        if scan.direction is Direction.ENTRY and (scan.zone or GENERAL_AREA) != zone:
            view.append(dataclasses.replace(scan, direction=Direction.EXIT))
        else:
            view.append(scan)
    return view


def zone_conflicts(
    scans: Sequence[AdmittedScan], plan: EventPlan | None, *, allow_reentry: bool
) -> dict[uuid.UUID, uuid.UUID]:
    """The double entries among a ticket's admitted scans (double entry -> the entry it
    collided with) when check-in lists put them in zones: each zone's timeline replayed on its
    own (``shared.timeline.replay`` over ``_zone_view``, as ``decide`` judges double entry), so
    an entry into another zone, like an exit, takes the person out of this one. Entries on a
    list that allows multiple entries are never double entries; a zone re-admits as its first
    list says, else as the event does (``allow_reentry``)."""
    lists = {item.id: item for item in plan.lists} if plan is not None else {}
    by_id = {scan.scan_id: scan for scan in scans}
    conflicts: dict[uuid.UUID, uuid.UUID] = {}
    for zone in {s.zone or GENERAL_AREA for s in scans if s.direction is Direction.ENTRY}:
        allow = next(
            (
                item.allow_reentry
                for item in sorted(lists.values(), key=lambda x: x.id)
                if item.zone_key == zone and not item.archived and item.allow_reentry is not None
            ),
            allow_reentry,
        )
        for scan_id, winner in replay(
            _zone_view(scans, zone), allow_reentry=allow
        ).conflicts.items():
            scan = by_id[scan_id]
            on = lists.get(scan.list_id or "")
            if (scan.zone or GENERAL_AREA) == zone and not (on and on.allow_multiple_entries):
                conflicts[scan_id] = winner
    return conflicts


def _in_time(scan: AdmittedScan) -> tuple[datetime, object]:
    return scan.at.astimezone(UTC), scan.scan_id


# --- presence ---------------------------------------------------------------------------------


def where_inside(scans: Iterable[AdmittedScan]) -> str | None:
    """The zone a person is in after ``scans`` (``GENERAL_AREA`` for the event's general area),
    or None when outside. An entry puts them in its zone (out of any other), an exit out."""
    here: str | None = None
    for scan in sorted(scans, key=_in_time):
        here = (scan.zone or GENERAL_AREA) if scan.direction is Direction.ENTRY else None
    return here


def inside_by_zone(histories: Iterable[Iterable[AdmittedScan]]) -> dict[str, int]:
    """How many people are in each zone now, from each ticket's admitted scans (one history per
    ticket). Zones nobody is in are left out."""
    counts: Counter[str] = Counter()
    for scans in histories:
        here = where_inside(scans)
        if here is not None:
            counts[here] += 1
    return dict(counts)


# --- sentences --------------------------------------------------------------------------------


def holders(type_name: str) -> str:
    """ "VIP" → "VIP tickets", "Day pass" → "Day passes": who holds tickets of a type."""
    words = type_name.split()
    last = words[-1].lower() if words else ""
    if last in {"tickets", "passes"}:
        return type_name
    if last == "ticket":
        return f"{type_name}s"
    if last == "pass":
        return f"{type_name}es"
    return f"{type_name} tickets"


def _gate_phrase(gates: Sequence[str]) -> str:
    named = gates[0] if len(gates) == 1 else f"{', '.join(gates[:-1])} or {gates[-1]}"
    # "East Gate", "Gate A": named as gates already ("the Gate A gate" would stutter).
    if any(
        g.lower().endswith(("gate", "entrance")) or g.lower().startswith("gate ") for g in gates
    ):
        return named
    return f"the {named} gate"


def _not_on_list_sentence(plan: EventPlan, ticket: TicketKind) -> str:
    elsewhere = sorted(
        {
            gate
            for item in plan.lists
            if not item.archived and item.admits_type(ticket.id)
            for gate in item.gates
        }
    )
    if elsewhere:
        return f"{holders(ticket.name)} enter at {_gate_phrase(elsewhere)}."
    return f"{holders(ticket.name)} do not enter at this gate."


def _wrong_day_sentence(
    plan: EventPlan, ticket: TicketKind, today: tuple[int, EventDay] | None, now: datetime
) -> str:
    labels = {day.date: day.label for day in plan.days}
    valid = [labels.get(d) or _WEEKDAYS[d.weekday()] for d in sorted(ticket.days)]
    valid_text = valid[0] if len(valid) == 1 else f"{', '.join(valid[:-1])} and {valid[-1]}"
    today_text = (
        today[1].label if today is not None else _WEEKDAYS[now.astimezone(plan.tz).weekday()]
    )
    return f"{ticket.name} for {valid_text} — today is {today_text}."


def _clock(when: datetime, now: datetime, tz: ZoneInfo) -> str:
    local = when.astimezone(tz)
    if local.date() == now.astimezone(tz).date():
        return f"{local:%H:%M}"
    return f"{_WEEKDAYS[local.weekday()]} {local:%d %b %H:%M}"


def _window_refusal(
    windows: Sequence[TimeWindow], now: datetime, tz: ZoneInfo
) -> tuple[VerdictReason, str]:
    later = [w.opens_at for w in windows if w.opens_at is not None and w.opens_at > now]
    if later:
        return VerdictReason.NOT_YET_VALID, f"This entrance opens at {_clock(min(later), now, tz)}."
    closed = [w.closes_at for w in windows if w.closes_at is not None and w.closes_at <= now]
    when = f" at {_clock(max(closed), now, tz)}" if closed else ""
    return VerdictReason.NO_LONGER_VALID, f"This entrance closed{when}."


def explain(outcome: RuleOutcome, facts: RuleFacts, ticket: TicketKind) -> str:
    """A sentence for the part of a rule that said no (pretix's ``_logic_explain`` also names
    one failed comparison; ours is the first on the rule's first path)."""
    generic = VerdictReason.RULE_FAILED.sentence
    leaf = outcome.failed_leaf
    if leaf is None:
        return generic
    ((op, args),) = leaf.items()
    if not isinstance(args, list) or not args or not isinstance(args[0], dict):
        return generic
    variable = args[0].get("var")
    if op in {"isAfter", "isBefore"} and variable == "now":
        if outcome.threshold is None:
            return generic
        when = _clock(outcome.threshold, facts.now, facts.tz)
        return f"Entry from {when}." if op == "isAfter" else f"Entry only until {when}."
    sentences = {
        "entries_today": "Already entered today.",
        "entries_number": "This ticket has no entries left here.",
        "entries_days": "This ticket has been used on all its days.",
        "minutes_since_last_entry": "Too soon after the last entry.",
        "minutes_since_first_entry": "Too soon after the first entry.",
        "now_isoweekday": f"Not valid on {_WEEKDAYS[facts.now.astimezone(facts.tz).weekday()]}.",
        "entry_status": "Already inside.",
        "product": f"{holders(ticket.name)} may not enter here.",
        "ticket_type": f"{holders(ticket.name)} may not enter here.",
        "variation": f"{holders(ticket.name)} may not enter here.",
        "gate": "Not at this gate.",
        "event_day": "Not valid today.",
        "event_day_index": "Not valid today.",
    }
    return sentences.get(variable, generic) if isinstance(variable, str) else generic


# --- from the wire ----------------------------------------------------------------------------


def checkin_list_from_wire(item: wire.CheckinListOut) -> CheckinList:
    """The list the API answered or the feed carried, as ``decide`` takes it."""
    return _checkin_list(str(item.id), item, event_id=str(item.event_id), archived=item.archived)


def event_day_from_wire(day: wire.EventDayIn) -> EventDay:
    return EventDay(
        date=day.date,
        name=day.name,
        starts_at=day.starts_at,
        ends_at=day.ends_at,
        admission_at=day.admission_at,
    )


def plan_from_setup(
    setup: wire.CheckinSetup,
    *,
    starts_at: datetime | None,
    ends_at: datetime | None,
    admission_at: datetime | None,
    allow_reentry: bool,
) -> tuple[EventPlan, dict[str, TicketKind]]:
    """The plan ``decide`` takes and the event's ticket types by id, from the setup as the feed
    carries it and the event's own times — how the server and the scanner both read a setup.
    Raises ``ValueError`` when its time zone is not one (``event_zone``)."""
    plan = EventPlan(
        tz=event_zone(setup.time_zone),
        lists=tuple(checkin_list_from_wire(item) for item in setup.lists),
        days=tuple(event_day_from_wire(day) for day in setup.days),
        starts_at=starts_at,
        ends_at=ends_at,
        admission_at=admission_at,
        allow_reentry=allow_reentry,
    )
    kinds = {
        kind.id: TicketKind(id=kind.id, name=kind.name, days=frozenset(kind.days))
        for kind in setup.ticket_types
    }
    return plan, kinds


def checkin_list_from_request(list_id: str, request: wire.CheckinListCreate) -> CheckinList:
    """A create request (or a pretix import) as the list ``list_id`` it makes."""
    return _checkin_list(list_id, request)


def _checkin_list(
    list_id: str,
    item: wire.CheckinListOut | wire.CheckinListCreate,
    *,
    event_id: str = "",
    archived: bool = False,
) -> CheckinList:
    return CheckinList(
        id=list_id,
        event_id=event_id,
        name=item.name,
        ticket_type_ids=frozenset(item.ticket_type_ids),
        gates=frozenset(item.gates),
        zone=item.zone,
        allow_reentry=item.allow_reentry,
        allow_multiple_entries=item.allow_multiple_entries,
        windows=tuple(TimeWindow(w.opens_at, w.closes_at) for w in item.windows),
        rules=item.rules,
        explanation=item.explanation,
        archived=archived,
    )


def event_zone(name: str) -> ZoneInfo:
    """The event's time zone from its IANA name; ``ValueError`` with a clear sentence for a name
    that is none (``ZoneInfo`` itself raises several kinds, some not ``ValueError``)."""
    problem = f"{name[:64]!r} is not a time zone: use an IANA name such as Europe/Berlin."
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise ValueError(problem)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError, UnicodeError):
        raise ValueError(problem) from None
