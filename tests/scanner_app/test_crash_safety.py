"""No scan lost, none counted twice: the scanner is killed with SIGKILL at random moments while
it scans and uploads, over and over; every verdict it printed is in its log exactly once, and
after a final sync on the server exactly once, with one standing admission per ticket. An
admission the server recorded for an online question whose answer a kill kept from the app was
never shown: the app undoes it (``NEVER_SHOWN``), and the test checks each undone one is such.

Each round starts the real command (``gatehouse-scanner scan --source - --json``, background
sync on, against a real server), types ticket codes into it as a handheld scanner would, reads
the verdicts it prints (each printed only after its scan was committed) and kills it at a random
moment: during start-up (every fourth round's life counts from the start), mid-scan, mid-upload,
mid-feed (the others' lives count from their first verdict, so that a slow machine's start-up
does not leave them nothing to scan).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scanner_app.core.store import LocalStore
from scanner_app.core.store.scanlog import local_scans
from scanner_app.core.store.scans import NEVER_SHOWN, queue_length, unresolved_online
from scanner_app.core.store.state import GateSettings, save_settings
from scanner_app.core.sync.engine import SyncEngine, enroll
from tests.scanner_app.live_server import BackOffice, LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROUNDS = 40
TICKETS = 40
#: Every fourth round's life counts from the process start, so some kills land in start-up;
#: the others' from the first verdict (waited for at most this long).
START_UP_EVERY = 4
START_UP_LIMIT_S = 20.0


def _scanner_command(data_dir: Path, offline: bool) -> list[str]:
    # The installed console script, next to this interpreter. Offline, every scan is queued
    # and the background sync uploads it while the next ones are scanned; online, each scan is
    # a request to /v1/validate first.
    command = [
        str(Path(sys.executable).parent / "gatehouse-scanner"),
        "scan",
        "--source",
        "-",
        "--json",
        "--data-dir",
        str(data_dir),
    ]
    return [*command, "--offline"] if offline else command


def _round(
    data_dir: Path, codes: list[str], rng: random.Random, *, offline: bool, in_start_up: bool
) -> list[dict[str, object]]:
    """One life of the scanner process, ended by SIGKILL: ``in_start_up``, 0.2–1.6 s after it
    was started (often before it is ready); otherwise 0.2–1.6 s after its first verdict.
    Returns the verdicts it printed."""
    child = subprocess.Popen(
        _scanner_command(data_dir, offline),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        bufsize=1,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    printed: list[dict[str, object]] = []

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            printed.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started = time.monotonic()
    life = rng.uniform(0.2, 1.6)
    deadline = started + life
    try:
        while True:
            now = time.monotonic()
            if not in_start_up and not printed and now - started < START_UP_LIMIT_S:
                # Its life counts from its first verdict: however long start-up takes on this
                # machine, the round scans (and uploads) before the kill.
                deadline = now + life
            elif now >= deadline:
                break
            child.stdin.write(rng.choice(codes) + "\n")
            child.stdin.flush()
            time.sleep(rng.uniform(0.0, 0.03))
    except BrokenPipeError:
        pass
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    reader.join(10)
    for stream in (child.stdin, child.stdout):
        with contextlib.suppress(BrokenPipeError):
            stream.close()
    return printed


def test_killed_at_random_no_scan_is_lost_or_counted_twice(
    tmp_path: Path, live_server: LiveServer, back_office: BackOffice
) -> None:
    sale = back_office.event_on_sale(tickets=TICKETS)
    data_dir = tmp_path / "gate"
    store = LocalStore.open(data_dir)
    enroll(store, live_server.url, back_office.create_enrollment(sale.event_id).code, "Gate")
    with store.write() as conn:
        # Every code typed is a scan of its own (no debounce), so the log grows fast.
        save_settings(conn, GateSettings(debounce_seconds=0, sync_interval_seconds=0.2))
    store.close()
    # Genuine codes (admitted once, then already checked in), and damaged ones.
    codes = [t.code for t in sale.tickets] + ["GH1NOTATICKET", sale.tickets[0].code[:-4] + "AAAA"]
    rng = random.Random(20261124)

    shown: dict[uuid.UUID, str] = {}
    modes: dict[str, int] = {}
    for number in range(ROUNDS):
        in_start_up = number % START_UP_EVERY == START_UP_EVERY - 1
        for verdict in _round(
            data_dir, codes, rng, offline=number % 2 == 0, in_start_up=in_start_up
        ):
            modes[str(verdict["mode"])] = modes.get(str(verdict["mode"]), 0) + 1
            scan_id = uuid.UUID(str(verdict["scan_id"]))
            assert scan_id not in shown, "one scan id printed twice"
            shown[scan_id] = str(verdict["result"])
    assert len(shown) > ROUNDS, "the rounds were too short to scan anything"
    assert modes.get("online", 0) > ROUNDS / 2, modes
    assert modes.get("offline", 0) > ROUNDS / 2, modes

    store = LocalStore.open(data_dir)
    try:
        with store.read() as conn:
            logged = {s.scan_id: s for s in local_scans(conn, limit=1_000_000)}
        # Every verdict that was shown is in the log, as it was shown.
        assert {i: s.result.value for i, s in logged.items() if i in shown} == shown
        assert shown.keys() <= logged.keys()

        # A question to /v1/validate that a kill cut off is resolved by the next sync once it
        # is two seconds old (younger ones may belong to a scanner still running).
        time.sleep(2.1)
        engine = SyncEngine(store)
        report = engine.sync_once()
        assert report.ok, report.errors
        with store.read() as conn:
            assert queue_length(conn) == 0
            assert unresolved_online(conn, datetime.now(UTC) + timedelta(days=1)) == []
            logged = {s.scan_id: s for s in local_scans(conn, limit=1_000_000)}
    finally:
        store.close()

    on_server = back_office.scans(sale.event_id)
    ids = [s.id for s in on_server]
    assert len(ids) == len(set(ids))
    # Exactly the device's scans: each once, none invented, none missing — except scans of
    # codes that do not read beyond the server's allowance a minute for a device
    # (GATEHOUSE_JUNK_SCANS_PER_MINUTE): counted there, answered "not stored", kept in the log.
    assert set(ids) <= set(logged)
    junk = {
        i
        for i, s in logged.items()
        if s.result.value == "rejected"
        and s.reason is not None
        and s.reason.value == "invalid_code"
    }
    assert set(logged) - set(ids) <= junk
    # One device, one admission per ticket that stands: every later entry of a ticket was
    # refused, and no double entry (a conflict) stands.
    admitted = [
        s.ticket_id for s in on_server if s.result.value == "admitted" and s.annulled_at is None
    ]
    assert len(admitted) == len(set(admitted))
    # An admission undone is one the server recorded for an online question that a kill cut
    # off before the app recorded the answer: never shown, so it let nobody in. The device
    # undid it itself, saying so, and both sides agree it was undone.
    undone = [s for s in on_server if s.annulled_at is not None]
    assert not {s.id for s in undone} & shown.keys()
    assert {s.id for s in undone} == {i for i, s in logged.items() if s.annulled}
    for scan in undone:
        assert scan.ticket_id is not None
        assert (scan.result.value, scan.direction.value, scan.offline) == (
            "admitted",
            "entry",
            False,
        )
        why = [
            h.reason
            for h in back_office.history(scan.ticket_id)
            if h.kind == "checkin_annulled" and h.details.get("scan_id") == str(scan.id)
        ]
        assert why == [NEVER_SHOWN], scan.id
