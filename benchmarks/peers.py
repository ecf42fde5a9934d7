"""Peer sync between gates (issue 18): how fast an admission reaches the other gates, and what
it costs.

    ./dev bench peers      (or: python -m benchmarks.peers [--quick])

Ten gates, each its own process with its own store in a temporary folder, on 127.0.0.1 with
static peers (every gate knows every other's address), certified by one test issuer. Once every
gate hears the nine others, admissions are made round-robin, one every ``INTERVAL_S``: the gate
records the admission and its peer record in one write transaction (``append_own_record``, as
the gate does) and announces it. Propagation is the wall-clock time from the announcement to
the commit of the record at each other gate (taken right after the commit by ``on_change``;
one machine, one clock). CPU is user + system time of all ten processes while the admissions
ran, per admission (the announcing gate's own write included); bytes are what the nodes wrote
to their sockets, per admission.
"""

from __future__ import annotations

import json
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.environment import header
from scanner_app.core.peers import PeerConfig, PeerNode
from scanner_app.core.store import LocalStore
from scanner_app.core.store.peers import append_own_record, save_peer_credentials
from shared.peers import RecordKind
from testkit.peers import TestEvent

GATES = 10
FULL_ADMISSIONS, QUICK_ADMISSIONS = 1000, 100
INTERVAL_S = 0.02
WAIT_S = 120.0


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- one gate (a child process) ---------------------------------------------------------------


def _gate(job: dict[str, object]) -> None:
    index = int(str(job["index"]))
    ports = [int(p) for p in job["ports"]]  # type: ignore[attr-defined]
    expected = int(str(job["expected"]))
    event = TestEvent(
        tenant_id=uuid.UUID(str(job["tenant_id"])),
        event_id=uuid.UUID(str(job["event_id"])),
        seed=bytes.fromhex(str(job["seed"])),
        event_key=bytes.fromhex(str(job["event_key"])),
    )
    now = datetime.now(UTC)
    device_id, credentials = event.device(now, gate=f"Gate {index}")
    store = LocalStore.open(Path(str(job["data_dir"])))
    with store.write() as conn:
        save_peer_credentials(conn, store.sealer, credentials, now + timedelta(days=1))
    node = PeerNode(
        store,
        PeerConfig(
            port=ports[index],
            listen_host="127.0.0.1",
            static_peers=tuple(f"127.0.0.1:{p}" for i, p in enumerate(ports) if i != index),
            discover=False,
        ),
    )
    marks: list[tuple[int, int]] = []
    node.on_change = lambda: marks.append((node.records_stored, time.time_ns()))
    node.start()
    deadline = time.monotonic() + WAIT_S
    while node.peers_heard() < len(ports) - 1:
        if time.monotonic() > deadline:
            raise SystemExit(f"gate {index} heard only {node.peers_heard()} peers")
        time.sleep(0.05)
    print("READY", flush=True)
    cpu_before, bytes_before = _cpu_s(), node.bytes_sent
    announced: dict[str, int] = {}
    for line in sys.stdin:
        command = line.split()
        if command[0] == "A":
            scan_id = uuid.uuid4()
            with store.write() as conn:
                envelope = append_own_record(
                    conn,
                    credentials,
                    kind=RecordKind.ADMISSION,
                    scan_id=scan_id,
                    ticket_id=uuid.uuid4(),
                    at=datetime.now(UTC),
                    gate=f"Gate {index}",
                    checkin_list_id=None,
                    zone=None,
                )
            announced[scan_id.hex] = time.time_ns()
            node.announce(envelope)
        elif command[0] == "END":
            break
    deadline = time.monotonic() + WAIT_S
    while node.records_stored < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    cpu, sent = _cpu_s() - cpu_before, node.bytes_sent - bytes_before
    # The k-th record stored was committed by the first callback that counted k records.
    with store.read() as conn:
        rows = conn.exec_driver_sql(
            "SELECT scan_id FROM peer_records WHERE origin != ? ORDER BY received_at, seq",
            (device_id.bytes,),
        ).all()
    stored_at: dict[str, int] = {}
    position = 0
    for k, (scan_id,) in enumerate(rows, start=1):
        while position < len(marks) and marks[position][0] < k:
            position += 1
        if position < len(marks):
            stored_at[uuid.UUID(bytes=scan_id).hex] = marks[position][1]
    # Keep serving until the parent has every gate's report (a gate still catching up).
    print(
        json.dumps(
            {
                "announced": announced,
                "stored_at": stored_at,
                "received": node.records_stored,
                "cpu_s": cpu,
                "bytes_sent": sent,
                "refusals": node.refusals(),
            }
        ),
        flush=True,
    )
    sys.stdin.readline()
    node.stop()
    store.close()


