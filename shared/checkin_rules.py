"""Check-in rules: a total JSON Logic evaluator with pretix's check-in variables and operators.

A check-in list may carry a rule (JSON Logic, the shape pretix's check-in lists use). The server
and the scanner both decide entries with ``evaluate_rule`` on the same facts, so the same history
gives the same verdict online and offline. Nothing here raises: a rule that cannot be evaluated
(an unknown variable or operator, a type error, a bad ``buildTime``, too deep or too large)
gives a ``RuleOutcome`` with ``error`` set, which refuses the entry as ``rule_failed``.

Why our own evaluator and not a library (measured, docs/checkin-lists.md "Choosing the
engine"): pretix's operators ``entries_since(t)`` and friends need the ticket's history while
the rule runs, which datalogic-py's custom operators (arguments in, JSON text out, no data)
cannot reach; its custom operators also cost about 9 µs each for the JSON round trip, where
this evaluator decides a whole pretix example rule in a few µs. It also lets an unknown
variable fail closed rather than read as null.

Semantics follow pretix (``pretix/base/services/checkin.py``) and its offline engine
(libpretixsync ``AsyncCheckProvider.kt``); docs/checkin-lists.md lists every variable and
operator and where we deviate.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, TypeAlias
from zoneinfo import ZoneInfo

#: A rule nested deeper than this is refused before it runs (and while it runs).
MAX_RULE_DEPTH: Final = 32
#: At most this many JSON values in a rule (every dict, list and scalar counts).
MAX_RULE_NODES: Final = 2000
#: Text in a rule (a variable name, an id, a time) is at most this long.
MAX_RULE_TEXT: Final = 200
#: Operators evaluated at most per rule evaluation. A rule within ``MAX_RULE_NODES`` evaluates
#: each node at most twice (once, and once more to explain a refusal), so this is a second
#: guard, not the first.
MAX_RULE_STEPS: Final = 10_000

#: What a rule may compute with: JSON values, and instants (``now``, ``buildTime``).
Value: TypeAlias = "bool | int | float | str | datetime | list[Value] | dict[str, Value] | None"


class RuleError(Exception):
    """Why a rule could not be evaluated (a sentence). Internal: ``evaluate_rule`` turns it into
    a ``RuleOutcome``; ``check_rule`` raises it for a rule that is malformed before it runs."""


@dataclass(frozen=True, slots=True)
class EntryRecord:
    """One earlier admitted scan on the list whose rule runs (pretix counts per list)."""

    at: datetime
    entry: bool


@dataclass(frozen=True, slots=True)
class RuleFacts:
    """Everything a rule may ask about one entry. ``history`` holds this list's earlier admitted
    scans (entries and exits) in time order, none later than ``now``."""

    now: datetime
    tz: ZoneInfo
    ticket_type: str
    gate: str
    history: tuple[EntryRecord, ...] = ()
    #: pretix's variation: the ticket type again (our ticket types stand in for products and
    #: variations alike; the import maps both to them).
    variation: str | None = None
    zone: str | None = None
    #: Today's event day as an ISO date, and its 1-based position (0: not an event day).
    event_day: str | None = None
    event_day_index: int = 0
    #: Whether the person is inside any zone of the event now.
    inside: bool = False
    #: ``buildTime`` date_from / date_to / date_admission (today's session, else the event).
    date_from: datetime | None = None
    date_to: datetime | None = None
    date_admission: datetime | None = None


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """The rule's answer: ``allowed``, or refused; ``error`` says why it could not run."""

    allowed: bool
    error: str | None = None
    #: For a refusal, the leaf that said no (for the staff sentence), when there is one.
    failed_leaf: Mapping[str, object] | None = field(default=None, compare=False)
    #: When that leaf is ``isAfter`` / ``isBefore``: the moment it admits from / until
    #: (tolerance applied).
    threshold: datetime | None = None


def check_rule(rule: object) -> None:
    """Raise ``RuleError`` when ``rule`` is too deep, too large, or holds text too long or a
    value that is not JSON; return for a rule of the right size (whether it runs is another
    matter: ``evaluate_rule`` refuses what it cannot evaluate)."""
    nodes = 0
    stack: list[tuple[object, int]] = [(rule, 1)]
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_RULE_NODES:
            raise RuleError(f"The rule is too large (more than {MAX_RULE_NODES} values).")
        if depth > MAX_RULE_DEPTH:
            raise RuleError(f"The rule is nested too deeply (more than {MAX_RULE_DEPTH}).")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str) or len(key) > MAX_RULE_TEXT:
                    raise RuleError("A key of the rule is not a short text.")
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            if len(value) > MAX_RULE_TEXT:
                raise RuleError(f"A text in the rule is longer than {MAX_RULE_TEXT} characters.")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise RuleError("A number in the rule is not finite.")
        elif value is not None and not isinstance(value, (bool, int)):
            raise RuleError(f"The rule holds a {type(value).__name__}, which is not JSON.")


