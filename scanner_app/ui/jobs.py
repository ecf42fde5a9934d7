"""The app's one way to run work off the GUI thread: a job on a named serial queue.

A *job* is a callable that may wait on disk, the network or a decoder. It is submitted to a
``JobQueue`` from the GUI thread and runs on that queue's own thread, one job at a time, in the
order submitted. Its result (or the exception it raised) comes back on the GUI thread, where the
queue calls the job's ``on_done`` (or ``on_failed``), typed by the job's result — the queue's
thread hands it over as a queued call, so the callbacks may touch widgets, and owners re-emit
what their users need as typed signals. ``Job.cancel()`` drops a job: one not yet
started never runs, one running has its outcome dropped. ``shut_down()`` stops a queue when its
owner closes (waiting for the job in progress, or not).

Each owner keeps a queue per kind of work whose order matters to it: the gate's scans (one
queue: verdicts in the order codes were read), the gate's status reads (another, so a slow count
never delays a verdict), the scan log's tallies and its exports, a dialog's requests, the demo's
image reads.

Not jobs: the camera's capture and decode loops (``core.pipeline.FramePipeline``) and the sync
engine's loop (``core.sync.engine.SyncEngine.start``) keep their own threads. They are real-time
streams that run for as long as the camera or the link is up, with their own pacing, stop and
wait; they are in the Qt-free core, which the command line runs without Qt; and they hand what
they find to the app as events (a sighting joins the scan queue as a job; a frame crosses by a
signal), not as one result at the end.

Threads and the garbage collector: a queue's thread starts when work arrives and ends after
``IDLE_EXPIRY_S`` with nothing to do, and it is a daemon, so quitting never waits for a request
stuck on a dead network (an owner whose work must finish, like the gate's scans, waits for it in
``shut_down``). The queue's thread never holds the last reference to a job, its callbacks or its
outcome once it has handed them over (they are kept on the GUI side until delivered), so no Qt
object is ever destroyed on it — the same rule as ``gc_guard``: Qt objects die on the GUI thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QObject, QTimer, Signal

__all__ = ["IDLE_EXPIRY_S", "Job", "JobQueue"]

log = logging.getLogger(__name__)

R = TypeVar("R")

#: A queue's thread ends after this long without work (the next job starts a new one).
IDLE_EXPIRY_S = 10.0


class Job(Generic[R]):
    """One unit of work on a ``JobQueue`` (made by ``JobQueue.submit``)."""

    def __init__(
        self,
        queue_name: str,
        work: Callable[[], R],
        on_done: Callable[[R], object] | None,
        on_failed: Callable[[Exception], object] | None,
    ) -> None:
        self.queue_name = queue_name
        self._work = work
        self._on_done = on_done
        self._on_failed = on_failed
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """Drop this job: if it has not started it never runs; if it runs, its outcome is not
        delivered. Safe from any thread."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


@dataclass(frozen=True, slots=True)
class _Outcome:
    ran: bool
    result: Any = None
    error: Exception | None = None