# --- the run ------------------------------------------------------------------------------------


def _measure(admissions: int) -> dict[str, object]:  # noqa: PLR0912 - one run, top-down
    event = TestEvent()
    ports = _free_ports(GATES)
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as folder:
        children = []
        for index in range(GATES):
            own = len(range(index, admissions, GATES))
            job = {
                "index": index,
                "ports": ports,
                "expected": admissions - own,
                "tenant_id": str(event.tenant_id),
                "event_id": str(event.event_id),
                "seed": event.seed.hex(),
                "event_key": event.event_key.hex(),
                "data_dir": str(Path(folder) / f"gate-{index}"),
            }
            children.append(
                subprocess.Popen(  # noqa: S603 - our own interpreter and module
                    [sys.executable, "-m", "benchmarks.peers", "--gate", json.dumps(job)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        try:
            for child in children:
                assert child.stdout is not None
                if child.stdout.readline().strip() != "READY":
                    raise RuntimeError("a gate did not start")
            started = time.monotonic()
            for number in range(admissions):
                stdin = children[number % GATES].stdin
                assert stdin is not None
                stdin.write("A\n")
                stdin.flush()
                time.sleep(INTERVAL_S)
            elapsed = time.monotonic() - started
            for child in children:
                assert child.stdin is not None
                child.stdin.write("END\n")
                child.stdin.flush()
            reports = []
            for child in children:
                assert child.stdout is not None
                reports.append(json.loads(child.stdout.readline()))
            for child in children:
                assert child.stdin is not None
                child.stdin.write("\n")
                child.stdin.close()
                child.wait(timeout=60)
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
    announced: dict[str, int] = {}
    for report in reports:
        announced.update(report["announced"])
    delays_ms = [
        (at - announced[scan]) / 1e6
        for report in reports
        for scan, at in report["stored_at"].items()
        if scan in announced
    ]
    refusals: dict[str, int] = {}
    for report in reports:
        for reason, count in report["refusals"].items():
            refusals[reason] = refusals.get(reason, 0) + count
    return {
        "admissions": admissions,
        "deliveries": len(delays_ms),
        "expected": admissions * (GATES - 1),
        "p50_ms": statistics.median(delays_ms),
        "p99_ms": _percentile(delays_ms, 0.99),
        "max_ms": max(delays_ms),
        "cpu_ms": 1000 * sum(r["cpu_s"] for r in reports) / admissions,
        "bytes": sum(r["bytes_sent"] for r in reports) / admissions,
        "rate": admissions / elapsed,
        "refusals": refusals,
    }


def run(*, quick: bool = False) -> str:
    result = _measure(QUICK_ADMISSIONS if quick else FULL_ADMISSIONS)
    return f"""## Peer sync between gates (issue 18)

{header("./dev bench peers", "msgspec", "cryptography")}

{GATES} gates, each its own process and store, on 127.0.0.1 with static peers (TCP push,
`scanner_app/core/peers`); {result["admissions"]:,} admissions announced round-robin at
{result["rate"]:.0f}/s. Propagation is from the announcement to the record's commit at each other
gate (`synchronous=FULL`), one clock; {result["deliveries"]:,} of {result["expected"]:,}
deliveries arrived. The machine (2 cores) was shared with other helpers' work while this ran.

| propagation p50 | p99 | max | CPU per admission (all 10 processes) | bytes sent per admission |
|---:|---:|---:|---:|---:|
| {result["p50_ms"]:.1f} ms | {result["p99_ms"]:.1f} ms | {result["max_ms"]:.1f} ms \
| {result["cpu_ms"]:.1f} ms | {result["bytes"]:,.0f} |

Refusals counted: {result["refusals"] or "none"}.
"""


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--gate":
        _gate(json.loads(sys.argv[2]))
    else:
        print(run(quick="--quick" in sys.argv))