def evaluate_rule(rule: object, facts: RuleFacts) -> RuleOutcome:
    """Whether ``rule`` lets this entry in. Never raises: any failure refuses with ``error``."""
    try:
        # The same bounds as when the list was made (the wire forms): a rule that could not be
        # stored cannot decide either, however it got here.
        check_rule(rule)
        run = _Run(facts)
        result = run.eval(rule, 0)
        if truthy(result):
            return RuleOutcome(allowed=True)
        leaf = run.failed_leaf(rule)
        return RuleOutcome(allowed=False, failed_leaf=leaf, threshold=run.threshold(leaf))
    except RuleError as error:
        return RuleOutcome(allowed=False, error=str(error))
    except (ArithmeticError, ValueError, TypeError, OverflowError, RecursionError) as error:
        return RuleOutcome(allowed=False, error=f"The rule could not be evaluated ({error}).")


def truthy(value: object) -> bool:
    """JSON Logic's truthiness: false, null, 0, "" and [] are false, all else true."""
    if value is None or value is False:
        return False
    if isinstance(value, bool):
        return True
    if isinstance(value, (int, float)):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    if isinstance(value, (str, list)):
        return len(value) > 0
    return True


# --- the evaluator ----------------------------------------------------------------------------

#: The variables ``{"var": NAME}`` reads (pretix's, then ours).
VARIABLES: Final = frozenset(
    {
        "product",
        "variation",
        "gate",
        "now",
        "now_isoweekday",
        "entry_status",
        "entries_number",
        "entries_today",
        "entries_days",
        "minutes_since_last_entry",
        "minutes_since_first_entry",
        "ticket_type",
        "zone",
        "event_day",
        "event_day_index",
        "inside",
    }
)

_BOOLEAN_OPS: Final = frozenset({"and", "or"})


