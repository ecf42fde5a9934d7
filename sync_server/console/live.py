"""The live dashboard's feeds: per process, one feed per event being watched, shared by every
browser watching it from this process.

A feed wakes when ``ScanSignals`` says the event's scans changed (a scan validated, uploaded or
undone in this process or any other), makes one fresh message (the counts, rendered once) and
offers it to each of its viewers; a viewer that is slower than the feed only ever gets the
latest message. However many scans arrive, a feed makes at most one message per
``min_interval`` (1 s): at 5,000 scans a second, a viewer still gets one update a second, and
the database one set of count queries per event and process. With no signal at all it
refreshes every ``refresh_every`` seconds anyway (a signal can be lost: see
``sync_server.db.scan_signals``). A message equal to the last is not sent again.

Each viewer is a server-sent-events stream (``stream``): its first message at once, then one
per change, and a comment every ``keepalive`` seconds so that proxies keep the connection.
A stream ends when the browser goes (the generator's ``finally`` takes the viewer off; the
last viewer's going ends the feed and its subscription), after ``lifetime`` (15 minutes: the
browser then opens a new one, which checks the session again), and when the server stops: on
the first SIGTERM or SIGINT (``ended_on_shutdown``), not after uvicorn's 20 s wait for open
connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from types import FrameType
from typing import Any, Final

from litestar.response import ServerSentEventMessage

from sync_server.db.scan_signals import ScanSignals

log = logging.getLogger(__name__)

#: Makes an event's message (a string): called at most once per ``min_interval`` per feed.
Snapshot = Callable[[], Awaitable[str]]

#: The browser waits this long before it connects again after a stream ended (ms).
RETRY_MS: Final = 2000


class _Viewer:
    """One stream's mailbox: only the latest message waits in it."""

    def __init__(self) -> None:
        self.message: str | None = None
        self.ready = asyncio.Event()

    def offer(self, message: str) -> None:
        self.message = message
        self.ready.set()

    def take(self) -> str | None:
        message, self.message = self.message, None
        self.ready.clear()
        return message


class _Feed:
    """One event's feed in this process (see the module's docstring)."""

    def __init__(
        self,
        event_id: uuid.UUID,
        snapshot: Snapshot,
        *,
        min_interval: float,
        refresh_every: float,
        on_empty: Callable[[_Feed], None],
    ) -> None:
        self.event_id = event_id
        self._snapshot = snapshot
        self._min_interval = min_interval
        self._refresh_every = refresh_every
        self._on_empty = on_empty
        self.viewers: set[_Viewer] = set()
        self.latest: str | None = None
        self.dirty = asyncio.Event()
        self.dirty.set()  # the first viewer's first message
        self.snapshots = 0
        self.task: asyncio.Task[None] | None = None
        self.unsubscribe: Callable[[], None] | None = None

    def poke(self, _event_id: uuid.UUID | None = None) -> None:
        self.dirty.set()

    def add(self) -> _Viewer:
        viewer = _Viewer()
        if self.latest is not None:
            viewer.offer(self.latest)
        self.viewers.add(viewer)
        return viewer

    def remove(self, viewer: _Viewer) -> None:
        self.viewers.discard(viewer)
        if not self.viewers:
            self._on_empty(self)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.dirty.wait(), timeout=self._refresh_every)
            self.dirty.clear()
            started = loop.time()
            try:
                message = await self._snapshot()
            except Exception:  # the database may be away: keep the last counts, try again
                log.exception("the dashboard of event %s could not be counted", self.event_id)
                message = None
            self.snapshots += 1
            if message is not None and message != self.latest:
                self.latest = message
                for viewer in list(self.viewers):
                    viewer.offer(message)
            await asyncio.sleep(max(0.0, self._min_interval - (loop.time() - started)))


