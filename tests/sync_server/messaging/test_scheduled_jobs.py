"""Issue 19: the worker runs the scheduled jobs itself (``sync_server.scheduler``) — expiry of
ended events after their grace period, pruning, key-rotation reminders — each under a lease in
``job_leases``, so of several workers one runs a job at a time, at most once per interval.

Against the real Postgres and RabbitMQ; times come from a ``ManualClock``, never from sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from sqlalchemy import text

from shared.clock import ManualClock
from sync_server.db.engine import Database
from sync_server.domain.keys.rotation import keys_due_for_rotation
from sync_server.domain.tickets.services import expire_ended_events
from sync_server.scheduler import RETRY_AFTER, Job, Scheduler
from sync_server.settings import AmqpSettings, JobSettings, Settings
from sync_server.worker import Worker, scheduled_jobs
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import (
    Client,
    buy,
    connect,
    create_event,
    create_ticket_type,
    sample_value,
)
from tests.sync_server.messaging.conftest import running
from tests.sync_server.messaging.rabbit import bound_queue, collect, of_tenants

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

GRACE = timedelta(hours=1)
SERVER = Path(sys.executable).parent / "gatehouse-server"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
async def no_leases(settings: Settings) -> None:
    """The suite shares one database: start every test here with no job run yet."""
    async with connect(settings.database.admin_url) as db:
        await db.execute(text("DELETE FROM job_leases"))
        await db.commit()


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database)
    try:
        yield database
    finally:
        await database.close()


def _settings(settings: Settings, amqp_url: str | None = None) -> Settings:
    return replace(
        settings,
        jobs=JobSettings(expiry_grace=GRACE.total_seconds(), tick=0.05),
        amqp=AmqpSettings(url=amqp_url) if amqp_url else settings.amqp,
    )


async def _sold(
    client: Client, tenant: TenantHandle, quantity: int
) -> tuple[dict[str, Any], list[str]]:
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    response = await buy(client, tenant, ticket_type["id"], quantity)
    assert response.status_code == 201, response.text
    return event, [item["ticket"]["id"] for item in response.json()["tickets"]]


def _ends(event: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(event["ends_at"])


async def _statuses(client: Client, tenant: TenantHandle, ticket_ids: list[str]) -> list[str]:
    found = []
    for ticket_id in ticket_ids:
        response = await client.get(f"/v1/tickets/{ticket_id}", headers=tenant.token())
        found.append(response.json()["status"])
    return found


async def _expired_events(settings: Settings, ticket_ids: list[str]) -> Counter[str]:
    """How many ``ticket.expired`` outbox rows each ticket has."""
    async with connect(settings.database.admin_url) as db:
        rows = await db.execute(
            text(
                "SELECT ticket_id::text FROM outbox WHERE routing_key = 'ticket.expired' "
                "AND ticket_id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": ticket_ids},
        )
        return Counter(row[0] for row in rows)


async def _lease(settings: Settings, job: str) -> Any:
    async with connect(settings.database.admin_url) as db:
        return (
            await db.execute(text("SELECT * FROM job_leases WHERE job = :j"), {"j": job})
        ).one_or_none()


def _job(scheduler: Scheduler, name: str) -> Job:
    return next(job for job in scheduler.jobs if job.name == name)


async def test_the_worker_alone_expires_an_ended_events_tickets_after_the_grace_period(
    client: Client, tenant: TenantHandle, settings: Settings, amqp_url: str, no_leases: None
) -> None:
    """No CLI call: the worker's own scheduler expires the tickets once the event has been over
    for longer than the grace period, and its relay gets one ``ticket.expired`` per ticket to
    RabbitMQ."""
    event, ticket_ids = await _sold(client, tenant, quantity=3)
    clock = ManualClock(_ends(event) + GRACE / 2)
    worker = Worker(_settings(settings, amqp_url), clock=clock)
    async with bound_queue(amqp_url, routing_keys=("ticket.expired",)) as queue:
        # Within the grace period: the event has ended, its tickets still work.
        ran = await worker.scheduler.run_if_due(_job(worker.scheduler, "expire"))
        assert ran is not None
        assert ran.outcome == "succeeded"
        assert await _statuses(client, tenant, ticket_ids) == ["active"] * 3

        clock.set(_ends(event) + GRACE + timedelta(minutes=1))
        async with running(worker):
            arrivals = await collect(queue, mine=of_tenants(tenant.id), expected=3, settle=1.0)
    assert sorted(a.envelope["data"]["ticket_id"] for a in arrivals) == sorted(ticket_ids)
    assert {a.routing_key for a in arrivals} == {"ticket.expired"}
    assert await _statuses(client, tenant, ticket_ids) == ["expired"] * 3
    lease = await _lease(settings, "expire")
    assert lease.holder is None
    assert lease.last_outcome == "succeeded"
    assert lease.last_run_at == clock.now()


async def test_two_workers_racing_expire_each_ticket_once(
    client: Client, tenant: TenantHandle, settings: Settings, no_leases: None
) -> None:
    event, ticket_ids = await _sold(client, tenant, quantity=5)
    clock = ManualClock(_ends(event) + GRACE + timedelta(minutes=1))
    first, second = Database(settings.database), Database(settings.database)
    try:
        a = Scheduler(first, scheduled_jobs(first, _settings(settings)), clock=clock, holder="a")
        b = Scheduler(second, scheduled_jobs(second, _settings(settings)), clock=clock, holder="b")
        ran = await asyncio.gather(a.run_if_due(_job(a, "expire")), b.run_if_due(_job(b, "expire")))
        # One of them got the lease and ran; the other found it held and did nothing.
        assert sorted(r is None for r in ran) == [False, True]
        assert next(r for r in ran if r is not None).outcome == "succeeded"
        # And again, at once: the job is not due until its interval has passed.
        assert await a.run_if_due(_job(a, "expire")) is None
        assert await b.run_if_due(_job(b, "expire")) is None
    finally:
        await first.close()
        await second.close()
    assert await _expired_events(settings, ticket_ids) == Counter(dict.fromkeys(ticket_ids, 1))


async def test_two_worker_processes_expire_an_ended_event_once_per_ticket(
    client: Client,
    tenant: TenantHandle,
    settings: Settings,
    amqp_url: str,
    tmp_path: Path,
    no_leases: None,
) -> None:
    """``gatehouse-server worker`` twice, started together against an event that ended an hour
    ago: one ``ticket.expired`` per ticket reaches RabbitMQ, and one of them ran the job."""
    event, ticket_ids = await _sold(client, tenant, quantity=4)
    async with connect(settings.database.admin_url) as db:
        await db.execute(
            text(
                "UPDATE events SET starts_at = now() - interval '3 hours', "
                "ends_at = now() - interval '1 hour' WHERE id = :e"
            ),
            {"e": event["id"]},
        )
        await db.commit()
    env = {
        "PATH": str(SERVER.parent),
        # This checkout's code, whichever one the virtual environment was installed from.
        "PYTHONPATH": str(ROOT),
        "GATEHOUSE_ENV": "test",
        "GATEHOUSE_CONFIG_DIR": str(tmp_path),
        "GATEHOUSE_DATABASE_URL": settings.database.url,
        "GATEHOUSE_DATABASE_ADMIN_URL": settings.database.admin_url,
        "GATEHOUSE_JWT_SECRET": settings.auth.jwt_secret,
        "GATEHOUSE_MASTER_KEY": base64.urlsafe_b64encode(settings.master_key).decode(),
        "GATEHOUSE_AMQP_URL": amqp_url,
        "GATEHOUSE_REDIS_KEY_PREFIX": settings.redis.key_prefix,
        "GATEHOUSE_LOG_FORMAT": "console",
        "GATEHOUSE_EXPIRY_GRACE": "1800",
    }
    async with bound_queue(amqp_url, routing_keys=("ticket.expired",)) as queue:
        processes = [
            await asyncio.create_subprocess_exec(
                str(SERVER), "worker", env=env, stderr=asyncio.subprocess.PIPE
            )
            for _ in range(2)
        ]
        try:
            arrivals = await collect(queue, mine=of_tenants(tenant.id), expected=4, settle=2.0)
        finally:
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            logs = []
            for process in processes:
                try:
                    await asyncio.wait_for(process.wait(), 20)
                finally:
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
                assert process.stderr is not None
                logs.append((await process.stderr.read()).decode())
    assert sorted(a.envelope["data"]["ticket_id"] for a in arrivals) == sorted(ticket_ids)
    assert await _expired_events(settings, ticket_ids) == Counter(dict.fromkeys(ticket_ids, 1))
    assert [process.returncode for process in processes] == [0, 0], logs
    assert sum(log.count("job expire succeeded") for log in logs) == 1, logs
    assert "Traceback" not in "".join(logs)


async def test_expiry_itself_announces_each_ticket_once_even_without_the_lease(
    client: Client, tenant: TenantHandle, settings: Settings, no_leases: None
) -> None:
    """Defence in depth (``gatehouse-server expire`` by hand while the worker runs): the expiry
    path takes each ticket ``FOR UPDATE SKIP LOCKED`` and only while it is live."""
    event, ticket_ids = await _sold(client, tenant, quantity=5)
    now = _ends(event) + GRACE + timedelta(minutes=1)
    first, second = Database(settings.database), Database(settings.database)
    try:
        await asyncio.gather(
            expire_ended_events(first, now, grace=GRACE),
            expire_ended_events(second, now, grace=GRACE),
        )
    finally:
        await first.close()
        await second.close()
    assert await _expired_events(settings, ticket_ids) == Counter(dict.fromkeys(ticket_ids, 1))


async def test_a_dead_workers_lease_runs_out_and_another_worker_takes_over(
    settings: Settings, database: Database, no_leases: None
) -> None:
    clock = ManualClock()
    calls: list[datetime] = []

    async def work(now: datetime) -> Mapping[str, int]:
        calls.append(now)
        return {"done": 1}

    job = Job("test-lease", timedelta(minutes=10), work)
    lease = timedelta(minutes=5)
    # A worker took the lease and died mid-run: it never gave it back.
    async with connect(settings.database.admin_url) as db:
        await db.execute(
            text(
                "INSERT INTO job_leases (job, holder, leased_until) "
                "VALUES ('test-lease', 'dead', :u)"
            ),
            {"u": clock.now() + lease},
        )
        await db.commit()
    other = Scheduler(database, [job], clock=clock, holder="other", lease=lease)
    assert await other.run_if_due(job) is None  # still held
    assert calls == []

    clock.advance(lease.total_seconds())
    ran = await other.run_if_due(job)
    assert ran is not None
    assert (ran.outcome, ran.counts) == ("succeeded", {"done": 1})
    assert calls == [clock.now()]
    row = await _lease(settings, "test-lease")
    assert (row.holder, row.leased_until, row.last_outcome) == (None, None, "succeeded")

    # At most once per interval, whoever asks.
    clock.advance(job.every.total_seconds() - 1)
    assert await other.run_if_due(job) is None
    clock.advance(1)
    assert await other.run_if_due(job) is not None
    assert len(calls) == 2


async def test_a_long_run_keeps_its_lease_and_no_other_worker_starts_the_job(
    settings: Settings, database: Database, no_leases: None
) -> None:
    """A run longer than its lease renews it: another worker asking after the first lease
    would have run out still finds the job held."""
    clock = ManualClock()
    lease = timedelta(seconds=0.3)
    started, finish = asyncio.Event(), asyncio.Event()
    runs: list[str] = []

    def work_of(name: str) -> Job:
        async def work(now: datetime) -> Mapping[str, int]:
            runs.append(name)
            started.set()
            await finish.wait()
            return {}

        return Job("test-long", timedelta(minutes=10), work)

    long = Scheduler(database, [work_of("long")], clock=clock, holder="long", lease=lease)
    other = Scheduler(database, [work_of("other")], clock=clock, holder="other", lease=lease)
    run = asyncio.create_task(long.run_if_due(long.jobs[0]))
    await asyncio.wait_for(started.wait(), 20)
    first_until = (await _lease(settings, "test-long")).leased_until
    clock.advance(lease.total_seconds() * 10)  # well past the lease it took
    # Wait for the next renewal, which moves the lease past the clock's new time.
    for _ in range(400):
        row = await _lease(settings, "test-long")
        if row.leased_until > first_until:
            break
        await asyncio.sleep(0.05)
    assert row.holder == "long"
    assert row.leased_until > clock.now()
    assert await other.run_if_due(other.jobs[0]) is None
    finish.set()
    ran = await asyncio.wait_for(run, 20)
    assert ran is not None
    assert ran.outcome == "succeeded"
    assert runs == ["long"]


async def test_a_run_whose_lease_was_taken_over_is_cancelled(
    settings: Settings, database: Database, no_leases: None
) -> None:
    """A worker stalled past its lease must not go on beside the one that took the job over."""
    clock = ManualClock()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def work(now: datetime) -> Mapping[str, int]:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {}

    job = Job("test-stolen", timedelta(minutes=10), work)
    slow = Scheduler(database, [job], clock=clock, holder="slow", lease=timedelta(seconds=0.3))
    run = asyncio.create_task(slow.run_if_due(job))
    await asyncio.wait_for(started.wait(), 20)
    async with connect(settings.database.admin_url) as db:  # another worker took it over
        await db.execute(text("UPDATE job_leases SET holder = 'fast' WHERE job = 'test-stolen'"))
        await db.commit()
    ran = await asyncio.wait_for(run, 20)
    assert ran is not None
    assert ran.outcome == "lost"
    assert cancelled.is_set()
    assert (await _lease(settings, "test-stolen")).holder == "fast"  # left to its new holder
    assert slow.stats().lost == 1


async def test_a_failed_run_is_recorded_and_retried_sooner_than_the_interval(
    settings: Settings, database: Database, no_leases: None
) -> None:
    clock = ManualClock()
    attempts: list[datetime] = []

    async def work(now: datetime) -> Mapping[str, int]:
        attempts.append(now)
        if len(attempts) == 1:
            raise RuntimeError("the first run breaks")
        return {}

    job = Job("test-failing", timedelta(hours=1), work)
    scheduler = Scheduler(database, [job], clock=clock, holder="w")
    ran = await scheduler.run_if_due(job)
    assert ran is not None
    assert ran.outcome == "failed"
    assert (await _lease(settings, "test-failing")).last_outcome == "failed"
    clock.advance(RETRY_AFTER.total_seconds() - 1)
    assert await scheduler.run_if_due(job) is None
    clock.advance(1)
    ran = await scheduler.run_if_due(job)
    assert ran is not None
    assert ran.outcome == "succeeded"
    assert len(attempts) == 2


async def test_each_run_is_one_log_line_and_metrics(
    client: Client,
    tenant: TenantHandle,
    settings: Settings,
    database: Database,
    no_leases: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler = Scheduler(database, scheduled_jobs(database, _settings(settings)), holder="w")
    runs_before = (
        sample_value(
            generate_latest(), "gatehouse_job_runs_total", job="prune", outcome="succeeded"
        )
        or 0.0
    )
    with caplog.at_level(logging.INFO, logger="sync_server.scheduler"):
        ran = await scheduler.run_if_due(_job(scheduler, "prune"))
    assert ran is not None
    assert ran.outcome == "succeeded"
    lines = [r for r in caplog.records if getattr(r, "job", None) == "prune"]
    assert len(lines) == 1
    line: Any = lines[0]
    assert line.outcome == "succeeded"
    assert set(line.counts) >= {
        "idempotency_keys",
        "outbox",
        "processed_events",
        "console_sessions",
    }
    assert line.duration_s >= 0
    exposed = generate_latest()
    assert (
        sample_value(exposed, "gatehouse_job_runs_total", job="prune", outcome="succeeded")
        == runs_before + 1
    )
    assert (
        sample_value(exposed, "gatehouse_job_last_success_timestamp_seconds", job="prune") or 0
    ) > 0
    assert (sample_value(exposed, "gatehouse_job_duration_seconds_count", job="prune") or 0) >= 1


async def test_the_prune_job_deletes_what_has_expired_and_nothing_else(
    client: Client, tenant: TenantHandle, settings: Settings, database: Database, no_leases: None
) -> None:
    _event, ticket_ids = await _sold(client, tenant, quantity=1)
    user = uuid.uuid4()
    old_sent, new_sent, unsent = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    old_processed, new_processed = uuid.uuid4(), uuid.uuid4()
    async with connect(settings.database.admin_url) as db:
        await db.execute(
            text("INSERT INTO users (id, tenant_id, email) VALUES (:u, :t, :e)"),
            {"u": user, "t": tenant.id, "e": f"{user}@example.org"},
        )
        await db.execute(
            text(
                "INSERT INTO console_sessions (id, tenant_id, user_id, token_hash, expires_at) "
                "VALUES (gen_random_uuid(), :t, :u, 'gone', now() - interval '1 second'), "
                "(gen_random_uuid(), :t, :u, 'kept', now() + interval '1 hour')"
            ),
            {"t": tenant.id, "u": user},
        )
        await db.execute(
            text(
                "INSERT INTO outbox (id, tenant_id, routing_key, payload, sent_at) VALUES "
                "(:old, :t, 'test.pruning', '{}', now() - interval '8 days'), "
                "(:new, :t, 'test.pruning', '{}', now() - interval '6 days'), "
                "(:unsent, :t, 'test.pruning', '{}', NULL)"
            ),
            {"t": tenant.id, "old": old_sent, "new": new_sent, "unsent": unsent},
        )
        # Unsent: never pruned, but the relay must not publish it during this test either.
        await db.execute(
            text("UPDATE outbox SET created_at = now() - interval '30 days' WHERE id = :u"),
            {"u": unsent},
        )
        await db.execute(
            text(
                "INSERT INTO processed_events (consumer, event_id, tenant_id, processed_at) VALUES "
                "('test', :old, :t, now() - interval '8 days'), "
                "('test', :new, :t, now() - interval '6 days')"
            ),
            {"t": tenant.id, "old": old_processed, "new": new_processed},
        )
        await db.commit()

    scheduler = Scheduler(database, scheduled_jobs(database, _settings(settings)), holder="w")
    ran = await scheduler.run_if_due(_job(scheduler, "prune"))
    assert ran is not None
    assert ran.outcome == "succeeded"
    assert ran.counts["console_sessions"] >= 1
    assert ran.counts["outbox"] >= 1
    assert ran.counts["processed_events"] >= 1

    async with connect(settings.database.admin_url) as db:
        sessions = await db.execute(
            text("SELECT token_hash FROM console_sessions WHERE user_id = :u"), {"u": user}
        )
        assert [bytes(r[0]) for r in sessions] == [b"kept"]
        outbox = await db.execute(
            text("SELECT id FROM outbox WHERE tenant_id = :t AND routing_key = 'test.pruning'"),
            {"t": tenant.id},
        )
        assert {r[0] for r in outbox} == {new_sent, unsent}
        processed = await db.execute(
            text("SELECT event_id FROM processed_events WHERE tenant_id = :t"), {"t": tenant.id}
        )
        assert {r[0] for r in processed} == {new_processed}
        # The tickets and their own (unsent or recent) events are untouched.
        purchased = await db.scalar(
            text("SELECT count(*) FROM outbox WHERE ticket_id = CAST(:t AS uuid)"),
            {"t": ticket_ids[0]},
        )
        assert purchased == 1


async def test_the_key_rotation_reminder_fires_for_an_old_key_and_not_a_fresh_one(
    client: Client,
    tenant: TenantHandle,
    settings: Settings,
    database: Database,
    no_leases: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    old, fresh = await create_event(client, tenant), await create_event(client, tenant)
    async with connect(settings.database.admin_url) as db:
        await db.execute(
            text("UPDATE keys SET created_at = now() - interval '91 days' WHERE event_id = :e"),
            {"e": old["id"]},
        )
        await db.commit()

    scheduler = Scheduler(database, scheduled_jobs(database, _settings(settings)), holder="w")
    with caplog.at_level(logging.INFO):
        ran = await scheduler.run_if_due(_job(scheduler, "key-rotation"))
    assert ran is not None
    assert ran.outcome == "succeeded"
    reminded = [
        getattr(r, "event_id", None)
        for r in caplog.records
        if r.getMessage().startswith("ticket key due for rotation")
        and getattr(r, "tenant_id", None) == str(tenant.id)
    ]
    assert reminded == [old["id"]]
    assert ran.counts["events_due"] >= 1
    gauge = sample_value(generate_latest(), "gatehouse_keys_rotation_due_events")
    assert gauge == ran.counts["events_due"]

    # Where managers look: the event's key listing.
    for event, due in ((old, True), (fresh, False)):
        keys = (await client.get(f"/v1/events/{event['id']}/keys", headers=tenant.token())).json()
        assert [k["rotation_due"] for k in keys] == [due, due], keys
    # Rotated: the new keys are fresh, the old ones no longer active.
    rotated = await client.post(f"/v1/events/{old['id']}/keys/rotate", headers=tenant.token())
    assert rotated.status_code in (200, 201), rotated.text
    keys = (await client.get(f"/v1/events/{old['id']}/keys", headers=tenant.token())).json()
    assert not any(k["rotation_due"] for k in keys)
    still_due = await keys_due_for_rotation(database, datetime.now(UTC), timedelta(days=90))
    assert [d.event_id for d in still_due if d.tenant_id == tenant.id] == []


async def _stored(settings: Settings, ticket_ids: list[str]) -> list[str]:
    """The tickets' statuses in the database (the API's reads may come from the Redis ticket
    cache, which the relay's ``ticket.expired`` events refresh: no relay runs between these)."""
    async with connect(settings.database.admin_url) as db:
        rows = await db.execute(
            text("SELECT id::text, status FROM tickets WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": ticket_ids},
        )
        found: dict[str, str] = dict(rows.all())
    return [found[ticket_id] for ticket_id in ticket_ids]