class _Lane:
    """A queue's state and its thread's loop: plain Python, so the thread touches no Qt object
    but the queued call it posts (``ready``)."""

    def __init__(self, name: str, ready: Callable[[int], None]) -> None:
        self.name = name
        self._ready = ready
        self._numbers = itertools.count(1)
        self.lock = threading.Condition()
        # Guarded by lock:
        self.pending: deque[int] = deque()
        self.outcomes: dict[int, _Outcome] = {}
        #: Every job submitted and not yet delivered, by number: the GUI side's hold on it.
        self.jobs: dict[int, Job[Any]] = {}
        self.running = False
        self.closing = False
        self.thread: threading.Thread | None = None

    def add(self, job: Job[Any]) -> bool:
        with self.lock:
            if self.closing:
                return False
            number = next(self._numbers)
            self.jobs[number] = job
            self.pending.append(number)
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self.serve, name=f"gatehouse-{self.name}", daemon=True
                )
                self.thread.start()
            else:
                self.lock.notify()
        return True

    def serve(self) -> None:
        while True:
            with self.lock:
                if not self.pending and not self.closing:
                    self.lock.wait(IDLE_EXPIRY_S)
                if not self.pending:
                    self.thread = None
                    return
                number = self.pending.popleft()
                job = self.jobs[number]
                work = None if job.cancelled else job._work
                del job
                self.running = work is not None
            outcome = _Outcome(ran=False)
            if work is not None:
                try:
                    outcome = _Outcome(ran=True, result=work())
                except Exception as error:  # every failure is reported on the GUI thread
                    outcome = _Outcome(ran=True, error=error)
                del work
            with self.lock:
                self.outcomes[number] = outcome
                del outcome  # the GUI side holds it now
                self.running = False
                self.lock.notify_all()
            try:
                self._ready(number)
            except RuntimeError:  # the queue's owner was destroyed: nobody to deliver to
                return


class JobQueue(QObject):
    """A named serial queue of jobs with its own thread (see the module docstring).

    Create and use it on the GUI thread; ``submit`` returns at once. A job without ``on_failed``
    whose work raises is logged and reported through ``failed``.
    """

    #: A job without its own ``on_failed`` raised this (GUI thread; already logged).
    failed = Signal(Exception)

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._lane = _Lane(name, self._post)

    def submit(
        self,
        work: Callable[[], R],
        on_done: Callable[[R], object] | None = None,
        on_failed: Callable[[Exception], object] | None = None,
    ) -> Job[R]:
        """Queue ``work``; ``on_done(result)`` or ``on_failed(error)`` follows on the GUI
        thread. After ``shut_down`` the job comes back cancelled and never runs."""
        job = Job(self.name, work, on_done, on_failed)
        if not self._lane.add(job):
            job.cancel()
        return job

    @property
    def busy(self) -> bool:
        """A job is waiting, running, or its outcome is not delivered yet."""
        return bool(self._lane.jobs)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job waits or runs (outcomes may still be on their way to the GUI
        thread). For tests, and before closing what the jobs use. False on timeout."""
        lane = self._lane
        with lane.lock:
            return lane.lock.wait_for(lambda: not lane.pending and not lane.running, timeout)

    def shut_down(self, *, wait: bool = True, cancel_pending: bool = False) -> None:
        """Take no more jobs. ``cancel_pending`` drops those not started; ``wait`` blocks until
        the rest have run (their outcomes are still delivered, by the event loop). Safe to call
        twice."""
        lane = self._lane
        with lane.lock:
            lane.closing = True
            if cancel_pending:
                for number in lane.pending:
                    lane.jobs[number].cancel()
            thread = lane.thread
            lane.lock.notify_all()
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    def _post(self, number: int) -> None:
        """Queue thread: have the GUI thread deliver this job's outcome. A zero-time single
        shot with this queue as context is a queued call on the queue's (the GUI) thread. Not
        a signal: in PySide6 6.12, ``SignalInstance.emit`` returns ``True`` without owning a
        reference to it, so every emit takes one reference from ``True`` and, some ten
        thousand emits later, the interpreter aborts ("bool_dealloc"); a hop per job would
        double the app's emits."""
        QTimer.singleShot(0, self, partial(self._deliver, number))

    def _deliver(self, number: int) -> None:
        lane = self._lane
        with lane.lock:
            outcome = lane.outcomes.pop(number)
            job = lane.jobs.pop(number)
        if not outcome.ran or job.cancelled:
            return
        if outcome.error is None:
            if job._on_done is not None:
                job._on_done(outcome.result)
        elif job._on_failed is not None:
            job._on_failed(outcome.error)
        else:
            log.error("a %s job failed", self.name, exc_info=outcome.error)
            self.failed.emit(outcome.error)
