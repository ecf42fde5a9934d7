"""The check-in rules corpus (tests/data/checkin_rules_corpus.json) run through the real server:
``CorpusServer.verdict_for(case)`` (and ``server_verdict_for``) sets a case up through the API —
its event with time zone and days, its ticket types with their days, its check-in lists, a
ticket of the case's type, a scanner enrolled at the case's gate — gives the ticket the case's
history, moves the server's clock to the case's ``now`` and asks ``POST /v1/validate``. The
answer comes back in the shape of the case's ``expect`` (``testkit.checkin_corpus``), so any
run (the corpus test, a property test of server against scanner) compares it alike.

Cases with the same event, ticket types and lists share one event (and one scanner per gate):
each case has its own ticket, and so its own history.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url

from shared.checkin_lists import GENERAL_AREA
from shared.clock import ManualClock
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import DeviceHandle, buy, enrolled_device

#: A scanner's token lives an hour by the server's clock: one enrolled longer ago than this (or
#: later than the case's ``now``) is replaced by a fresh one.
TOKEN_MARGIN = timedelta(minutes=30)

INSERT_HISTORY = """
INSERT INTO ticket_scans (id, tenant_id, ticket_id, event_id, scanned_by, gate, direction,
                          result, scanned_at, received_at, checkin_list_id, zone)
