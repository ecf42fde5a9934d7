"""Console forms read into the domain's own schemas, every problem a sentence for its field.

Each reader is total: whatever a browser (or anyone) posts, it returns either the schema the
domain service takes or the sentences to show next to the fields, never raises."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Generic, TypeVar
from zoneinfo import ZoneInfo

import msgspec

from shared.checkin_lists import event_zone
from shared.wire import TIME_YEARS
from sync_server.domain.events.schemas import EventCreate, TicketTypeCreate

NAME_MAX: Final = 200
CAPACITY_MAX: Final = 10_000_000
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


def event_form(form: Mapping[str, str]) -> FormResult[EventCreate]:
    """``EventCreate`` from the new-event form, or a sentence per wrong field."""
    result: FormResult[EventCreate] = FormResult()
    errors = result.errors
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
    if errors:
        return result
    try:
        result.value = msgspec.convert(
            {
                "name": name,
                "venue": venue,
                "starts_at": starts,
                "ends_at": ends,
                "time_zone": zone_name or "UTC",
                "allow_reentry": form.get("allow_reentry") == "on",
            },
            EventCreate,
        )
    except msgspec.ValidationError as error:  # what the checks above let through, if anything
        errors["form"] = f"The event could not be read: {error}."
    return result


def ticket_type_form(form: Mapping[str, str]) -> FormResult[TicketTypeCreate]:
    """``TicketTypeCreate`` from the add-a-ticket-type form, or a sentence per wrong field."""
    result: FormResult[TicketTypeCreate] = FormResult()
    name = _text(form, "name")
    problem = _name(name, "ticket type's name")
    if problem is not None:
        result.errors["name"] = problem
    raw = _text(form, "capacity")
    capacity: int | None = None
    if not raw:
        result.errors["capacity"] = "Give how many tickets of this type there are."
    elif not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        result.errors["capacity"] = (
            f"Give the capacity as a whole number from 0 to {CAPACITY_MAX:,}."
        )
    else:
        capacity = int(raw)
        if capacity > CAPACITY_MAX:
            result.errors["capacity"] = f"A ticket type holds at most {CAPACITY_MAX:,} tickets."
    if result.errors or capacity is None:
        return result
    try:
        result.value = msgspec.convert({"name": name, "capacity": capacity}, TicketTypeCreate)
    except msgspec.ValidationError as error:
        result.errors["form"] = f"The ticket type could not be read: {error}."
    return result
