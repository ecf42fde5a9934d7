"""Importing a pretix check-in list: its API shape (``GET /api/v1/organizers/…/checkinlists/``)
becomes our list create request, its rule kept as it is but for the ids in it.

pretix names products, variations and gates by its own numeric ids; a ``PretixMapping`` given at
import says which of our ticket types (and gates) each stands for. A product may stand for
several ticket types (one per variation, say): a ``lookup`` of it in an ``objectList`` becomes
one lookup per ticket type, so ``inList`` still asks "is the ticket's type one of these". An id
the mapping does not know is an error naming every such id: a list that silently admitted fewer
tickets than in pretix would be worse than no import. docs/checkin-lists.md, "Importing from
pretix", lists what is carried over and what is not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from shared import wire
from shared.checkin_rules import RuleError, check_rule


class PretixImportError(ValueError):
    """A pretix check-in list that cannot be imported; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class PretixMapping:
    """pretix ids (as text: "12") → ours."""

    #: pretix product id → our ticket type ids.
    products: Mapping[str, Sequence[str]]
    #: pretix variation id → our ticket type ids.
    variations: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: pretix gate id → our gate name.
    gates: Mapping[str, str] = field(default_factory=dict)


def import_pretix_list(data: object, mapping: PretixMapping) -> wire.CheckinListCreate:  # noqa: PLR0912
    """Our create request for the pretix check-in list ``data`` (decoded JSON). Raises
    ``PretixImportError`` naming the field for anything it cannot carry over."""
    if not isinstance(data, Mapping):
        raise PretixImportError("A pretix check-in list is a JSON object.")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise PretixImportError("name: a pretix check-in list needs a name.")
    unknown: dict[str, list[str]] = {"product": [], "variation": [], "gate": []}

    ticket_type_ids: list[str] = []
    if not _flag(data, "all_products", default=True):
        products = data.get("limit_products", [])
        if not isinstance(products, list):
            raise PretixImportError("limit_products: a list of product ids is needed.")
        for product in products:
            ticket_type_ids.extend(_ours("product", product, mapping, unknown))
        if not ticket_type_ids and not unknown["product"]:
            raise PretixImportError("limit_products: the list admits no product.")

    gates: list[str] = []
    raw_gates = data.get("gates", [])
    if not isinstance(raw_gates, list):
        raise PretixImportError("gates: a list of gate ids is needed.")
    for gate in raw_gates:
        gates.extend(_ours("gate", gate, mapping, unknown))

    rules = data.get("rules")
    if rules == {}:
        rules = None
    if rules is not None:
        try:
            check_rule(rules)
        except RuleError as error:
            raise PretixImportError(f"rules: {error}") from None
        rules = _map_rule(rules, mapping, unknown)

    missing = [f"{kind} {', '.join(ids)}" for kind, ids in unknown.items() if ids]
    if missing:
        raise PretixImportError(
            "The mapping does not say which of our ticket types or gates stand for pretix's "
            + "; ".join(missing)
            + "."
        )
    allow_multiple = _flag(data, "allow_multiple_entries", default=False)
    request = {
        "name": name.strip()[: wire.CHECKIN_LIST_NAME_MAX],
        "ticket_type_ids": sorted(set(ticket_type_ids)),
        "gates": sorted(set(gates)),
        "allow_reentry": _flag(data, "allow_entry_after_exit", default=True),
        "allow_multiple_entries": allow_multiple,
        "rules": rules,
    }
    try:
        return msgspec.convert(request, wire.CheckinListCreate)
    except msgspec.ValidationError as error:
        raise PretixImportError(str(error)) from None


def _flag(data: Mapping[object, object], key: str, *, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise PretixImportError(f"{key}: true or false is needed.")
    return value


def _ours(
    kind: str, pretix_id: object, mapping: PretixMapping, unknown: dict[str, list[str]]
) -> list[str]:
    """Our ids for pretix's ``kind`` id, noting it in ``unknown`` when the mapping lacks it."""
    if isinstance(pretix_id, bool) or not isinstance(pretix_id, (int, str)):
        raise PretixImportError(f"{kind}: {str(pretix_id)[:40]!r} is not a pretix id.")
    key = str(pretix_id)
    if kind == "gate":
        gate = mapping.gates.get(key)
        if gate is None:
            unknown[kind].append(key)
            return []
        return [gate]
    table = mapping.products if kind == "product" else mapping.variations
    ours = table.get(key)
    if not ours:
        unknown[kind].append(key)
        return []
    return list(ours)


def _map_rule(node: object, mapping: PretixMapping, unknown: dict[str, list[str]]) -> object:
    """``node`` with every pretix id in a ``lookup`` replaced by ours."""
    if isinstance(node, list):
        return [_map_rule(item, mapping, unknown) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1 and "objectList" in node and isinstance(node["objectList"], list):
        items: list[object] = []
        for item in node["objectList"]:
            items.extend(_map_lookups(item, mapping, unknown))
        return {"objectList": items}
    if len(node) == 1 and "lookup" in node:
        mapped = _map_lookups(node, mapping, unknown)
        if len(mapped) > 1:
            raise PretixImportError(
                "rules: a lookup outside an objectList stands for several ticket types."
            )
        return mapped[0] if mapped else node
    return {key: _map_rule(value, mapping, unknown) for key, value in node.items()}


def _map_lookups(
    node: object, mapping: PretixMapping, unknown: dict[str, list[str]]
) -> list[object]:
    if not (isinstance(node, dict) and len(node) == 1 and "lookup" in node):
        return [_map_rule(node, mapping, unknown)]
    args = node["lookup"]
    if not isinstance(args, list) or len(args) < 2 or args[0] not in unknown:
        raise PretixImportError("rules: a lookup is [kind, id, label] with kind product, …")
    kind = args[0]
    label = args[2] if len(args) > 2 else ""
    return [{"lookup": [kind, ours, label]} for ours in _ours(kind, args[1], mapping, unknown)]
