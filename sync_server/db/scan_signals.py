"""Which events' scans just changed, told to every process of the server — what the console's
live dashboard waits on.

**How a process learns of scans.** After a transaction that wrote or changed scans commits,
``Database`` hands their event ids to this process's ``ScanSignals.written`` (check-in notes
them with ``scans_written``; nothing is awaited, so the write path gains no round trip). The
process's own listeners hear at once; the other processes (uvicorn workers, other hosts) hear
through Postgres: one ``NOTIFY gatehouse_scans`` carrying the event ids, sent by this process's
own connection right away and then at most every ``publish_every`` seconds however many scans
commit meanwhile — one notification for a burst of thousands of scans. Each process keeps one
connection that both sends its notifications and ``LISTEN``s for the others', opened when it is
first needed, and reopened with backoff when it dies (a restart of Postgres,
``pg_terminate_backend``, a silent network: it is pinged every ``ping_every`` seconds). When it
comes back, every listener is told once that anything may have changed.

**Why not NOTIFY from a trigger, in the writing transaction?** It would be atomic with the
commit, but a notifying commit takes a database-wide lock until it is flushed: 16 clients
inserting one row per transaction made 3,100–5,900 commits/s here without a NOTIFY and
600–970 with one (pgbench, ``docs/console.md``). Admissions already notify for the outbox
relay; rejections and uploads would all queue behind that lock too, and every listening
process would get a notification per transaction. Sent after commit instead, a notification is
lost if the process dies between the commit and the send (at most ``publish_every`` later):
the dashboard also refreshes on its own every few seconds, so it is late, never wrong.

The payload names the sending process (so it ignores its own) and event ids only: nothing
personal, no tenant's data. Who may watch which event is the console's business (it checks
the event under row-level security before it listens).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
from sqlalchemy.engine import make_url

from shared.backoff import Backoff
from sync_server.background import describe

log = logging.getLogger(__name__)

CHANNEL: Final = "gatehouse_scans"
#: Postgres refuses a payload of 8,000 bytes or more; ids go in several notifications past this.
MAX_PAYLOAD: Final = 7_000

#: Called with an event id whose scans changed, or None for "anything may have changed" (after
#: the connection came back). Must only take note: it runs on the event loop, in the
#: connection's callback.
Listener = Callable[[uuid.UUID | None], None]


@dataclass(slots=True)
class SignalStats:
    #: NOTIFY statements sent, and notifications of other processes received.
    published: int = 0
    received: int = 0
    #: Times the connection was (re)opened.
    connections: int = 0
    connected: bool = False
    #: The connection's backend (``pg_stat_activity.pid``) while connected.
    backend_pid: int | None = None
    last_error: str | None = None


def asyncpg_dsn(database_url: str) -> str:
    """An asyncpg DSN from the server's SQLAlchemy URL (``postgresql+asyncpg://``)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def payloads(origin: str, event_ids: Iterable[uuid.UUID]) -> list[str]:
    """The notifications for ``event_ids`` from ``origin``: ``origin:id,id,...`` each below
    ``MAX_PAYLOAD`` bytes."""
    found: list[str] = []
    current: list[str] = []
    size = len(origin) + 1
    for event_id in sorted(event_ids):
        text = str(event_id)
        if current and size + len(text) + 1 > MAX_PAYLOAD:
            found.append(f"{origin}:{','.join(current)}")
            current, size = [], len(origin) + 1
        current.append(text)
        size += len(text) + 1
    if current:
        found.append(f"{origin}:{','.join(current)}")
    return found


def parse(payload: str) -> tuple[str, list[uuid.UUID]]:
    """A notification's sender and event ids; ids that do not read are left out."""
    origin, _, ids = payload.partition(":")
    events = []
    for text in ids.split(","):
        with contextlib.suppress(ValueError):
            events.append(uuid.UUID(text))
    return origin, events


