"""Ticket-code throughput on one core: read (decrypt + verify) and issue (sign + encrypt) in
formats GH1 and GH2, how fast the reader turns garbage away, and what sealing and opening a
holder's name under a GH2 code's name secret costs."""

from __future__ import annotations

import itertools
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from benchmarks.environment import header
from shared.holder_name import open_name, seal_name
from shared.keys import IssuerKeyRing
from shared.ticket_code import READ_CACHE_SIZE, TicketCode, issue_code, read_code


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
    codes = {
        version: [
            issue_code(
                ring,
                ticket_id=uuid.uuid4(),
                event_id=uuid.uuid4(),
                secret_version=i % 3,
                issued_at=issued,
                version=version,
            )
            # More codes than a ring remembers, read in a cycle: every read in the valid rows
            # misses the memory of recent reads (least recently used goes first) and is a first
            # read, decrypted and verified.
            for i in range(READ_CACHE_SIZE + 1000)
        ]
        for version in (1, 2)
    }
    valid = {version: itertools.cycle(texts) for version, texts in codes.items()}
    middle = len(codes[2][0]) // 2
    tampered = (
        codes[2][0][:middle]
        + ("A" if codes[2][0][middle] != "A" else "B")
        + codes[2][0][middle + 1 :]
    )
    # Under keys this ring does not have: GH2 tries every key's hint before saying so.
    foreign = IssuerKeyRing.generate()
    unknown = {
        version: issue_code(
            foreign,
            ticket_id=uuid.uuid4(),
            event_id=uuid.uuid4(),
            secret_version=0,
            issued_at=issued,
            version=version,
        )
        for version in (1, 2)
    }
    decoded = read_code(scanner, codes[2][0])
    assert isinstance(decoded, TicketCode)
    assert decoded.name_secret is not None
    secret, ticket_id = decoded.name_secret, decoded.ticket_id
    sealed = seal_name(secret, "Quillon Vexmoor", ticket_id=ticket_id, secret_version=0)

    def issue(version: int) -> Callable[[], object]:
        return lambda: issue_code(
            ring,
            ticket_id=uuid.uuid4(),
            event_id=uuid.uuid4(),
            secret_version=1,
            issued_at=issued,
            version=version,
        )

    cases: list[tuple[str, Callable[[], object]]] = [
        ("GH1: read a valid code (decrypt + verify)", lambda: read_code(scanner, next(valid[1]))),
        (
            "GH2: read a valid code (hint + decrypt + verify)",
            lambda: read_code(scanner, next(valid[2])),
        ),
        (
            "GH2: read a code read before (remembered by the ring)",
            lambda: read_code(scanner, codes[2][0]),
        ),
        ("GH1: issue a code (sign + encrypt)", issue(1)),
        ("GH2: issue a code (sign + hint + encrypt)", issue(2)),
        ("GH1: reject a code under an unknown key", lambda: read_code(scanner, unknown[1])),
        (
            "GH2: reject a code under an unknown key (2 keys tried)",
            lambda: read_code(scanner, unknown[2]),
        ),
        ("GH2: reject a tampered code (decrypt fails)", lambda: read_code(scanner, tampered)),
        ("reject a malformed text", lambda: read_code(scanner, "https://example.org/t/123")),
        (
            "seal a holder's name (server, per feed row)",
            lambda: seal_name(secret, "Quillon Vexmoor", ticket_id=ticket_id, secret_version=0),
        ),
        (
            "open a sealed name (scanner, per admitted scan)",
            lambda: open_name(secret, sealed, ticket_id=ticket_id, secret_version=0),
        ),
    ]
    rows = []
    for name, work in cases:
        rate, micros = _per_second(work, seconds)
        rows.append(f"| {name} | {rate:,.0f} | {micros:.1f} |")
    lengths = {v: statistics.mean(len(c) for c in texts) for v, texts in codes.items()}
    return "\n".join(
        [
            "## Ticket code (one core)",
            "",
            header("./dev bench ticket_code", "cryptography", "PyNaCl"),
            f"GH1 codes are {lengths[1]:.0f} characters, GH2 codes {lengths[2]:.0f}. The ring "
            f"holds two keys of each kind (as after a rotation). Best of 5 rounds over "
            f"{seconds:.0f} s per row. The valid rows cycle through {READ_CACHE_SIZE + 1000:,} "
            f"codes, more than the {READ_CACHE_SIZE:,} a ring remembers, so each read there is "
            "a first read; the remembered row reads one code again, as a re-scan, a 409 or an "
            "upload of scans checked online does.",
            "",
            "| operation | per second | µs each |",
            "|---|---:|---:|",
            *rows,
        ]
    )


if __name__ == "__main__":
    print(run())
