"""For random check-in lists, rules, histories, moments and gates, the server's verdict through
its API is the shared core's (``shared.checkin_lists.decide``, which the scanner's offline gate
calls too): same result, reason, list, zone and sentence (issue 16's "same verdict online and
offline"). Cases are drawn in the corpus's own format and run with the corpus runner
(``tests.sync_server.checkin_corpus_server``); the core's answer comes from
``testkit.checkin_corpus``, and where no list applies, from the rules before lists."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient

from shared.clock import ManualClock
from shared.timeline import prior_scan
from sync_server.app import create_app
from sync_server.settings import Settings
from testkit.checkin_corpus import decide_case, load_cases, read_case
from tests.sync_server.checkin_corpus_server import CorpusServer, server_verdict_for
from tests.sync_server.conftest import new_tenant

pytestmark = [pytest.mark.integration]

TEMPLATE = load_cases()[0]  # its event (Berlin, three days) and ticket types
TYPES = [t["id"] for t in TEMPLATE["ticket_types"]]
MOMENTS = [
    "2026-06-05T19:30:00+02:00",
    "2026-06-06T11:00:00+02:00",
    "2026-06-06T20:00:00+02:00",
    "2026-06-07T01:30:00+02:00",
    "2026-06-07T18:15:00+02:00",
]
RULES: list[Any] = [
    None,
    {},
    {"<": [{"var": "entries_today"}, 1]},
    {"<": [{"var": "entries_number"}, 2]},
    {
        "or": [
            {"==": [{"var": "entries_number"}, 0]},
            {">": [{"var": "minutes_since_last_entry"}, 60]},
        ]
    },
    {"isAfter": [{"var": "now"}, {"buildTime": ["customtime", "18:00"]}, 10]},
    {"inList": [{"var": "product"}, {"objectList": [{"lookup": ["product", "tt-vip", "VIP"]}]}]},
    {"==": [{"var": "event_day_index"}, 2]},
    {"no_such_operator": [1]},
    {"<": [{"var": "entries_days"}, 2]},
]
WINDOWS: list[list[dict[str, str]]] = [
    [],
    [{"opens_at": "2026-06-06T18:00:00+02:00"}],
    [{"opens_at": "2026-06-05T16:00:00+02:00", "closes_at": "2026-06-06T23:00:00+02:00"}],
]


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    lists = []
    for index in range(draw(st.integers(1, 3))):
        lists.append(
            {
                "id": f"l-{'abc'[index]}",
                "name": f"List {'ABC'[index]}",
                "ticket_type_ids": draw(st.lists(st.sampled_from(TYPES), unique=True, max_size=3)),
                "gates": draw(st.lists(st.sampled_from(["Main", "VIP"]), unique=True, max_size=2)),
                "zone": draw(st.sampled_from([None, "lounge", "backstage"])),
                "allow_reentry": draw(st.sampled_from([None, True, False])),
                "allow_multiple_entries": draw(st.booleans()),
                "windows": draw(st.sampled_from(WINDOWS)),
                "rules": draw(st.sampled_from(RULES)),
                "explanation": draw(st.sampled_from([None, "Not now, says the rule."])),
            }
        )
    now = datetime.fromisoformat(draw(st.sampled_from(MOMENTS)))
    gaps = draw(st.lists(st.integers(5, 600), max_size=5, unique=True))
    history = [
        {
            "at": (now - timedelta(minutes=gap)).isoformat(),
            "direction": draw(st.sampled_from(["entry", "entry", "exit"])),
            "list_id": draw(st.sampled_from([None, *(item["id"] for item in lists)])),
            "gate": draw(st.sampled_from(["Main", "VIP"])),
        }
        for gap in sorted(gaps, reverse=True)
    ]
    event = copy.deepcopy(TEMPLATE["event"])
    event["allow_reentry"] = draw(st.booleans())
    return {
        "id": "drawn",
        "event": event,
        "ticket_types": TEMPLATE["ticket_types"],
        "lists": lists,
        "ticket_type_id": draw(st.sampled_from(TYPES)),
        "history": history,
        "now": now.isoformat(),
        "gate": draw(st.sampled_from(["Main", "VIP", "Side"])),
        "direction": draw(st.sampled_from(["entry", "entry", "exit"])),
        "expect": {},
    }


def core_verdict(raw: dict[str, Any]) -> dict[str, Any]:
    """What the shared core says, in the runner's shape: ``decide``, or where no list applies
    (``lists_apply`` false), the rules before lists (an entry of a ticket inside, or that was
    inside when the event allows no re-entry, is ``already_checked_in``)."""
    case = read_case(raw)
    said = decide_case(case)
    if said["lists_apply"]:
        wanted = {k: said[k] for k in ("result", "reason", "list_id")}
        if "sentence" in said:
            wanted["sentence"] = said["sentence"]
        if said["result"] == "admitted" and raw["direction"] == "entry" and said["list_id"]:
            wanted["enters_zone"] = said["enters_zone"]
        return wanted
    collides = raw["direction"] == "entry" and prior_scan(
        list(case.history), allow_reentry=case.plan.allow_reentry
    )
    if collides:
        return {"result": "rejected", "reason": "already_checked_in", "list_id": None}
    return {"result": "admitted", "reason": None, "list_id": None}


async def _server(settings: Settings, raw: dict[str, Any]) -> dict[str, Any]:
    clock = ManualClock(datetime(2026, 6, 5, 12, 0, tzinfo=UTC))
    unlimited = dataclasses.replace(
        settings, rate_limits=dataclasses.replace(settings.rate_limits, scanner=0, manager=0)
    )
    async with AsyncTestClient(app=create_app(unlimited, clock=clock)) as client:
        tenant = await new_tenant(settings, "Agree")
        server = CorpusServer(client, tenant, clock, settings.database.admin_url)
        try:
            return await server_verdict_for(server, raw)
        finally:
            await server.close()


@hypothesis_settings(max_examples=30, deadline=None)
@given(raw=cases())
def test_the_server_gives_the_shared_cores_verdict(settings: Settings, raw: dict[str, Any]) -> None:
    wanted = core_verdict(raw)
    got = asyncio.run(_server(settings, raw))
    assert {key: got.get(key) for key in wanted} == wanted
    assert set(got) <= set(wanted), got  # nothing said that the core did not say
