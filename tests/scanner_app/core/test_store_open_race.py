"""Two openers of one new store at the same moment (the app and ``gatehouse-scanner sync``, or
an enrollment thread and the window) both get a working store: switching a new file to the
write-ahead log can answer "database is locked" without waiting, and must be retried."""

from __future__ import annotations

import threading
from pathlib import Path

from scanner_app.core.store import LocalStore
from scanner_app.core.store.state import load_enrollment


def test_two_threads_opening_a_new_store_at_once_both_succeed(tmp_path: Path) -> None:
    failures: list[BaseException] = []
    for attempt in range(40):
        folder = tmp_path / f"store-{attempt}"
        start = threading.Barrier(3)

        def open_it(folder: Path = folder, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                store = LocalStore.open(folder)
                with store.read() as conn:
                    assert load_enrollment(conn) is None
                store.close()
            except BaseException as error:  # collected: the assertion below names it
                failures.append(error)

        threads = [threading.Thread(target=open_it) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
