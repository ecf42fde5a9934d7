"""Every case of the check-in rules corpus (tests/data/checkin_rules_corpus.json) through the
scanner's real offline gate: the case's setup applied as the changes feed applies it, the
ticket in the cache, its history as other gates' admissions and this device's own scans, the
gate's clock at the case's moment (testkit.checkin_offline). The verdict — result, reason,
list, zones and, where the case gives it, the sentence staff read — must be the one expected,
as it is through shared.checkin_lists.decide (tests/shared/test_checkin_corpus.py) and through
the server's API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.checkin_corpus import load_cases
from testkit.checkin_offline import OfflineCorpusGate, offline_verdict_for

CASES = load_cases()


@pytest.fixture(scope="module")
def corpus_gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfflineCorpusGate]:
    with OfflineCorpusGate(tmp_path_factory.mktemp("corpus") / "scanner") as gate:
        yield gate


def test_the_corpus_is_the_one_the_issue_asks_for() -> None:
    assert len(CASES) >= 200
    assert len({case["id"] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_the_offline_gate_gives_the_expected_verdict(
    corpus_gate: OfflineCorpusGate, case: dict[str, Any]
) -> None:
    got = corpus_gate.verdict_for(case)
    assert got["mode"] == "offline"
    expected = case["expect"]
    assert {key: got.get(key) for key in expected} == expected, case["about"]


def test_a_fresh_store_gives_the_same_verdict_as_a_reused_one(
    corpus_gate: OfflineCorpusGate, tmp_path: Path
) -> None:
    """The reused store is reset between cases: nothing of one case leaks into the next."""
    for case in CASES[:: len(CASES) // 10]:
        assert offline_verdict_for(case, tmp_path / case["id"]) == corpus_gate.verdict_for(case)
