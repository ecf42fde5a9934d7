"""Unit tests of the observability pieces that need no service: readiness caching and time-outs,
the log formatter, the settings, the metric helpers and the multiprocess directory."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

import pytest

from shared.domain import VerdictReason, VerdictResult
from shared.wire import Verdict
from sync_server.observability import metrics
from sync_server.observability.logs import formatter, logging_config
from sync_server.observability.readiness import Readiness
from sync_server.settings import Settings, SettingsError
from tests.sync_server.helpers import sample_value

DEV = {"GATEHOUSE_JWT_SECRET": "s" * 32, "GATEHOUSE_MASTER_KEY": "A" * 43}


class FakeProbe:
    def __init__(self, name: str, *, required: bool = False, delay: float = 0.0) -> None:
        self.name = name
        self.required = required
        self.delay = delay
        self.answer: bool | Exception = True
        self.calls = 0
        self.resets = 0

    async def check(self) -> bool | None:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def reset(self) -> None:
        self.resets += 1

    async def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- readiness ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_readiness_probes_at_most_once_per_period_however_many_ask() -> None:
    database, cache = FakeProbe("postgres", required=True, delay=0.01), FakeProbe("redis")
    clock = Clock()
    readiness = Readiness([database, cache], cache_seconds=2.0, monotonic=clock)
    reports = await asyncio.gather(*(readiness.report() for _ in range(20)))
    assert database.calls == cache.calls == 1
    assert all(r is reports[0] for r in reports)
    clock.now += 1.9
    await readiness.report()
    assert database.calls == 1
    clock.now += 0.2
    await readiness.report()
    assert database.calls == 2


@pytest.mark.anyio
async def test_readiness_overall_status_follows_the_required_dependency() -> None:
    database, cache = FakeProbe("postgres", required=True), FakeProbe("redis")
    readiness = Readiness([database, cache], cache_seconds=0)
    assert (await readiness.report()).status == "ready"

    cache.answer = False  # e.g. a link that reports "not answering" without raising
    report = await readiness.report()
    assert (report.status, report.http_status) == ("degraded", 200)
    assert report.checks["redis"].error == "did not answer"
    assert cache.resets == 1

    database.answer = ConnectionRefusedError(111, "Connection refused")
    report = await readiness.report()
    assert (report.status, report.http_status) == ("not_ready", 503)
    assert report.checks["postgres"].error == "connection refused"


@pytest.mark.anyio
async def test_a_hanging_dependency_is_down_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hung = FakeProbe("rabbitmq", delay=10)
    readiness = Readiness(
        [FakeProbe("postgres", required=True), hung], timeout=0.05, cache_seconds=0
    )
    with caplog.at_level(logging.INFO, "sync_server.observability.readiness"):
        report = await readiness.report()
        check = report.checks["rabbitmq"]
        assert check.status == "down"
        assert check.error == "no answer within 0.05 s"
        assert 40 <= check.latency_ms < 1000
        assert report.status == "degraded"
        # The outage is logged when it starts, not on every probe; its end once too.
        await readiness.report()
        hung.delay = 0
        await readiness.report()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("rabbitmq is down" in m for m in messages) == 1
    assert sum("rabbitmq answers again" in m for m in messages) == 1


# --- logs --------------------------------------------------------------------------------------


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("sync_server.x", logging.WARNING, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_level_logger_time_extras_and_tracebacks() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("it broke", route="/v1/validate", status=500)
        record.exc_info = sys.exc_info()
    line = json.loads(formatter("json").format(record))
    assert line["message"] == "it broke"
    assert line["level"] == "warning"
    assert line["logger"] == "sync_server.x"
    assert line["route"] == "/v1/validate"
    assert line["status"] == 500
    assert line["time"].endswith("Z")
    assert "ValueError: boom" in line["exception"]


def test_console_lines_are_for_people() -> None:
    text = formatter("console").format(_record("hello", route="/health"))
    assert "hello" in text
    assert "route" in text
    assert not text.startswith("{")


def _failing_with_a_secret_in_hand() -> None:
    ticket_code = "GH1-LOCAL-SECRET-CODE"  # noqa: F841  # what a frame's locals would show
    raise ValueError("boom")


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_traceback_shows_no_local_variables(log_format: str) -> None:
    try:
        _failing_with_a_secret_in_hand()
    except ValueError:
        record = _record("unhandled error on POST /v1/validate")
        record.exc_info = sys.exc_info()
    text = formatter(log_format).format(record)
    assert "ValueError: boom" in text
    assert "_failing_with_a_secret_in_hand" in text
    assert "GH1-LOCAL-SECRET-CODE" not in text


def test_logging_config_is_usable_by_dictconfig() -> None:
    config = logging_config("json", "DEBUG")
    assert config["root"]["level"] == "DEBUG"
    assert config["loggers"]["uvicorn.access"]["propagate"] is False
    with pytest.raises(ValueError, match="json or console"):
        formatter("xml")


def test_log_settings_default_to_json_in_production_and_are_checked() -> None:
    assert Settings.from_env(DEV).observability.log_format == "console"
    production = Settings.from_env({**DEV, "GATEHOUSE_ENV": "production"})
    assert production.observability.log_format == "json"
    chosen = Settings.from_env(
        {
            **DEV,
            "GATEHOUSE_LOG_FORMAT": "json",
            "GATEHOUSE_LOG_LEVEL": "debug",
            "GATEHOUSE_ACCESS_LOG": "false",
            "GATEHOUSE_READY_TIMEOUT": "0.5",
        }
    ).observability
    assert (chosen.log_format, chosen.log_level, chosen.access_log) == ("json", "DEBUG", False)
    assert chosen.ready_timeout_seconds == 0.5
    for name, value in (
        ("GATEHOUSE_LOG_FORMAT", "xml"),
        ("GATEHOUSE_LOG_LEVEL", "loud"),
        ("GATEHOUSE_ACCESS_LOG", "maybe"),
        ("GATEHOUSE_READY_TIMEOUT", "soon"),
        ("GATEHOUSE_READY_TIMEOUT", "0"),
    ):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({**DEV, name: value})


# --- metrics -----------------------------------------------------------------------------------


def test_verdicts_are_counted_by_result_and_reason() -> None:
    def count(result: str, reason: str) -> float:
        body, _ = metrics.render()
        found = sample_value(
            body, "gatehouse_verdicts_total", source="online", result=result, reason=reason
        )
        return found or 0.0

    before = count("rejected", "revoked"), count("admitted", "none")
    metrics.observe_verdict(Verdict(result=VerdictResult.REJECTED, reason=VerdictReason.REVOKED))
    metrics.observe_verdict(Verdict(result=VerdictResult.ADMITTED))
    assert (count("rejected", "revoked"), count("admitted", "none")) == (
        before[0] + 1,
        before[1] + 1,
    )


def test_breaker_state_takes_names_or_values() -> None:
    metrics.set_breaker_state("solana_rpc", "half-open")
    body, _ = metrics.render()
    assert sample_value(body, "gatehouse_circuit_breaker_state", service="solana_rpc") == float(
        metrics.BreakerState.HALF_OPEN
    )
    metrics.set_breaker_state("solana_rpc", metrics.BreakerState.OPEN)
    body, _ = metrics.render()
    assert sample_value(body, "gatehouse_circuit_breaker_state", service="solana_rpc") == 2
    with pytest.raises(KeyError):
        metrics.set_breaker_state("solana_rpc", "ajar")


def test_multiprocess_directory_made_for_several_workers_and_cleaned(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    assert metrics.prepare_multiprocess_dir(1) is None
    assert metrics.MULTIPROC_ENV not in os.environ
    made = metrics.prepare_multiprocess_dir(2)
    assert made is not None
    assert os.environ[metrics.MULTIPROC_ENV] == str(made)
    metrics.cleanup_multiprocess_dir(made)
    assert not made.exists()
    assert metrics.MULTIPROC_ENV not in os.environ

    # An operator's directory is kept, but last run's samples in it are not.
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    assert metrics.prepare_multiprocess_dir(4) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
