"""For random check-in lists, rules, histories, moments, gates and directions, the server's
verdict through its API and the scanner's through its offline gate are the same — result,
reason, list, zone entered and the sentence staff read — and both are the shared core's
(``shared.checkin_lists.decide``): issue 16's "same verdict online and offline". Cases are drawn
in the corpus's own format (``testkit.checkin_cases``: rules built from every pretix variable
and operator and ours) and run with the corpus runners: the server's
(``tests.sync_server.checkin_corpus_server``) and the scanner's (``testkit.checkin_offline``);
the core's answer comes from ``testkit.checkin_corpus``, and where no list applies, from the
rules before lists."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from litestar.testing import AsyncTestClient

from shared.clock import ManualClock
from shared.timeline import prior_scan
from sync_server.app import create_app
from sync_server.settings import Settings
from testkit.checkin_cases import cases
from testkit.checkin_corpus import decide_case, read_case
from testkit.checkin_offline import OfflineCorpusGate
from tests.sync_server.checkin_corpus_server import CorpusServer, server_verdict_for
from tests.sync_server.conftest import new_tenant

pytestmark = [pytest.mark.integration]


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


def scanner_verdict(data_dir: Path, raw: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """What the scanner's offline gate says, with the keys the server answered."""
    with OfflineCorpusGate(data_dir) as gate:
        said = gate.verdict_for(raw)
    return {key: said.get(key) for key in keys}


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=cases())
def test_server_and_scanner_give_the_shared_cores_verdict(
    settings: Settings, tmp_path: Path, raw: dict[str, Any]
) -> None:
    wanted = core_verdict(raw)
    server = asyncio.run(_server(settings, raw))
    assert {key: server.get(key) for key in wanted} == wanted
    if server.get("reason") == "already_checked_in":
        # What staff read for a double entry is written by the scanner from the verdict's
        # ``prior`` (time and gate), online and offline alike: not the server's to say.
        server.pop("sentence", None)
    scanner = scanner_verdict(tmp_path / f"gate-{id(raw)}", raw, sorted(server))
    assert scanner == server