class _Run:
    """One evaluation: counts steps, caches what it derived from the history."""

    __slots__ = ("_entry_times", "_facts", "_now", "_steps")

    def __init__(self, facts: RuleFacts) -> None:
        self._facts = facts
        self._steps = 0
        # Every instant in UTC: Python subtracts and compares two times of the *same* zone by
        # their wall clocks, which is wrong across a DST change.
        self._now = facts.now.astimezone(UTC)
        self._entry_times = [r.at.astimezone(UTC) for r in facts.history if r.entry]

    # .. variables ..

    def _entries(self) -> list[datetime]:
        return self._entry_times

    def _local_date(self, when: datetime) -> date:
        return when.astimezone(self._facts.tz).date()

    def variable(self, name: object, default: Value, has_default: bool) -> Value:  # noqa: PLR0912
        if not isinstance(name, str):
            raise RuleError("A variable's name must be a text.")
        facts = self._facts
        match name:
            case "product" | "ticket_type":
                return facts.ticket_type
            case "variation":
                return facts.variation
            case "gate":
                return facts.gate
            case "now":
                return self._now
            case "now_isoweekday":
                return self._now.astimezone(facts.tz).isoweekday()
            case "entry_status":
                last = facts.history[-1] if facts.history else None
                return "present" if last is not None and last.entry else "absent"
            case "entries_number":
                return len(self._entries())
            case "entries_today":
                today = self._local_date(self._now)
                return sum(1 for at in self._entries() if self._local_date(at) == today)
            case "entries_days":
                return len({self._local_date(at) for at in self._entries()})
            case "minutes_since_last_entry":
                entries = self._entries()
                return _whole_minutes(self._now - max(entries)) if entries else -1
            case "minutes_since_first_entry":
                entries = self._entries()
                return _whole_minutes(self._now - min(entries)) if entries else -1
            case "zone":
                return facts.zone
            case "event_day":
                return facts.event_day
            case "event_day_index":
                return facts.event_day_index
            case "inside":
                return facts.inside
        if has_default:
            return default
        raise RuleError(f"The rule reads an unknown variable {name[:40]!r}.")

    def _count(self, since: Value, *, before: bool, days: bool) -> int:
        if not isinstance(since, datetime):
            raise RuleError("entries_since / entries_before need a time (buildTime).")
        entries = [at for at in self._entries() if (at < since if before else at >= since)]
        if days:
            return len({self._local_date(at) for at in entries})
        return len(entries)

    # .. buildTime ..

    def build_time(self, args: list[Value]) -> datetime:
        if not args or not isinstance(args[0], str):
            raise RuleError("buildTime needs a kind: custom, customtime, date_from, …")
        kind = args[0]
        value = args[1] if len(args) > 1 else None
        facts = self._facts
        if kind == "custom":
            if not isinstance(value, str):
                raise RuleError("buildTime custom needs a date and time.")
            return _parse_instant(value, facts.tz).astimezone(UTC)
        if kind == "customtime":
            if not isinstance(value, str):
                raise RuleError("buildTime customtime needs a time of day.")
            try:
                clock = time.fromisoformat(value)
            except ValueError:
                raise RuleError(f"buildTime customtime: {value[:40]!r} is not a time.") from None
            today = self._now.astimezone(facts.tz).date()
            # fold=0: a time the clocks skip (DST) reads with the offset before the change,
            # as pretix's server does; a time they pass twice is the first of the two.
            local = datetime.combine(today, clock.replace(tzinfo=None), tzinfo=facts.tz)
            return local.astimezone(UTC)
        moments = {
            "date_from": facts.date_from,
            "date_to": facts.date_to or facts.date_from,
            "date_admission": facts.date_admission or facts.date_from,
        }
        if kind not in moments:
            raise RuleError(f"buildTime has no kind {kind[:40]!r}.")
        moment = moments[kind]
        if moment is None:
            raise RuleError(f"buildTime {kind}: the event has no such time.")
        return moment.astimezone(UTC)

    # .. the walk ..

    def eval(self, node: object, depth: int) -> Value:  # noqa: PLR0912
        if depth > MAX_RULE_DEPTH:
            raise RuleError("The rule is nested too deeply.")
        self._steps += 1
        if self._steps > MAX_RULE_STEPS:
            raise RuleError("The rule takes too many steps.")
        if isinstance(node, list):
            return [self.eval(item, depth + 1) for item in node]
        if not isinstance(node, dict):
            if node is None or isinstance(node, (bool, int, float, str)):
                return node
            raise RuleError("The rule holds a value that is not JSON.")
        if len(node) != 1:
            raise RuleError("An operation must have exactly one operator.")
        ((op, raw),) = node.items()
        raw_args: list[object] = raw if isinstance(raw, list) else [raw]
        # Operators that decide which arguments to evaluate.
        if op in _BOOLEAN_OPS:
            if not raw_args:
                raise RuleError(f"{op} needs at least one condition.")
            value: Value = None
            for item in raw_args:
                value = self.eval(item, depth + 1)
                if truthy(value) == (op == "or"):
                    return value
            return value
        if op in {"if", "?:"}:
            index = 0
            while index + 1 < len(raw_args):
                if truthy(self.eval(raw_args[index], depth + 1)):
                    return self.eval(raw_args[index + 1], depth + 1)
                index += 2
            return self.eval(raw_args[index], depth + 1) if index < len(raw_args) else None
        if op == "var":
            name = self.eval(raw_args[0], depth + 1) if raw_args else ""
            if len(raw_args) > 1:
                return self.variable(name, self.eval(raw_args[1], depth + 1), True)
            return self.variable(name, None, False)
        args = [self.eval(item, depth + 1) for item in raw_args]
        operation = _OPERATIONS.get(op) if isinstance(op, str) else None
        if operation is not None:
            return operation(args)
        match op:
            case "buildTime":
                return self.build_time(args)
            case "entries_since":
                return self._count(_first(args, op), before=False, days=False)
            case "entries_before":
                return self._count(_first(args, op), before=True, days=False)
            case "entries_days_since":
                return self._count(_first(args, op), before=False, days=True)
            case "entries_days_before":
                return self._count(_first(args, op), before=True, days=True)
        raise RuleError(f"The rule uses an unknown operator {str(op)[:40]!r}.")

    def failed_leaf(self, rule: object) -> Mapping[str, object] | None:
        """The first comparison that is false on a path the rule needed: walks ``and`` (first
        false member) and ``or`` (its first member), stopping at anything else. Never raises
        (it only re-evaluates what the rule's own evaluation already did)."""
        try:
            return self._failed_leaf(rule)
        except (RuleError, ArithmeticError, ValueError, TypeError, RecursionError):
            return None

    def threshold(self, leaf: Mapping[str, object] | None) -> datetime | None:
        """For an ``isAfter`` / ``isBefore`` leaf: the moment it admits from / until."""
        if leaf is None or len(leaf) != 1:
            return None
        ((op, raw),) = leaf.items()
        if op not in {"isAfter", "isBefore"} or not isinstance(raw, list) or len(raw) < 2:
            return None
        try:
            args = [self.eval(item, 1) for item in raw]
            moment, tolerance = _moment(args[1]), _tolerance(args)
        except (RuleError, ArithmeticError, ValueError, TypeError, RecursionError):
            return None
        return moment - tolerance if op == "isAfter" else moment + tolerance

    def _failed_leaf(self, rule: object) -> Mapping[str, object] | None:
        found = self._weighed_leaf(rule, 0)
        return found[1] if found is not None else None

    def _weighed_leaf(self, node: object, depth: int) -> tuple[int, Mapping[str, object]] | None:
        """Like pretix's ``_logic_explain``: of an ``or`` the way in that is easiest for the
        holder to meet (least rigid), of an ``and`` the hardest obstacle (most rigid)."""
        if depth > MAX_RULE_DEPTH or not isinstance(node, dict) or len(node) != 1:
            return None
        ((op, args),) = node.items()
        if op not in _BOOLEAN_OPS:
            return _rigidity(node), node
        if not isinstance(args, list):
            return None
        members = args if op == "or" else [a for a in args if not truthy(self.eval(a, 0))]
        found = [leaf for a in members if (leaf := self._weighed_leaf(a, depth + 1)) is not None]
        if not found:
            return None
        pick = min if op == "or" else max
        return pick(found, key=lambda item: item[0])


