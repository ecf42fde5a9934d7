"""Ticket-code throughput on one core: read (decrypt + verify) and issue (sign + encrypt), and
how fast the reader turns garbage away."""

from __future__ import annotations

import itertools
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from benchmarks.environment import header
from shared.keys import IssuerKeyRing
from shared.ticket_code import issue_code, read_code


def _per_second(work: Callable[[], object], seconds: float) -> tuple[float, float]:
    """Calls per second (best of 5 rounds) and mean µs per call of that round."""
    rounds = []
    for _ in range(5):
        calls, started = 0, time.perf_counter()
        deadline = started + seconds / 5
        while time.perf_counter() < deadline:
            for _ in range(100):
                work()
            calls += 100
        rounds.append(calls / (time.perf_counter() - started))
    best = max(rounds)
    return best, 1e6 / best


def run(quick: bool = False) -> str:
    seconds = 1.0 if quick else 5.0
    ring = IssuerKeyRing.generate().rotated()  # two keys of each kind, as after a rotation
    scanner = ring.scanner_ring
    issued = datetime(2026, 6, 1, tzinfo=UTC)
    codes = [
        issue_code(
            ring,
            ticket_id=uuid.uuid4(),
            event_id=uuid.uuid4(),
            secret_version=i % 3,
            issued_at=issued,
        )
        for i in range(1000)
    ]
    valid = itertools.cycle(codes)
    middle = len(codes[0]) // 2
    tampered = (
        codes[0][:middle] + ("A" if codes[0][middle] != "A" else "B") + codes[0][middle + 1 :]
    )

    cases: list[tuple[str, Callable[[], object]]] = [
        ("read a valid code (decrypt + verify)", lambda: read_code(scanner, next(valid))),
        ("reject a tampered code (decrypt fails)", lambda: read_code(scanner, tampered)),
        ("reject a malformed text", lambda: read_code(scanner, "https://example.org/t/123")),
        (
            "issue a code (sign + encrypt)",
            lambda: issue_code(
                ring,
                ticket_id=uuid.uuid4(),
                event_id=uuid.uuid4(),
                secret_version=1,
                issued_at=issued,
            ),
        ),
    ]
    rows = []
    for name, work in cases:
        rate, micros = _per_second(work, seconds)
        rows.append(f"| {name} | {rate:,.0f} | {micros:.1f} |")
    lengths = statistics.mean(len(c) for c in codes)
    return "\n".join(
        [
            "## Ticket code (one core)",
            "",
            header("./dev bench ticket_code", "cryptography"),
            f"Codes are {lengths:.0f} characters. Best of 5 rounds over {seconds:.0f} s per row.",
            "",
            "| operation | per second | µs each |",
            "|---|---:|---:|",
            *rows,
        ]
    )


if __name__ == "__main__":
    print(run())
