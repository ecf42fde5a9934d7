"""The live dashboard's plumbing against the real Postgres: scan signals between processes
(two ``ScanSignals`` on one database stand for two uvicorn workers), coalesced at the sender
and at the feed, surviving a killed connection; the feeds' viewers, keep-alives, and their end
when a browser goes or the server stops."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from litestar.response import ServerSentEventMessage
from sqlalchemy import text

from sync_server.console.live import LiveDashboards
from sync_server.db.scan_signals import MAX_PAYLOAD, ScanSignals, parse, payloads
from sync_server.settings import Settings
from tests.sync_server.helpers import connect

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the condition did not come true in time")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def signals(settings: Settings) -> AsyncIterator[ScanSignals]:
    found = ScanSignals(settings.database.url)
    try:
        yield found
    finally:
        await found.close()


def test_notifications_carry_only_ids_and_stay_below_the_limit() -> None:
    events = [uuid.uuid4() for _ in range(500)]
    sent = payloads("abc", events)
    assert len(sent) > 1
    assert all(len(p.encode()) < MAX_PAYLOAD for p in sent)
    heard = [event for p in sent for event in parse(p)[1]]
    assert sorted(heard) == sorted(events)
    assert parse("abc:not-a-uuid," + str(events[0])) == ("abc", [events[0]])


async def test_another_process_hears_of_a_burst_of_scans_in_few_notifications(
    settings: Settings,
) -> None:
    event, quiet = uuid.uuid4(), uuid.uuid4()
    async with signals(settings) as writer, signals(settings) as reader:
        here: list[uuid.UUID | None] = []
        there: list[uuid.UUID | None] = []
        elsewhere: list[uuid.UUID | None] = []
        writer.subscribe(event, here.append)
        reader.subscribe(event, there.append)
        reader.subscribe(quiet, elsewhere.append)
        await eventually(lambda: reader.stats().connected)
        there.clear()  # "anything may have changed", told on connecting
        for _ in range(2000):  # 2,000 commits in a burst
            writer.written(frozenset({event}))
        assert here.count(event) == 2000  # this process's own listeners hear at once
        await eventually(lambda: event in there)
        await asyncio.sleep(0.6)
        # The writer sent one notification now and at most one per 0.2 s after: not 2,000.
        assert writer.stats().published <= 2
        assert 1 <= there.count(event) <= 2
        assert elsewhere in ([], [None])
        assert reader.stats().received == there.count(event)


async def test_a_killed_connection_comes_back_and_says_anything_may_have_changed(
    settings: Settings,
) -> None:
    event = uuid.uuid4()
    async with signals(settings) as writer, signals(settings) as reader:
        heard: list[uuid.UUID | None] = []
        reader.subscribe(event, heard.append)
        writer.subscribe(uuid.uuid4(), lambda _e: None)  # opens the writer's connection
        await eventually(lambda: reader.stats().connected and writer.stats().connected)
        first = reader.stats().backend_pid
        async with connect(settings.database.admin_url) as owner:
            await owner.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        heard.clear()
        await eventually(lambda: reader.stats().connections == 2 and reader.stats().connected)
        assert reader.stats().backend_pid != first
        assert None in heard  # it may have missed scans meanwhile: its listeners recount
        heard.clear()
        writer.written(frozenset({event}))
        await eventually(lambda: event in heard)


async def _next(stream: AsyncIterator[ServerSentEventMessage], timeout: float = 5.0) -> str:
    message = await asyncio.wait_for(stream.__anext__(), timeout)
    return str(message.data) if message.event == "counts" else f"comment:{message.comment}"


async def test_a_feed_makes_at_most_one_message_a_second_for_all_its_viewers(
    settings: Settings,
) -> None:
    event = uuid.uuid4()
    made = 0

    async def snapshot() -> str:
        nonlocal made
        made += 1
        return f"counts {made}"

    async with signals(settings) as scan_signals:
        live = LiveDashboards(scan_signals, min_interval=0.5, refresh_every=60, keepalive=60)
        first, second = live.stream(event, snapshot), live.stream(event, snapshot)
        assert await _next(first) == "counts 1"
        assert await _next(second) == "counts 1"  # the feed's latest, not a second count
        assert (live.feeds, live.viewers, made) == (1, 2, 1)

        loop = asyncio.get_running_loop()
        started = loop.time()
        while loop.time() - started < 1.5:  # 75 commits over 1.5 s
            scan_signals.written(frozenset({event}))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.6)
        # One count per 0.5 s at most, whatever the rate of scans: 3 or 4 in 1.5 s, not 75.
        assert 2 <= made - 1 <= 5
        latest = f"counts {made}"
        got = [await _next(first)]
        while got[-1] != latest:
            got.append(await _next(first))
        assert len(got) <= made - 1  # each viewer gets at most every message, latest last

        await first.aclose()  # the browser went
        assert (live.feeds, live.viewers) == (1, 1)
        await second.aclose()
        assert (live.feeds, live.viewers, scan_signals.listening) == (0, 0, 0)
        settled = made
        scan_signals.written(frozenset({event}))
        await asyncio.sleep(0.2)
        assert made == settled  # nobody watches: nothing is counted


async def test_streams_keep_alive_and_end_when_the_server_stops(settings: Settings) -> None:
    event = uuid.uuid4()

    async def snapshot() -> str:
        return "counts"

    async with signals(settings) as scan_signals:
        live = LiveDashboards(scan_signals, keepalive=0.1, refresh_every=60)
        stream = live.stream(event, snapshot)
        assert await _next(stream) == "counts"
        assert await _next(stream) == "comment:keep-alive"  # nothing changed: proxies hear
        live.end()
        with pytest.raises(StopAsyncIteration):
            await _next(stream)
        assert (live.feeds, live.viewers, scan_signals.listening) == (0, 0, 0)
        with pytest.raises(StopAsyncIteration):  # a stopping server takes no new viewer
            await _next(live.stream(event, snapshot))


async def test_a_stream_ends_after_its_lifetime_so_the_session_is_checked_again(
    settings: Settings,
) -> None:
    async def snapshot() -> str:
        return "counts"

    async with signals(settings) as scan_signals:
        live = LiveDashboards(scan_signals, keepalive=60, lifetime=0.3)
        stream = live.stream(uuid.uuid4(), snapshot)
        assert await _next(stream) == "counts"
        with pytest.raises(StopAsyncIteration):
            await _next(stream, timeout=2)
        assert live.feeds == 0
