"""The app's one worker pattern (``scanner_app.ui.jobs``): jobs on a named serial queue, run off
the GUI thread one at a time in order, their outcomes delivered on the GUI thread; cancelling and
shutting down."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial

import pytest
from pytestqt.qtbot import QtBot

from scanner_app.ui.jobs import Job, JobQueue


@pytest.fixture
def queue() -> Iterator[JobQueue]:
    jobs = JobQueue("test")
    yield jobs
    jobs.shut_down(wait=True, cancel_pending=True)


def _blocked(
    gate: threading.Event, value: str = "blocked", started: threading.Event | None = None
) -> Callable[[], str]:
    def work() -> str:
        if started is not None:
            started.set()
        assert gate.wait(30)
        return value

    return work


def _noting(ran: list[str], value: str) -> Callable[[], str]:
    def work() -> str:
        ran.append(value)
        return value

    return work


def test_jobs_run_one_at_a_time_in_order_off_the_gui_thread_and_answer_on_it(
    qtbot: QtBot, queue: JobQueue
) -> None:
    gui = threading.current_thread()
    ran_on: list[threading.Thread] = []
    running = 0
    most_at_once = 0
    delivered: list[tuple[int, threading.Thread]] = []
    lock = threading.Lock()

    def work(number: int) -> int:
        nonlocal running, most_at_once
        with lock:
            running += 1
            most_at_once = max(most_at_once, running)
        ran_on.append(threading.current_thread())
        with lock:
            running -= 1
        return number

    for number in range(20):
        queue.submit(
            partial(work, number),
            lambda result: delivered.append((result, threading.current_thread())),
        )
    qtbot.waitUntil(lambda: len(delivered) == 20)
    assert [result for result, _ in delivered] == list(range(20))
    assert all(thread is gui for _, thread in delivered)
    assert all(thread is not gui for thread in ran_on)
    assert {thread.name for thread in ran_on} == {"gatehouse-test"}
    assert most_at_once == 1
    assert not queue.busy


def test_a_failure_reaches_its_own_handler_or_else_the_queues_failed_signal(
    qtbot: QtBot, queue: JobQueue
) -> None:
    def fail() -> None:
        raise ValueError("no such file")

    errors: list[Exception] = []
    queue.submit(fail, on_failed=errors.append)
    qtbot.waitUntil(lambda: len(errors) == 1)
    assert str(errors[0]) == "no such file"

    with qtbot.waitSignal(queue.failed) as reported:
        queue.submit(fail)
    assert isinstance(reported.args[0], ValueError)


def test_a_cancelled_job_never_runs_or_is_never_answered(qtbot: QtBot, queue: JobQueue) -> None:
    gate = threading.Event()
    answers: list[str] = []
    ran: list[str] = []
    running = queue.submit(_blocked(gate), answers.append)
    waiting: Job[str] = queue.submit(_noting(ran, "waiting"), answers.append)
    waiting.cancel()
    running.cancel()  # while it runs: it finishes, but its answer is dropped
    after = queue.submit(lambda: "after", answers.append)
    gate.set()
    qtbot.waitUntil(lambda: answers == ["after"])
    assert ran == []
    assert running.cancelled
    assert waiting.cancelled
    assert not after.cancelled
    qtbot.waitUntil(lambda: not queue.busy)


def test_shutting_down_waits_for_the_running_job_and_takes_no_more(
    qtbot: QtBot, queue: JobQueue
) -> None:
    gate = threading.Event()
    answers: list[str] = []
    queue.submit(_blocked(gate, "first"), answers.append)
    queue.submit(lambda: "second", answers.append)
    gate.set()
    queue.shut_down(wait=True)
    assert queue.wait_idle(0)  # both ran before shut_down returned
    late = queue.submit(lambda: "late", answers.append)
    assert late.cancelled
    qtbot.waitUntil(lambda: answers == ["first", "second"])
    assert not queue.busy


def test_shutting_down_can_drop_the_jobs_not_started(qtbot: QtBot, queue: JobQueue) -> None:
    gate, started = threading.Event(), threading.Event()
    answers: list[str] = []
    ran: list[str] = []
    queue.submit(_blocked(gate, "running", started), answers.append)
    queue.submit(_noting(ran, "waiting"), answers.append)
    assert started.wait(30)
    queue.shut_down(wait=False, cancel_pending=True)
    gate.set()
    qtbot.waitUntil(lambda: not queue.busy)
    assert ran == []
    assert answers == ["running"]
