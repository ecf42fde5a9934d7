"""The event's check-in lists as this scanner decides by them (issue 16).

The stored setup (``store.setup``) and the event's details make the ``EventPlan`` that
``shared.checkin_lists.decide`` takes — the same function the server's check-in calls, so the
same history gives the same verdict online and offline. This module only translates: it decides
nothing itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scanner_app.core.store.setup import StoredSetup
from shared import wire
from shared.checkin_lists import (
    GENERAL_AREA,
    CheckinList,
    EventPlan,
    TicketKind,
    event_zone,
    plan_from_setup,
)

log = logging.getLogger(__name__)

#: The type of a ticket the cache does not know (admitted on its signature) or whose type the
#: feed has not said: no list that names ticket types admits it (see ``Gate._decide``).
UNKNOWN_KIND = TicketKind(id="", name="Unknown ticket")
#: How many sync intervals may pass without a successful sync before the status says the lists
#: may be out of date (and never less than ``STALE_AFTER_MIN``).
STALE_AFTER_INTERVALS = 3
STALE_AFTER_MIN = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class AccessPlan:
    """The event's lists, days and ticket types' days, ready for ``decide``."""

    plan: EventPlan
    version: int
    received_at: datetime
    kinds: dict[str, TicketKind] = field(default_factory=dict)

    def kind(self, ticket_type_id: str | None, name: str = "Ticket") -> TicketKind:
        """The type ``decide`` takes for a cached ticket: from the setup, else (a type the setup
        does not list) by ``name``, the ticket's own type name, with no day limits; a ticket
        whose type id the feed has not given is of ``UNKNOWN_KIND``."""
        if ticket_type_id is None:
            return UNKNOWN_KIND
        return self.kinds.get(ticket_type_id) or TicketKind(id=ticket_type_id, name=name)

    def lists_at(self, gate: str) -> list[CheckinList]:
        """The live lists scanned at ``gate``, in the order ``decide`` tries them."""
        return sorted(
            (item for item in self.plan.lists if not item.archived and item.scans_at(gate)),
            key=lambda item: item.id,
        )

    def list_name(self, list_id: str | None) -> str | None:
        for item in self.plan.lists:
            if item.id == list_id:
                return item.name
        return None

    def zones(self) -> list[str]:
        """Every zone a list leads into (``GENERAL_AREA`` for lists without one)."""
        return sorted({item.zone_key for item in self.plan.lists})


def access_plan(gate_event: wire.GateEvent, stored: StoredSetup | None) -> AccessPlan | None:
    """The plan of ``gate_event`` from the stored setup; None when there is no setup for this
    event, or its time zone is not one (the feed's setup is checked before it is stored, so
    only a stored file edited by hand gets here): the gate decides as before lists."""
    if stored is None or stored.setup.event_id != gate_event.event_id:
        return None
    setup = stored.setup
    try:
        plan, kinds = plan_from_setup(
            setup,
            starts_at=gate_event.starts_at,
            ends_at=gate_event.ends_at,
            admission_at=gate_event.admission_opens_at,
            allow_reentry=gate_event.allow_reentry,
        )
    except ValueError as error:
        log.warning("the stored check-in setup has no usable time zone: %s", error)
        return None
    return AccessPlan(plan=plan, version=setup.version, received_at=stored.received_at, kinds=kinds)


def setup_problem(setup: wire.CheckinSetup, event_id: object) -> str | None:
    """Why a setup from the feed cannot be this device's (None: it can)."""
    if setup.event_id != event_id:
        return "it is for another event"
    try:
        event_zone(setup.time_zone)
    except ValueError as error:
        return str(error)
    return None


def zone_label(zone: str | None) -> str:
    """A zone as staff read it: the general area has no name of its own."""
    return "General area" if zone is None or zone == GENERAL_AREA else zone


def gate_label(access: AccessPlan | None, gate: str) -> str | None:
    """What the gate screen says the gate scans, e.g. "VIP list · Backstage"; None when no list
    is scanned here (the gate decides as before lists)."""
    if access is None:
        return None
    lists = access.lists_at(gate)
    if not lists:
        return None
    names = " / ".join(item.name for item in lists)
    zones = sorted({item.zone_key for item in lists})
    noun = "list" if len(lists) == 1 else "lists"
    where = " / ".join(zone_label(zone) for zone in zones)
    return f"{names} {noun} · {where}"


def setup_is_stale(
    *, last_sync_at: datetime | None, now: datetime, interval_seconds: float
) -> bool:
    """True when the last successful sync is so old that the lists may have changed since:
    more than ``STALE_AFTER_INTERVALS`` sync intervals (at least ``STALE_AFTER_MIN``) ago, or
    never."""
    if last_sync_at is None:
        return True
    allowed = max(timedelta(seconds=interval_seconds * STALE_AFTER_INTERVALS), STALE_AFTER_MIN)
    return now - last_sync_at > allowed


def setup_note(
    *,
    stored: StoredSetup | None,
    server_version: int | None,
    has_server: bool,
    last_sync_at: datetime | None,
    now: datetime,
    interval_seconds: float,
) -> tuple[str, bool]:
    """What the status says of the check-in setup, and whether it is a warning.

    The lists may be out of date when the server named another version than the one stored (a
    setup this device could not take, or one that has not come yet), or when the last
    successful sync is older than ``setup_is_stale`` allows. An event that never had lists says
    nothing; a device without a server has nobody to be out of date with.
    """
    if stored is None:
        if has_server and server_version:
            return "Check-in lists not received yet: lists may be out of date", True
        return "", False
    when = stored.received_at.astimezone().strftime("%H:%M")
    text = f"Lists v{stored.version} ({when})"
    if not has_server:
        return text, False
    if server_version is not None and server_version != stored.version:
        return f"{text}, server has v{server_version}: lists may be out of date", True
    if setup_is_stale(last_sync_at=last_sync_at, now=now, interval_seconds=interval_seconds):
        return f"{text}: no recent sync, lists may be out of date", True
    return text, False
