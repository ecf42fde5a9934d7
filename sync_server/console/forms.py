"""Console forms read into the domain's own schemas, every problem a sentence for its field.

Each reader is total: whatever a browser (or anyone) posts, it returns either the schema the
domain service takes or the sentences to show next to the fields, never raises."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Generic, TypeVar
from zoneinfo import ZoneInfo

import msgspec

from shared import wire
from shared.checkin_lists import event_zone
from shared.checkin_rules import RuleError, RuleFacts, check_rule, evaluate_rule
from shared.wire import TIME_YEARS, EventDayIn
from sync_server.domain.checkin_lists.schemas import PretixImport
from sync_server.domain.events.schemas import (
    CAPACITY_MAX,
    EXPIRY_GRACE_MAX,
    MAX_DAYS,
    EventCreate,
    EventUpdate,
    TicketTypeCreate,
    TicketTypeUpdate,
)

NAME_MAX: Final = 200
DAY_NAME_MAX: Final = 64
ZONE_NAME_MAX: Final = 64
EXPLANATION_MAX: Final = 200
#: Bounds on what a textarea may hold before it is read at all.
DAYS_TEXT_MAX: Final = 40_000
WINDOWS_TEXT_MAX: Final = 10_000
RULE_TEXT_MAX: Final = 100_000
PRETIX_TEXT_MAX: Final = 200_000
MAPPING_LINES_MAX: Final = 500
#: A day of the edit form: ``2027-06-01``, ``2027-06-01 19:00-23:30 Opening night``.
_DAY_LINE: Final = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})(?:\s+(?P<start>\d{2}:\d{2})\s*-\s*(?P<end>\d{2}:\d{2}))?"
    r"(?:\s+(?P<name>\S.*))?"
)
#: The moment a rule's trial run takes as now (any will do: it looks for unknown names).
_TRIAL_TIME: Final = datetime(2027, 1, 1, tzinfo=UTC)
#: A line of the pretix mapping: ``product 12 = Standing, VIP``.
_MAPPING_LINE: Final = re.compile(
    r"(?P<what>product|variation|gate)\s+(?P<id>[0-9A-Za-z_-]{1,64})\s*=\s*(?P<ours>\S.*)",
    re.IGNORECASE,
)
#: What a ``datetime-local`` input sends (seconds are allowed, never an offset).
_LOCAL_FORMATS: Final = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")

T = TypeVar("T")


@dataclass
class FormResult(Generic[T]):
    value: T | None = None
    errors: dict[str, str] = field(default_factory=dict)


def _text(form: Mapping[str, str], name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _name(value: str, what: str) -> str | None:
    if not value:
        return f"Give the {what}."
    if len(value) > NAME_MAX:
        return f"The {what} may be at most {NAME_MAX} characters long."
    if any(ch in value for ch in "\r\n\t") or not value.isprintable():
        return f"The {what} must be one line of printable characters."
    return None


def _local_time(value: str, zone: ZoneInfo | None, what: str) -> tuple[datetime | None, str | None]:
    if not value:
        return None, f"Give the {what}."
    for layout in _LOCAL_FORMATS:
        try:
            naive = datetime.strptime(value, layout)  # the zone is the event's
        except ValueError:
            continue
        if not TIME_YEARS[0] <= naive.year < TIME_YEARS[1]:
            return None, (
                f"Give a {what} between the years {TIME_YEARS[0]} and {TIME_YEARS[1] - 1}."
            )
        return (naive.replace(tzinfo=zone) if zone is not None else None), None
    return None, f"Give the {what} as a date and time, such as 2027-06-01T19:30."


_HOURS: Final = re.compile(r"[0-9]{1,4}(?:[.,][0-9]{1,4})?")
_GRACE_MAX_HOURS: Final = EXPIRY_GRACE_MAX // 3600


def hours_text(seconds: float | None) -> str:
    """A grace period in seconds as the form shows it: hours, without a needless ``.0``;
    None: empty (the server's default)."""
    if seconds is None:
        return ""
    return f"{seconds / 3600:.4f}".rstrip("0").rstrip(".")


def _expiry_grace(raw: str, errors: dict[str, str]) -> int | None:
    """The event's expiry grace in seconds from the hours typed; None when empty (the server's
    default) or wrong (with a sentence in ``errors``)."""
    if not raw:
        return None
    if not _HOURS.fullmatch(raw):
        errors["expiry_grace_hours"] = (
            f"Give the hours as a number from 0 to {_GRACE_MAX_HOURS}, such as 6 or 1.5, "
            "or leave it empty for the server's default."
        )
        return None
    seconds = round(float(raw.replace(",", ".")) * 3600)
    if seconds > EXPIRY_GRACE_MAX:
        errors["expiry_grace_hours"] = (
            f"Tickets expire at most {_GRACE_MAX_HOURS} hours (30 days) after the event ends."
        )
        return None
    return seconds


def _event_fields(
    form: Mapping[str, str], errors: dict[str, str]
) -> tuple[dict[str, object], ZoneInfo | None]:
    """The fields the new-event and edit-event forms share, read into the domain's names;
    a sentence in ``errors`` for each that is wrong."""
    name, venue, zone_name = _text(form, "name"), _text(form, "venue"), _text(form, "time_zone")
    for key, value, what in (("name", name, "event's name"), ("venue", venue, "venue's name")):
        problem = _name(value, what)
        if problem is not None:
            errors[key] = problem
    zone: ZoneInfo | None = None
    try:
        zone = event_zone(zone_name or "UTC")
    except ValueError as error:
        errors["time_zone"] = str(error)
    starts, problem = _local_time(_text(form, "starts_at"), zone, "start time")
    if problem:
        errors["starts_at"] = problem
    ends, problem = _local_time(_text(form, "ends_at"), zone, "end time")
    if problem:
        errors["ends_at"] = problem
    if starts is not None and ends is not None and ends <= starts:
        errors["ends_at"] = "The event must end after it starts."
    fields: dict[str, object] = {
        "name": name,
        "venue": venue,
        "starts_at": starts,
        "ends_at": ends,
        "time_zone": zone_name or "UTC",
        "allow_reentry": form.get("allow_reentry") == "on",
        # Empty: the server's default (in an edit, back to it).
        "expiry_grace_seconds": _expiry_grace(_text(form, "expiry_grace_hours"), errors),
    }
    return fields, zone


def event_form(form: Mapping[str, str]) -> FormResult[EventCreate]:
    """``EventCreate`` from the new-event form, or a sentence per wrong field."""
    result: FormResult[EventCreate] = FormResult()
    fields, _zone = _event_fields(form, result.errors)
    if result.errors:
        return result
    try:
        result.value = msgspec.convert(fields, EventCreate)
    except msgspec.ValidationError as error:  # what the checks above let through, if anything
        result.errors["form"] = f"The event could not be read: {error}."
    return result


def _capacity(raw: str, errors: dict[str, str]) -> int | None:
    if not raw:
        errors["capacity"] = "Give how many tickets of this type there are."
    elif not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        errors["capacity"] = f"Give the capacity as a whole number from 0 to {CAPACITY_MAX:,}."
    elif int(raw) > CAPACITY_MAX:
        errors["capacity"] = f"A ticket type holds at most {CAPACITY_MAX:,} tickets."
    else:
        return int(raw)
    return None


def ticket_type_form(form: Mapping[str, str]) -> FormResult[TicketTypeCreate]:
    """``TicketTypeCreate`` from the add-a-ticket-type form, or a sentence per wrong field."""
    result: FormResult[TicketTypeCreate] = FormResult()
    name = _text(form, "name")
    problem = _name(name, "ticket type's name")
    if problem is not None:
        result.errors["name"] = problem
    capacity = _capacity(_text(form, "capacity"), result.errors)
    if result.errors or capacity is None:
        return result
    try:
        result.value = msgspec.convert({"name": name, "capacity": capacity}, TicketTypeCreate)
    except msgspec.ValidationError as error:
        result.errors["form"] = f"The ticket type could not be read: {error}."
    return result


# --- editing an event and its ticket types -----------------------------------------------------


def days_text(days: Sequence[EventDayIn], zone: ZoneInfo) -> str:
    """An event's days as the edit form shows them: a line each, ``DATE [HH:MM-HH:MM] [name]``
    (session times in the event's time zone)."""
    lines = []
    for day in days:
        parts = [day.date.isoformat()]
        if day.starts_at is not None and day.ends_at is not None:
            parts.append(
                f"{day.starts_at.astimezone(zone):%H:%M}-{day.ends_at.astimezone(zone):%H:%M}"
            )
        if day.name:
            parts.append(day.name)
        lines.append(" ".join(parts))
    return "\n".join(lines)


def _days(text: str, zone: ZoneInfo) -> tuple[list[dict[str, object]], str | None]:
    days: list[dict[str, object]] = []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > MAX_DAYS:
        return [], f"An event has at most {MAX_DAYS} days."
    seen: set[date] = set()
    for number, line in enumerate(lines, start=1):
        found = _DAY_LINE.fullmatch(line)
        where = f"Line {number} of the days"
        if found is None:
            return [], f"{where} is not a date such as 2027-06-01, with times and a name or not."
        try:
            day = date.fromisoformat(found["date"])
        except ValueError:
            return [], f"{where}: {found['date']} is no date."
        if day in seen:
            return [], f"{where}: {day.isoformat()} is given twice."
        seen.add(day)
        if not TIME_YEARS[0] <= day.year < TIME_YEARS[1]:
            return [], f"{where}: give a date between {TIME_YEARS[0]} and {TIME_YEARS[1] - 1}."
        entry: dict[str, object] = {"date": day, "name": found["name"] or ""}
        if len(str(entry["name"])) > DAY_NAME_MAX:
            return [], f"{where}: a day's name may be at most {DAY_NAME_MAX} characters long."
        if found["start"]:
            try:
                start, end = time.fromisoformat(found["start"]), time.fromisoformat(found["end"])
            except ValueError:
                return [], f"{where}: give the session's times as 19:00-23:30."
            starts = datetime.combine(day, start, zone)
            ends = datetime.combine(day, end, zone)
            if ends <= starts:  # a session that runs past midnight
                ends = datetime.combine(day + timedelta(days=1), end, zone)
            entry["starts_at"], entry["ends_at"] = starts, ends
        days.append(entry)
    return days, None


def event_update_form(form: Mapping[str, str]) -> FormResult[EventUpdate]:
    """``EventUpdate`` from the edit-event form, or a sentence per wrong field. The days are
    sent only when their text changed (``days_shown`` holds what the page showed), so an
    edit of the name leaves what the form cannot show (a session's admission time) alone."""
    result: FormResult[EventUpdate] = FormResult()
    errors = result.errors
    fields, zone = _event_fields(form, errors)
    admission = _text(form, "admission_opens_at")
    fields["admission_opens_at"] = None
    if admission:
        opens, problem = _local_time(admission, zone, "time admission opens")
        if problem:
            errors["admission_opens_at"] = problem
        elif (
            opens is not None
            and isinstance(fields["ends_at"], datetime)
            and opens >= fields["ends_at"]
        ):
            errors["admission_opens_at"] = "Admission must open before the event ends."
        fields["admission_opens_at"] = opens
    days_raw = form.get("days", "")
    if isinstance(days_raw, str) and days_raw.strip() != form.get("days_shown", "").strip():
        if len(days_raw) > DAYS_TEXT_MAX:
            errors["days"] = "The days are too long a text: give at most one line a day."
        elif zone is not None:
            days, problem = _days(days_raw, zone)
            if problem:
                errors["days"] = problem
            fields["days"] = days
    if errors:
        return result
    try:
        result.value = msgspec.convert(fields, EventUpdate)
    except msgspec.ValidationError as error:
        errors["form"] = f"The event could not be read: {error}."
    return result


def ticket_type_update_form(form: Mapping[str, str]) -> FormResult[TicketTypeUpdate]:
    """``TicketTypeUpdate`` from a ticket type's edit form, or a sentence per wrong field."""
    result: FormResult[TicketTypeUpdate] = FormResult()
    name = _text(form, "name")
    problem = _name(name, "ticket type's name")
    if problem is not None:
        result.errors["name"] = problem
    capacity = _capacity(_text(form, "capacity"), result.errors)
    days: list[date] = []
    raw_days = _text(form, "days")
    words = raw_days.replace(",", " ").split()
    if len(raw_days) > DAYS_TEXT_MAX or len(words) > MAX_DAYS:
        result.errors["days"] = f"Give at most {MAX_DAYS} dates."
    else:
        for word in words:
            try:
                days.append(date.fromisoformat(word))
            except ValueError:
                result.errors["days"] = f"{word[:20]!r} is not a date such as 2027-06-01."
                break
    if result.errors or capacity is None:
        return result
    try:
        result.value = msgspec.convert(
            {
                "name": name,
                "capacity": capacity,
                "days": days,
                "release_seat": form.get("release_seat") == "on",
            },
            TicketTypeUpdate,
        )
    except msgspec.ValidationError as error:
        result.errors["form"] = f"The ticket type could not be read: {error}."
    return result


# --- check-in lists ----------------------------------------------------------------------------


def rule_problem(text: str) -> tuple[object, str | None]:
    """A check-in rule from its JSON text, checked as the evaluator checks it; or a sentence
    naming the problem and where it is."""
    if not text.strip():
        return None, None
    if len(text) > RULE_TEXT_MAX:
        return None, f"The rule is too long: at most {RULE_TEXT_MAX:,} characters."
    try:
        rule = json.loads(text)
    except json.JSONDecodeError as error:
        return None, (
            f"The rule is not valid JSON: {error.msg.lower()} at line {error.lineno}, "
            f"column {error.colno}."
        )
    except (ValueError, RecursionError):
        return None, "The rule is not valid JSON: a number is too long or it is nested too deeply."
    try:
        check_rule(rule)
    except RuleError as error:
        return None, str(error)
    # A trial run finds what no entry could ever pass (an unknown operator or variable on the
    # path it takes); what depends on the ticket and the time is left to the check-in.
    trial = evaluate_rule(
        rule, RuleFacts(now=_TRIAL_TIME, tz=ZoneInfo("UTC"), ticket_type="", gate="")
    )
    if trial.error is not None and "unknown" in trial.error:
        return None, trial.error
    return rule, None


def _windows(
    text: str, zone: ZoneInfo | None
) -> tuple[list[dict[str, datetime | None]], str | None]:
    windows: list[dict[str, datetime | None]] = []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > wire.MAX_LIST_WINDOWS:
        return [], f"A list has at most {wire.MAX_LIST_WINDOWS} windows."
    for number, line in enumerate(lines, start=1):
        where = f"Line {number} of the windows"
        opens_text, sep, closes_text = line.partition(" to ")
        if not sep and line.startswith("to "):
            opens_text, closes_text = "", line[3:]
        elif not sep:
            return [], f"{where} is not of the form 2027-06-01T18:00 to 2027-06-01T23:00."
        window: dict[str, datetime | None] = {"opens_at": None, "closes_at": None}
        for key, value, what in (
            ("opens_at", opens_text.strip(), "opening time"),
            ("closes_at", closes_text.strip(), "closing time"),
        ):
            if value:
                moment, problem = _local_time(value, zone, what)
                if problem:
                    return [], f"{where}: {problem[0].lower()}{problem[1:]}"
                window[key] = moment
        opens, closes = window["opens_at"], window["closes_at"]
        if opens is not None and closes is not None and closes <= opens:
            return [], f"{where}: the list must close after it opens."
        windows.append(window)
    return windows, None


def checkin_list_form(
    form: Mapping[str, str], ticket_type_ids: Sequence[str], zone: ZoneInfo
) -> FormResult[wire.CheckinListCreate]:
    """A check-in list from its form (new or edited), or a sentence per wrong field. The
    event's ticket types are checkboxes ``ticket_type_<id>``; gates a comma-separated text;
    windows a line each in the event's time zone; the rule JSON."""
    result: FormResult[wire.CheckinListCreate] = FormResult()
    errors = result.errors
    name = _text(form, "name")
    problem = _name(name, "list's name")
    if problem is None and len(name) > wire.CHECKIN_LIST_NAME_MAX:
        problem = f"The list's name may be at most {wire.CHECKIN_LIST_NAME_MAX} characters long."
    if problem:
        errors["name"] = problem
    gates = [gate.strip() for gate in _text(form, "gates").split(",") if gate.strip()]
    if len(gates) > wire.MAX_LIST_GATES:
        errors["gates"] = f"A list names at most {wire.MAX_LIST_GATES} gates."
    for gate in gates:
        if len(gate) > wire.GATE_NAME_MAX or not gate.isprintable():
            errors["gates"] = (
                f"A gate's name is one line of at most {wire.GATE_NAME_MAX} characters."
            )
    zone_name = _text(form, "zone")
    if len(zone_name) > ZONE_NAME_MAX or not zone_name.isprintable():
        errors["zone"] = f"The zone's name is one line of at most {ZONE_NAME_MAX} characters."
    reentry = {"event": None, "yes": True, "no": False}
    choice = _text(form, "allow_reentry") or "event"
    if choice not in reentry:
        errors["allow_reentry"] = "Choose whether the list lets people in again."
    windows, problem = _windows(form.get("windows", "")[: WINDOWS_TEXT_MAX + 1], zone)
    if problem:
        errors["windows"] = problem
    rule, problem = rule_problem(form.get("rules", ""))
    if problem:
        errors["rules"] = problem
    explanation = _text(form, "explanation")
    if len(explanation) > EXPLANATION_MAX or not explanation.isprintable():
        errors["explanation"] = (
            f"The explanation is one line of at most {EXPLANATION_MAX} characters."
        )
    if errors:
        return result
    try:
        result.value = msgspec.convert(
            {
                "name": name,
                "ticket_type_ids": [
                    kind for kind in ticket_type_ids if form.get(f"ticket_type_{kind}") == "on"
                ],
                "gates": gates,
                "zone": zone_name or None,
                "allow_reentry": reentry.get(choice),
                "allow_multiple_entries": form.get("allow_multiple_entries") == "on",
                "windows": windows,
                "rules": rule,
                "explanation": explanation or None,
            },
            wire.CheckinListCreate,
        )
    except msgspec.ValidationError as error:
        errors["form"] = f"The list could not be read: {error}."
    return result


def _pretix_mapping(
    text: str, ticket_types: Mapping[str, str]
) -> tuple[dict[str, dict[str, object]], str | None]:
    mapping: dict[str, dict[str, object]] = {"products": {}, "variations": {}, "gates": {}}
    by_name = {name.casefold(): kind for name, kind in ticket_types.items()}
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > MAPPING_LINES_MAX:
        return mapping, f"Give at most {MAPPING_LINES_MAX} lines."
    for number, line in enumerate(lines, start=1):
        where = f"Line {number} of the mapping"
        found = _MAPPING_LINE.fullmatch(line)
        if found is None:
            return mapping, f"{where} is not of the form product 12 = Standing."
        what, pretix_id, ours = found["what"].lower(), found["id"], found["ours"].strip()
        if what == "gate":
            if len(ours) > wire.GATE_NAME_MAX:
                return (
                    mapping,
                    f"{where}: a gate's name is at most {wire.GATE_NAME_MAX} characters.",
                )
            mapping["gates"][pretix_id] = ours
            continue
        names = [n.strip() for n in ours.split(",") if n.strip()]
        unknown = [n for n in names if n.casefold() not in by_name]
        if unknown:
            return mapping, f"{where}: the event has no ticket type named {unknown[0][:60]!r}."
        if not names:
            return mapping, f"{where}: name one of the event's ticket types."
        key = "products" if what == "product" else "variations"
        mapping[key][pretix_id] = [by_name[n.casefold()] for n in names]
    return mapping, None


def pretix_import_form(
    form: Mapping[str, str], ticket_types: Mapping[str, str]
) -> FormResult[PretixImport]:
    """A pretix import from its form: the list as pretix's API returns it (JSON), and which
    of our ticket types (by name, from ``ticket_types``: name → id) and gates each pretix id
    stands for, a line each: ``product 12 = Standing, VIP``, ``variation 7 = VIP``,
    ``gate 3 = North``."""
    result: FormResult[PretixImport] = FormResult()
    errors = result.errors
    raw = form.get("pretix_list", "")
    pretix: object = None
    if not raw.strip():
        errors["pretix_list"] = "Paste the check-in list as pretix's API returns it."
    elif len(raw) > PRETIX_TEXT_MAX:
        errors["pretix_list"] = f"The pasted list is too long: at most {PRETIX_TEXT_MAX:,}."
    else:
        try:
            pretix = json.loads(raw)
        except json.JSONDecodeError as error:
            errors["pretix_list"] = (
                f"The pasted list is not valid JSON: {error.msg.lower()} at line "
                f"{error.lineno}, column {error.colno}."
            )
        except (ValueError, RecursionError):
            errors["pretix_list"] = "The pasted list is not valid JSON."
    mapping, problem = _pretix_mapping(form.get("mapping", ""), ticket_types)
    if problem:
        errors["mapping"] = problem
    if not errors and not mapping["products"] and not mapping["variations"]:
        errors["mapping"] = "Map at least one pretix product to a ticket type of the event."
    if errors:
        return result
    try:
        result.value = msgspec.convert({"list": pretix, "mapping": mapping}, PretixImport)
    except msgspec.ValidationError as error:
        errors["mapping"] = f"The mapping could not be read: {error}."
    return result
