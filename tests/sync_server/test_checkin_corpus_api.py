"""Every case of the check-in rules corpus through the real server's API (issue 16): the same
expectations the shared core and the scanner's offline gate meet (tests/data/
checkin_rules_corpus.md). The runner is ``tests.sync_server.checkin_corpus_server``."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from shared.clock import ManualClock
from sync_server.app import create_app
from sync_server.settings import Settings
from testkit.checkin_corpus import load_cases
from tests.sync_server.checkin_corpus_server import CorpusServer, server_verdict_for
from tests.sync_server.conftest import TenantHandle

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 6, 5, 12, 0, tzinfo=UTC))


@pytest.fixture
async def server(
    settings: Settings, clock: ManualClock, tenant: TenantHandle
) -> AsyncIterator[CorpusServer]:
    # Hundreds of cases from one manager in a few (server) minutes: no rate limit here.
    unlimited = dataclasses.replace(
        settings,
        rate_limits=dataclasses.replace(settings.rate_limits, scanner=0, manager=0, anonymous=0),
    )
    async with AsyncTestClient(app=create_app(unlimited, clock=clock)) as client:
        runner = CorpusServer(client, tenant, clock, settings.database.admin_url)
        try:
            yield runner
        finally:
            await runner.close()


def _expected(case: dict[str, Any]) -> dict[str, Any]:
    """What the server's answer shows of the case's ``expect``: result, reason, the list the
    scan counted on (or that refused it), the zone an admitted entry enters, the sentence."""
    expect = case["expect"]
    wanted = {"result": expect["result"], "reason": expect["reason"]}
    if expect["lists_apply"]:
        wanted["list_id"] = expect["list_id"]
    else:
        wanted["list_id"] = None
    if "sentence" in expect:
        wanted["sentence"] = expect["sentence"]
    if (
        expect["result"] == "admitted"
        and case["direction"] == "entry"
        and expect.get("enters_zone") is not None
    ):
        wanted["enters_zone"] = expect["enters_zone"]
    return wanted


async def test_every_corpus_case_gets_its_expected_verdict_through_the_api(
    server: CorpusServer,
) -> None:
    cases = load_cases()
    assert len(cases) >= 200
    wrong = {}
    for case in cases:
        got = await server_verdict_for(server, case)
        wanted = _expected(case)
        shown = {key: got.get(key) for key in wanted}
        if shown != wanted:
            wrong[case["id"]] = {"expected": wanted, "server": got}
    assert wrong == {}, f"{len(wrong)} of {len(cases)} cases differ: {wrong}"