async def _sold_with_grace(
    client: Client, tenant: TenantHandle, grace: timedelta | None, ends_at: datetime
) -> list[str]:
    event = await create_event(
        client,
        tenant,
        starts_at=(ends_at - timedelta(hours=3)).isoformat(),
        ends_at=ends_at.isoformat(),
        expiry_grace_seconds=None if grace is None else int(grace.total_seconds()),
    )
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    response = await buy(client, tenant, ticket_type["id"], 2)
    assert response.status_code == 201, response.text
    return [item["ticket"]["id"] for item in response.json()["tickets"]]


async def test_an_events_own_grace_period_decides_when_its_tickets_expire(
    client: Client, tenant: TenantHandle, settings: Settings, amqp_url: str, no_leases: None
) -> None:
    """Three events ending at the same moment: one with a short grace of its own, one with a
    long one, one without (the worker's default, ``GRACE``). One query picks them all; each
    expires when its own period is over, and the relay announces exactly those tickets."""
    ends = datetime.now(UTC).replace(microsecond=0) + timedelta(days=400)
    short = await _sold_with_grace(client, tenant, timedelta(minutes=10), ends)
    default = await _sold_with_grace(client, tenant, None, ends)
    long = await _sold_with_grace(client, tenant, timedelta(hours=5), ends)
    clock = ManualClock(ends + timedelta(minutes=11))
    worker = Worker(_settings(settings, amqp_url), clock=clock)
    expire = _job(worker.scheduler, "expire")
    async with bound_queue(amqp_url, routing_keys=("ticket.expired",)) as queue:
        # Past the short grace only: the default (1 hour) would still keep these valid.
        assert (await worker.scheduler.run_if_due(expire)) is not None
        assert await _stored(settings, short) == ["expired"] * 2
        assert await _stored(settings, default + long) == ["active"] * 4

        # Past the default, not the long grace (and more than the job's interval later).
        clock.set(ends + GRACE + timedelta(minutes=1))
        assert (await worker.scheduler.run_if_due(expire)) is not None
        assert await _stored(settings, default) == ["expired"] * 2
        assert await _stored(settings, long) == ["active"] * 2

        clock.set(ends + timedelta(hours=5, minutes=1))
        assert (await worker.scheduler.run_if_due(expire)) is not None
        assert await _stored(settings, long) == ["expired"] * 2
        # Counted before the worker runs: its prune job, on a clock this far ahead, may delete
        # the rows as soon as the relay has sent them.
        assert await _expired_events(settings, short + default + long) == Counter(
            dict.fromkeys(short + default + long, 1)
        )
        async with running(worker):
            arrivals = await collect(queue, mine=of_tenants(tenant.id), expected=6, settle=1.0)
    assert sorted(a.envelope["data"]["ticket_id"] for a in arrivals) == sorted(
        short + default + long
    )


async def test_the_cli_grace_is_only_the_default_for_events_without_their_own(
    client: Client,
    tenant: TenantHandle,
    settings: Settings,
    database: Database,
    no_leases: None,
) -> None:
    """``expire_ended_events(grace=...)`` (what ``gatehouse-server expire --grace`` calls): an
    event's own grace wins over it, longer or shorter."""
    ends = datetime.now(UTC).replace(microsecond=0) + timedelta(days=500)
    own_long = await _sold_with_grace(client, tenant, timedelta(days=2), ends)
    own_zero = await _sold_with_grace(client, tenant, timedelta(0), ends)
    default = await _sold_with_grace(client, tenant, None, ends)
    await expire_ended_events(database, ends + timedelta(seconds=1), grace=timedelta(days=1))
    assert await _stored(settings, own_zero) == ["expired"] * 2
    assert await _stored(settings, default + own_long) == ["active"] * 4
    await expire_ended_events(
        database, ends + timedelta(days=1, seconds=1), grace=timedelta(days=1)
    )
    assert await _stored(settings, default) == ["expired"] * 2
    assert await _stored(settings, own_long) == ["active"] * 2