#: How hard a failed comparison is for the holder to change (pretix's explanation weights): a
#: count of entries less so than the time, the time less so than the ticket's type.
_RIGIDITY: Final = {
    "minutes_since_first_entry": 80,
    "minutes_since_last_entry": 90,
    "entries_days": 100,
    "entries_number": 120,
    "entries_today": 140,
    "now": 200,
    "now_isoweekday": 210,
    "product": 1000,
    "variation": 1000,
    "ticket_type": 1000,
}


def _rigidity(leaf: Mapping[str, object]) -> int:
    ((_, args),) = leaf.items()
    first = args[0] if isinstance(args, list) and args else None
    name = first.get("var") if isinstance(first, dict) else None
    return _RIGIDITY.get(name, 500) if isinstance(name, str) else 500


def _first(args: list[Value], op: str) -> Value:
    if not args:
        raise RuleError(f"{op} needs an argument.")
    return args[0]


def _whole_minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


def _parse_instant(text: str, tz: ZoneInfo) -> datetime:
    """An ISO 8601 date-time (or date); one without an offset is read in the event's zone."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise RuleError(f"{text[:40]!r} is not a date and time.") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when


# --- plain operations (all arguments evaluated) -------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: Value) -> float | int:
    """A value as a number for arithmetic and ordering: numbers, and text that reads as one."""
    if _is_number(value):
        assert isinstance(value, (int, float))
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise RuleError(f"{_show(value)} is not a number.")


def _show(value: Value) -> str:
    return repr(value)[:40]


def _comparable(a: Value, b: Value) -> tuple[object, object]:
    """``a`` and ``b`` as things ``<`` orders: two instants, or two numbers."""
    if isinstance(a, datetime) or isinstance(b, datetime):
        if isinstance(a, datetime) and isinstance(b, datetime):
            return a.astimezone(UTC), b.astimezone(UTC)
        raise RuleError(f"Cannot compare {_show(a)} with {_show(b)}.")
    return _number(a), _number(b)


def _order(check: Callable[[object, object], bool]) -> Callable[[list[Value]], Value]:
    def operation(args: list[Value]) -> Value:
        if len(args) not in {2, 3}:
            raise RuleError("A comparison needs two values (or three: between).")
        pairs = list(itertools.pairwise(args))
        return all(check(*_comparable(a, b)) for a, b in pairs)

    return operation


def _equal(a: Value, b: Value) -> bool:
    """Loose equality as pretix's engines agree on it: numbers by value (also numbers written
    as text, as ids are), instants by instant, everything else only with its own kind."""
    if _is_number(a) and _is_number(b):
        return a == b
    if (_is_number(a) and isinstance(b, str)) or (isinstance(a, str) and _is_number(b)):
        try:
            return _number(a) == _number(b)
        except RuleError:
            return False
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return type(a) is type(b) and a == b


def _strict_equal(a: Value, b: Value) -> bool:
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _two(args: list[Value]) -> tuple[Value, Value]:
    if len(args) != 2:
        raise RuleError("This operator needs two values.")
    return args[0], args[1]


def _in(args: list[Value]) -> bool:
    needle, haystack = _two(args)
    if isinstance(haystack, list):
        return any(_strict_equal(needle, item) for item in haystack)
    if isinstance(haystack, str) and isinstance(needle, str):
        return needle in haystack
    raise RuleError("in needs a list, or a text in a text.")


def _in_list(args: list[Value]) -> bool:
    needle, haystack = _two(args)
    if not isinstance(haystack, list):
        raise RuleError("inList needs a list (objectList).")
    return any(_equal(needle, item) for item in haystack)


def _lookup(args: list[Value]) -> Value:
    """``{"lookup": [kind, id, label]}``: the id (our ticket type id after import)."""
    if len(args) < 2 or not isinstance(args[1], (str, int)) or isinstance(args[1], bool):
        raise RuleError("lookup needs a kind and an id.")
    return str(args[1])


def _moment(value: Value) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    raise RuleError(f"{_show(value)} is not a time (use buildTime).")


def _tolerance(args: list[Value]) -> timedelta:
    if len(args) < 3 or args[2] is None:
        return timedelta(0)
    return timedelta(minutes=_number(args[2]))


def _is_after(args: list[Value]) -> bool:
    """``isAfter(t1, t2, tolerance)``: t1 later than t2, or than t2 minus the tolerance."""
    if len(args) not in {2, 3}:
        raise RuleError("isAfter needs two times and a tolerance.")
    return _moment(args[0]) + _tolerance(args) > _moment(args[1])


def _is_before(args: list[Value]) -> bool:
    """``isBefore(t1, t2, tolerance)``: t1 earlier than t2, or than t2 plus the tolerance."""
    if len(args) not in {2, 3}:
        raise RuleError("isBefore needs two times and a tolerance.")
    return _moment(args[0]) - _tolerance(args) < _moment(args[1])


def _arithmetic(args: list[Value], op: str) -> Value:
    numbers = [_number(a) for a in args]
    if op == "+":
        return sum(numbers)
    if op == "*":
        if not numbers:
            raise RuleError("* needs values.")
        return math.prod(numbers)
    if op == "-" and len(numbers) == 1:
        return -numbers[0]
    if len(numbers) != 2:
        raise RuleError(f"{op} needs two values.")
    a, b = numbers
    if op == "-":
        return a - b
    if b == 0:
        raise RuleError(f"{op} by zero.")
    return a / b if op == "/" else math.fmod(a, b)


def _extreme(args: list[Value], pick: Callable[[list[float | int]], float | int]) -> Value:
    if not args:
        raise RuleError("min and max need values.")
    return pick([_number(a) for a in args])


def _cat(args: list[Value]) -> str:
    parts = []
    for value in args:
        if isinstance(value, (list, dict, datetime)):
            raise RuleError("cat joins texts and numbers only.")
        if value is None:
            parts.append("")
        else:
            parts.append(str(value).lower() if isinstance(value, bool) else str(value))
    return "".join(parts)


_OPERATIONS: Final[dict[str, Callable[[list[Value]], Value]]] = {
    "==": lambda a: _equal(*_two(a)),
    "!=": lambda a: not _equal(*_two(a)),
    "===": lambda a: _strict_equal(*_two(a)),
    "!==": lambda a: not _strict_equal(*_two(a)),
    "<": _order(lambda a, b: a < b),  # type: ignore[operator]
    "<=": _order(lambda a, b: a <= b),  # type: ignore[operator]
    ">": _order(lambda a, b: a > b),  # type: ignore[operator]
    ">=": _order(lambda a, b: a >= b),  # type: ignore[operator]
    "!": lambda a: not truthy(a[0] if a else None),
    "!!": lambda a: truthy(a[0] if a else None),
    "in": _in,
    "inList": _in_list,
    "objectList": list,
    "lookup": _lookup,
    "isAfter": _is_after,
    "isBefore": _is_before,
    "+": lambda a: _arithmetic(a, "+"),
    "-": lambda a: _arithmetic(a, "-"),
    "*": lambda a: _arithmetic(a, "*"),
    "/": lambda a: _arithmetic(a, "/"),
    "%": lambda a: _arithmetic(a, "%"),
    "min": lambda a: _extreme(a, min),
    "max": lambda a: _extreme(a, max),
    "cat": _cat,
}

#: Every operator ``evaluate_rule`` knows.
OPERATORS: Final = frozenset(
    {
        *_OPERATIONS,
        *_BOOLEAN_OPS,
        "if",
        "?:",
        "var",
        "buildTime",
        "entries_since",
        "entries_before",
        "entries_days_since",
        "entries_days_before",
    }
)
