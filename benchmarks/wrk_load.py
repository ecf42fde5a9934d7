"""Drive ``wrk`` with ``validate.lua`` and read back what it measured.

wrk (C, epoll) is the load generator because on a 2-core machine shared with the server every
cycle the client spends is taken from the server; a Python client would cost several times more.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve().with_name("validate.lua")
MAX_THREADS = 2
TIMEOUT = "5s"
VERDICT_STATUSES = frozenset({200, 409, 422})


class WrkMissing(RuntimeError):
    pass


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise WrkMissing(
            "wrk is not installed; `./dev bench` installs it (apt-get install wrk), "
            "or install it by hand"
        )
    return found


def wrk_version() -> str:
    completed = subprocess.run(  # noqa: S603 - the wrk found on PATH, fixed arguments
        [wrk_binary(), "--version"], capture_output=True, text=True, check=False
    )
    first = (completed.stdout or completed.stderr).splitlines()
    return first[0].split(" [")[0] if first else "wrk"


@dataclass(frozen=True, slots=True)
class WrkResult:
    connections: int
    threads: int
    duration_s: float
    statuses: Counter[int]
    socket_errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    sent_per_thread: list[int]  # codes each thread sent (thread t of T, in order)
    overrun: int  # requests sent after a thread's codes ran out (GET /health, not verdicts)
    client_cpu_s: float  # CPU seconds wrk itself used

    @property
    def verdicts(self) -> int:
        """Answers 200, 409 or 422. When a thread ran out of codes, the GET /health it sent
        instead may have answered 200: those are taken off (a lower bound, flagged anyway)."""
        found = sum(n for status, n in self.statuses.items() if status in VERDICT_STATUSES)
        return found - min(self.overrun, self.statuses.get(200, 0))

    @property
    def ran_out(self) -> bool:
        return self.overrun > 0

    @property
    def verdicts_per_s(self) -> float:
        return self.verdicts / self.duration_s if self.duration_s else 0.0

    @property
    def other(self) -> int:
        """Answers that are not verdicts (5xx, 429, 401...) plus socket errors and timeouts."""
        odd = sum(n for s, n in self.statuses.items() if s not in VERDICT_STATUSES)
        return odd + sum(self.socket_errors.values())

    def consumed(self, offset: int) -> list[int]:
        """Line numbers of the codes this run sent (for a fresh-mode run from ``offset``)."""
        count = len(self.sent_per_thread)
        return sorted(
            offset + t + k * count
            for t, sent in enumerate(self.sent_per_thread)
            for k in range(sent)
        )

    def next_offset(self, offset: int) -> int:
        """The first line no later run may have sent yet."""
        return offset + len(self.sent_per_thread) * max(self.sent_per_thread, default=0)


def run_wrk(
    url: str,
    codes_file: Path,
    *,
    connections: int,
    duration_s: float,
    offset: int = 0,
    cycle: bool = False,
    token: str = "",
    path: str = "/v1/validate",
) -> WrkResult:
    threads = max(1, min(MAX_THREADS, connections))
    command = [
        wrk_binary(),
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{duration_s:g}s",
        "--timeout",
        TIMEOUT,
        "-s",
        str(SCRIPT),
        url,
        "--",
        str(codes_file),
        str(offset),
        str(threads),
        "cycle" if cycle else "fresh",
        token,
        path,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    completed = subprocess.run(  # noqa: S603 - the wrk found on PATH, our own arguments
        command, capture_output=True, text=True, check=False, timeout=duration_s + 60
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    line = next((ln for ln in completed.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}"
        )
    data = json.loads(line.removeprefix("WRK_JSON "))
    statuses: Counter[int] = Counter()
    sent, overrun = [0] * threads, 0
    for thread in data["threads"]:
        statuses.update({int(s): n for s, n in thread["statuses"].items()})
        sent[thread["tid"]] = thread["sent"]
        overrun += thread["overrun"]
    latency = data["latency_us"]
    return WrkResult(
        connections=connections,
        threads=threads,
        duration_s=data["duration_us"] / 1e6,
        statuses=statuses,
        socket_errors={k: v for k, v in data["errors"].items() if k != "status" and v},
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        sent_per_thread=sent,
        overrun=overrun,
        client_cpu_s=client_cpu,
    )