class ScanSignals:
    """This process's end of the scan notifications (see the module's docstring). Create it on
    the event loop that will use it; ``close`` it at shutdown."""

    def __init__(
        self,
        database_url: str,
        *,
        publish_every: float = 0.2,
        ping_every: float = 10.0,
        backoff: Backoff | None = None,
    ) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._publish_every = publish_every
        self._ping_every = ping_every
        self._backoff = backoff or Backoff(0.2, 5.0)
        #: Names this process in its notifications, so it does not hear its own twice.
        self.origin = secrets.token_hex(6)
        self._pending: set[uuid.UUID] = set()
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._listeners: dict[uuid.UUID, set[Listener]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stats = SignalStats()

    # --- what the rest of the server calls ------------------------------------------------

    def written(self, event_ids: frozenset[uuid.UUID]) -> None:
        """After a commit: these events' scans changed. Tells this process's listeners now and
        the other processes soon; never waits."""
        if self._closing.is_set() or not event_ids:
            return
        for event_id in event_ids:
            self._tell(event_id)
        self._pending |= event_ids
        self._wake.set()
        self._start()

    def subscribe(self, event_id: uuid.UUID, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` whenever ``event_id``'s scans change (or anything may have);
        returns the function that stops it."""
        self._listeners.setdefault(event_id, set()).add(listener)
        self._start()

        def unsubscribe() -> None:
            listeners = self._listeners.get(event_id)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._listeners[event_id]

        return unsubscribe

    def stats(self) -> SignalStats:
        return self._stats

    @property
    def listening(self) -> int:
        """How many listeners there are, over all events."""
        return sum(len(found) for found in self._listeners.values())

    async def close(self) -> None:
        """Stop: send what is pending (briefly), close the connection."""
        self._closing.set()
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout=2.0)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    # --- inside ---------------------------------------------------------------------------

    def _start(self) -> None:
        if self._task is None and not self._closing.is_set():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="gatehouse-scan-signals"
            )

    def _tell(self, event_id: uuid.UUID | None) -> None:
        if event_id is None:
            listeners = [f for found in self._listeners.values() for f in found]
        else:
            listeners = list(self._listeners.get(event_id, ()))
        for listener in listeners:
            try:
                listener(event_id)
            except Exception:  # one broken listener must not stop the others
                log.exception("a scan listener failed")

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        origin, event_ids = parse(payload)
        if origin == self.origin:
            return
        self._stats.received += 1
        for event_id in event_ids:
            self._tell(event_id)

    async def _run(self) -> None:
        """Keep the connection open (reconnecting with backoff) and send what is pending."""
        while not self._closing.is_set():
            try:
                connection = await asyncpg.connect(
                    self._dsn,
                    timeout=10,
                    server_settings={"application_name": "gatehouse-scan-signals"},
                )
            except Exception as error:  # the database may be away: wait, retry
                self._failed(error)
                await self._pause(self._backoff.next_delay())
                continue
            lost = asyncio.Event()
            try:
                connection.add_termination_listener(_setter(lost))
                await connection.add_listener(CHANNEL, self._on_notification)
                self._stats.connections += 1
                self._stats.connected = True
                self._stats.backend_pid = connection.get_server_pid()
                self._backoff.reset()
                self._tell(None)  # whatever committed while nobody listened
                await self._serve(connection, lost)
            except Exception as error:
                self._failed(error)
            finally:
                self._stats.connected = False
                self._stats.backend_pid = None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), timeout=2)
            if not self._closing.is_set():
                await self._pause(self._backoff.next_delay())

    async def _serve(self, connection: Any, lost: asyncio.Event) -> None:
        """Send pending ids as they come (then rest ``publish_every``), ping when idle; return
        when closing (after a last send), raise when the connection is lost."""
        while True:
            if lost.is_set():
                raise ConnectionError("the database closed the connection")
            if self._pending:
                batch, self._pending = self._pending, set()
                try:
                    for payload in payloads(self.origin, batch):
                        await asyncio.wait_for(
                            connection.execute("SELECT pg_notify($1, $2)", CHANNEL, payload),
                            timeout=5,
                        )
                        self._stats.published += 1
                except BaseException:
                    self._pending |= batch  # sent again on the next connection
                    raise
                if not self._closing.is_set():
                    await self._pause(self._publish_every)
                continue
            if self._closing.is_set():
                return
            self._wake.clear()
            woke = await self._wait(self._wake, lost, timeout=self._ping_every)
            if not woke and not lost.is_set():
                # Idle: make sure the connection still answers (a silent network drops it).
                await asyncio.wait_for(connection.execute("SELECT 1"), timeout=5)

    async def _wait(self, *events: asyncio.Event, timeout: float) -> bool:
        """Wait for any of ``events`` (True) or ``timeout`` (False)."""
        waiters = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        return bool(done)

    async def _pause(self, seconds: float) -> None:
        """Sleep, or less when closing."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)

    def _failed(self, error: BaseException) -> None:
        self._stats.last_error = describe(error)
        log.warning("scan notifications: %s", self._stats.last_error)


def _setter(event: asyncio.Event) -> Callable[[Any], None]:
    def set_event(_connection: Any) -> None:
        event.set()

    return set_event