VALUES ($1, $2, $3, $4, 'corpus', $5, $6, 'admitted', $7, $7, $8, $9)
"""


@dataclass
class _Setup:
    """One event as the cases that share it need it."""

    event_id: str
    types: dict[str, str]  # corpus ticket type id → ours
    lists: dict[str, str]  # corpus list id → ours
    zones: dict[str, str | None]  # corpus list id → its zone
    devices: dict[str, tuple[datetime, DeviceHandle]] = field(default_factory=dict)


def _replace_ids(value: Any, ids: dict[str, str]) -> Any:
    """``value`` (a rule) with every string that is a corpus ticket type id made ours."""
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, list):
        return [_replace_ids(item, ids) for item in value]
    if isinstance(value, dict):
        return {key: _replace_ids(item, ids) for key, item in value.items()}
    return value


class CorpusServer:
    """The server side of corpus runs: an app on a ``ManualClock`` and its owner's database."""

    def __init__(
        self,
        client: AsyncTestClient[Litestar],
        tenant: TenantHandle,
        clock: ManualClock,
        admin_url: str,
    ) -> None:
        self.client, self.tenant, self.clock = client, tenant, clock
        self._admin_url = (
            make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        self._owner: asyncpg.Connection | None = None
        self._setups: dict[str, _Setup] = {}
        self._scan_ids = itertools.count(1)
        self._run = uuid.uuid4().int >> 64

    async def close(self) -> None:
        if self._owner is not None:
            await self._owner.close()

    async def _db(self) -> asyncpg.Connection:
        if self._owner is None:
            self._owner = await asyncpg.connect(self._admin_url)
        return self._owner

    def _manager(self) -> dict[str, str]:
        return self.tenant.token(now=self.clock.now())

    async def _post(self, path: str, body: Any) -> dict[str, Any]:
        response = await self.client.post(path, json=body, headers=self._manager())
        assert response.status_code == 201, (path, response.text)
        answer: dict[str, Any] = response.json()
        return answer

    async def _setup(self, case: dict[str, Any]) -> _Setup:
        names = [t["name"] for t in case["ticket_types"]]
        scanned = next(t for t in case["ticket_types"] if t["id"] == case["ticket_type_id"])
        # Two types of one name (which an event cannot have): the scanned one keeps it.
        named = case["ticket_type_id"] if names.count(scanned["name"]) > 1 else None
        key = json.dumps(
            [case["event"], case["ticket_types"], case["lists"], named], sort_keys=True
        )
        if key in self._setups:
            return self._setups[key]
        event = case["event"]
        created = await self._post(
            "/v1/events",
            {
                "name": "Corpus event",
                "venue": "Corpus venue",
                "starts_at": event["starts_at"],
                "ends_at": event["ends_at"],
                "admission_opens_at": event["admission_at"],
                "allow_reentry": event["allow_reentry"],
                "time_zone": event["tz"],
                "days": event["days"],
            },
        )
        event_id = created["id"]
        # Type names are unique per event; a name only matters in sentences for the scanned
        # ticket's own type, which keeps it.
        types: dict[str, str] = {}
        used: set[str] = set()
        ordered = sorted(case["ticket_types"], key=lambda t: t["id"] != case["ticket_type_id"])
        for kind in ordered:
            name = kind["name"] if kind["name"] not in used else f"{kind['name']} ({kind['id']})"
            used.add(name)
            made = await self._post(
                f"/v1/events/{event_id}/ticket-types",
                {"name": name, "capacity": 10_000, "days": kind["days"]},
            )
            types[kind["id"]] = made["id"]
        # Lists are tried in order of id: made in the corpus ids' order, ours (UUIDv7) keep it.
        lists: dict[str, str] = {}
        for item in sorted(case["lists"], key=lambda x: x["id"]):
            body = {k: v for k, v in item.items() if k not in {"id", "archived"}}
            body["ticket_type_ids"] = [types[t] for t in item["ticket_type_ids"]]
            body["rules"] = _replace_ids(item["rules"], types)
            lists[item["id"]] = (await self._post(f"/v1/events/{event_id}/checkin-lists", body))[
                "id"
            ]
        assert sorted(lists, key=lambda x: lists[x]) == sorted(lists), "list order kept"
        setup = _Setup(
            event_id,
            types,
            lists,
            {item["id"]: item["zone"] for item in case["lists"]},
        )
        for item in case["lists"]:
            if item.get("archived"):
                response = await self.client.delete(
                    f"/v1/events/{event_id}/checkin-lists/{lists[item['id']]}",
                    headers=self._manager(),
                )
                assert response.status_code == 200, response.text
        self._setups[key] = setup
        return setup

    async def _device(self, setup: _Setup, gate: str) -> DeviceHandle:
        now = self.clock.now()
        held = setup.devices.get(gate)
        if held is None or not held[0] <= now < held[0] + TOKEN_MARGIN:
            device = await enrolled_device(self.client, self.tenant.at(now), setup.event_id, gate)
            held = (now, device)
            setup.devices[gate] = held
        return held[1]

    async def verdict_for(self, case: dict[str, Any]) -> dict[str, Any]:
        """What the server says of ``case``, in the shape of its ``expect``."""
        now = datetime.fromisoformat(case["now"])
        self.clock.set(now)
        setup = await self._setup(case)
        bought = await buy(self.client, self.tenant.at(now), setup.types[case["ticket_type_id"]])
        assert bought.status_code == 201, bought.text
        held = bought.json()["tickets"][0]
        ticket = {"id": held["ticket"]["id"], "code": held["code"]}
        db = await self._db()
        tenant_id = self.tenant.id
        for scan in case["history"]:
            list_id = scan["list_id"]
            if list_id is not None and list_id not in setup.lists:
                # A list the case's event no longer has (as the shared reading: no zone).
                setup.lists[list_id] = str(uuid.uuid4())
            await db.execute(
                INSERT_HISTORY,
                uuid.UUID(int=(self._run << 64) + next(self._scan_ids)),
                tenant_id,
                uuid.UUID(ticket["id"]),
                uuid.UUID(setup.event_id),
                scan["gate"],
                scan["direction"],
                datetime.fromisoformat(scan["at"]),
                uuid.UUID(setup.lists[list_id]) if list_id is not None else None,
                setup.zones.get(list_id) if list_id is not None else None,
            )
        if case["history"]:
            await db.execute(
                "UPDATE tickets SET status = 'checked_in' WHERE id = $1", uuid.UUID(ticket["id"])
            )
        device = await self._device(setup, case["gate"])
        response = await self.client.post(
            "/v1/validate",
            json={"code": ticket["code"], "direction": case["direction"]},
            headers=device.headers,
        )
        assert response.status_code in {200, 409, 422}, response.text
        verdict = response.json()
        recorded = await db.fetchrow(
            "SELECT checkin_list_id, zone FROM ticket_scans WHERE id = $1",
            uuid.UUID(verdict["scan_id"]),
        )
        ours = {v: k for k, v in setup.lists.items()}
        list_id = recorded["checkin_list_id"]
        got: dict[str, Any] = {
            "result": verdict["result"],
            "reason": verdict["reason"],
            "list_id": ours.get(str(list_id)) if list_id is not None else None,
        }
        if verdict["result"] == "admitted" and case["direction"] == "entry" and list_id:
            got["enters_zone"] = recorded["zone"] if recorded["zone"] is not None else GENERAL_AREA
        if verdict.get("message") is not None:
            got["sentence"] = verdict["message"]
        return got


async def server_verdict_for(server: CorpusServer, case: dict[str, Any]) -> dict[str, Any]:
    """What the server says of one corpus case (``CorpusServer.verdict_for``)."""
    return await server.verdict_for(case)