class LiveDashboards:
    """This process's dashboard feeds. ``end`` ends every stream (the server is stopping)."""

    def __init__(
        self,
        signals: ScanSignals,
        *,
        min_interval: float = 1.0,
        refresh_every: float = 10.0,
        keepalive: float = 15.0,
        lifetime: float = 900.0,
    ) -> None:
        self._signals = signals
        self._lifetime = lifetime
        self._min_interval = min_interval
        self._refresh_every = refresh_every
        self._keepalive = keepalive
        self._feeds: dict[uuid.UUID, _Feed] = {}
        self._ended = asyncio.Event()

    @property
    def feeds(self) -> int:
        return len(self._feeds)

    @property
    def viewers(self) -> int:
        return sum(len(feed.viewers) for feed in self._feeds.values())

    def snapshots(self, event_id: uuid.UUID) -> int:
        """How many messages the event's feed has made (0 without a feed): for tests."""
        feed = self._feeds.get(event_id)
        return 0 if feed is None else feed.snapshots

    def end(self) -> None:
        """End every stream now, and refuse new ones (the server is stopping)."""
        self._ended.set()
        for feed in list(self._feeds.values()):
            self._close(feed)

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def stream(
        self, event_id: uuid.UUID, snapshot: Snapshot
    ) -> AsyncGenerator[ServerSentEventMessage, None]:
        """The event's messages for one browser (``event: counts``), with keep-alive comments,
        until the browser goes or ``end``. ``snapshot`` makes a message when this stream
        starts the event's feed; the caller has checked that the browser may see the event."""
        if self._ended.is_set():
            return
        feed = self._feeds.get(event_id)
        if feed is None:
            feed = self._open(event_id, snapshot)
        viewer = feed.add()
        ended = asyncio.ensure_future(self._ended.wait())
        loop = asyncio.get_running_loop()
        # A stream ends after ``lifetime`` and the browser opens a new one: a session that
        # ended (signed out, expired) stops getting counts within that time.
        close_at = loop.time() + self._lifetime
        try:
            while not self._ended.is_set() and loop.time() < close_at:
                ready = asyncio.ensure_future(viewer.ready.wait())
                try:
                    await asyncio.wait(
                        {ready, ended},
                        timeout=min(self._keepalive, max(0.0, close_at - loop.time())),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    ready.cancel()
                if self._ended.is_set():
                    return
                message = viewer.take()
                if message is None and loop.time() >= close_at:
                    return
                if message is None:
                    yield ServerSentEventMessage(comment="keep-alive", data=None)
                else:
                    yield ServerSentEventMessage(event="counts", data=message)
        finally:
            ended.cancel()
            feed.remove(viewer)

    def _open(self, event_id: uuid.UUID, snapshot: Snapshot) -> _Feed:
        feed = _Feed(
            event_id,
            snapshot,
            min_interval=self._min_interval,
            refresh_every=self._refresh_every,
            on_empty=self._close,
        )
        feed.unsubscribe = self._signals.subscribe(event_id, feed.poke)
        feed.task = asyncio.get_running_loop().create_task(
            feed.run(), name=f"gatehouse-dashboard-{event_id}"
        )
        self._feeds[event_id] = feed
        return feed

    def _close(self, feed: _Feed) -> None:
        if self._feeds.get(feed.event_id) is feed:
            del self._feeds[feed.event_id]
        if feed.unsubscribe is not None:
            feed.unsubscribe()
            feed.unsubscribe = None
        if feed.task is not None:
            feed.task.cancel()
            feed.task = None


@contextlib.contextmanager
def ended_on_shutdown(end: Callable[[], None]) -> Iterator[None]:
    """While inside: the first SIGTERM or SIGINT also calls ``end`` (on the event loop), then
    whatever handled the signal before (uvicorn's graceful shutdown). Uvicorn waits for open
    connections before the app's lifespan ends, so without this an open dashboard would hold
    every shutdown for the whole grace period. Does nothing outside the main thread (a test's
    server in a thread), where signals cannot be handled."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(end)
        before = previous.get(signum)
        if callable(before):
            before(signum, frame)
        elif before == signal.SIG_DFL:  # nobody handled it: what it would have done
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, handle)
    try:
        yield
    finally:
        for restored, before in previous.items():
            if signal.getsignal(restored) is handle:
                signal.signal(restored, before)
