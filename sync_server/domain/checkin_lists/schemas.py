"""Request and answer shapes of the check-in list API beyond the shared wire ones
(``wire.CheckinListCreate``, ``wire.CheckinListOut``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec

from shared import wire

PretixId = Annotated[str, msgspec.Meta(min_length=1, max_length=64), wire.ONE_LINE]


class CheckinListPatch(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A change to a list: the fields given replace the list's, the rest stay; the result is
    validated as a new list would be (``wire.CheckinListCreate``). ``null`` clears ``zone``,
    ``allow_reentry`` (back to the event's setting), ``rules`` and ``explanation``."""

    name: wire.ListName | msgspec.UnsetType = msgspec.UNSET
    ticket_type_ids: (
        Annotated[list[wire.TicketTypeId], msgspec.Meta(max_length=wire.MAX_LIST_TICKET_TYPES)]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    gates: (
        Annotated[list[wire.GateName], msgspec.Meta(max_length=wire.MAX_LIST_GATES)]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    zone: wire.ZoneName | msgspec.UnsetType | None = msgspec.UNSET
    allow_reentry: bool | msgspec.UnsetType | None = msgspec.UNSET
    allow_multiple_entries: bool | msgspec.UnsetType = msgspec.UNSET
    windows: (
        Annotated[list[wire.CheckinWindow], msgspec.Meta(max_length=wire.MAX_LIST_WINDOWS)]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    rules: wire.RuleJson = msgspec.UNSET
    explanation: wire.Explanation | msgspec.UnsetType | None = msgspec.UNSET


class CheckinListRemoval(msgspec.Struct, kw_only=True, frozen=True):
    """What DELETE did: a list without scans is ``deleted``; one with scans is ``archived`` (it
    stays in the event's setup, so that its scans still name it, and decides nothing)."""

    id: uuid.UUID
    outcome: Literal["deleted", "archived"]


class PretixMappingIn(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Which of our ticket types (and gates) each pretix id stands for."""

    #: pretix product id → our ticket type ids.
    products: dict[PretixId, Annotated[list[wire.TicketTypeId], msgspec.Meta(max_length=50)]]
    #: pretix variation id → our ticket type ids.
    variations: dict[PretixId, Annotated[list[wire.TicketTypeId], msgspec.Meta(max_length=50)]] = (
        msgspec.field(default_factory=dict)
    )
    #: pretix gate id → our gate name.
    gates: dict[PretixId, wire.GateName] = msgspec.field(default_factory=dict)


class PretixImport(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``POST …/checkin-lists/import-pretix``: a check-in list as pretix's API returns it
    (``GET /api/v1/organizers/{o}/events/{e}/checkinlists/{id}/``) and the mapping of its ids."""

    list: Annotated[
        Any, msgspec.Meta(description="The pretix check-in list, as its API returns it.")
    ]
    mapping: PretixMappingIn
