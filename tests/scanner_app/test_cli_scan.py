"""``gatehouse-scanner scan --source`` on the foundation's synthetic gate-camera frames: every code
comes out as the verdict it deserves, forged and tampered codes included, and ``status`` and
``--source -`` work as a person would use them."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from scanner_app.core.standalone import load_tickets, set_up_standalone
from scanner_app.core.store import LocalStore
from scanner_app.core.synthetic_frames import synthetic_frame
from shared import wire
from shared.domain import TicketStatus, VerdictReason
from shared.ids import new_id
from shared.keys import IssuerKeyRing, SigningKey
from shared.ticket_code import issue_code
from testkit.names import name_secret_of, sealed_holder

BIN = Path(sys.executable).parent / "gatehouse-scanner"
NOW = datetime.now(UTC)


def _tamper(code: str) -> str:
    # One character in the sealed body changed: the AES-GCM tag no longer matches.
    position = len(code) // 2
    return code[:position] + ("A" if code[position] != "A" else "B") + code[position + 1 :]


@pytest.fixture
def gate_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A standalone gate with four cached tickets, and the codes each case shows it."""
    issuer = IssuerKeyRing.generate()
    event = wire.GateEvent(
        event_id=new_id(),
        name="Synthetic night",
        venue="Hall",
        starts_at=NOW - timedelta(hours=1),
        ends_at=NOW + timedelta(hours=6),
    )
    store = LocalStore.open(tmp_path / "data")
    set_up_standalone(store, gate_event=event, keys=issuer.scanner_ring, gate="Gate A", now=NOW)
    ids = [new_id() for _ in range(4)]
    load_tickets(
        store,
        [
            wire.TicketChange(
                ticket_id=ticket_id,
                event_id=event.event_id,
                status=TicketStatus.REVOKED if i == 1 else TicketStatus.ACTIVE,
                secret_version=2 if i == 2 else 1,
                ticket_type="Standing",
                sealed_holder=sealed_holder(ticket_id, f"Guest {i}", 2 if i == 2 else 1),
            )
            for i, ticket_id in enumerate(ids)
        ],
        NOW,
    )
    store.close()

    def code(ticket_id: uuid.UUID, *, keys: IssuerKeyRing = issuer, version: int = 1) -> str:
        return issue_code(
            keys,
            ticket_id=ticket_id,
            event_id=event.event_id,
            secret_version=version,
            issued_at=NOW,
            name_secret=name_secret_of(ticket_id),
        )

    stolen = issuer.active_encryption_key
    forger = IssuerKeyRing(
        [SigningKey.generate(issuer.active_signing_key.key_id)],
        [stolen],
        active_signing_id=issuer.active_signing_key.key_id,
        active_encryption_id=stolen.key_id,
    )
    cases = {
        "admitted": code(ids[0]),
        VerdictReason.REVOKED.value: code(ids[1]),
        VerdictReason.SUPERSEDED.value: code(ids[2]),
        VerdictReason.INVALID_CODE.value + " (forged)": code(ids[3], keys=forger),
        VerdictReason.INVALID_CODE.value + " (tampered)": _tamper(code(ids[3])),
    }
    frames = tmp_path / "frames"
    frames.mkdir()
    for index, text in enumerate(cases.values()):
        frame = synthetic_frame(text, np.random.default_rng([2026, index]))
        assert cv2.imwrite(str(frames / f"{index:02d}.png"), frame.image)
    return tmp_path, cases


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, input=stdin, timeout=120, check=False
    )


def test_scan_reads_each_frame_and_prints_the_right_verdict(
    gate_folder: tuple[Path, dict[str, str]],
) -> None:
    base, cases = gate_folder
    result = _run(
        "scan", "--source", str(base / "frames"), "--json", "--data-dir", str(base / "data")
    )
    assert result.returncode == 0, result.stderr

    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == len(cases), result.stdout
    got = [line["reason"] or line["result"] for line in lines]
    assert got == [label.split(" ")[0] for label in cases]
    assert [line["frame"] for line in lines] == list(range(len(cases)))
    admitted = lines[0]
    assert admitted["holder_name"] == "Guest 0"
    assert admitted["ticket_type"] == "Standing"
    assert admitted["mode"] == "offline"
    assert lines[1]["sentence"] == VerdictReason.REVOKED.sentence


def test_typed_codes_a_second_entry_and_the_status(
    gate_folder: tuple[Path, dict[str, str]],
) -> None:
    base, cases = gate_folder
    data = str(base / "data")
    first = _run("scan", "--source", "-", "--data-dir", data, stdin=cases["admitted"] + "\n\n")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("ADMITTED")
    assert "Welcome" in first.stdout

    again = _run("scan", "--source", "-", "--json", "--data-dir", data, stdin=cases["admitted"])
    verdict = json.loads(again.stdout)
    assert verdict["reason"] == VerdictReason.ALREADY_CHECKED_IN.value
    assert verdict["prior"]["gate"] == "Gate A"

    status = _run("status", "--json", "--data-dir", data)
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["tickets_cached"] == 4
    assert shown["scans_recorded"] == 2
    assert shown["queued"] == 0  # a standalone gate has no server to send to
    assert shown["gate"] == "Gate A"


def test_clear_errors_for_a_missing_source_and_an_empty_data_folder(
    tmp_path: Path, gate_folder: tuple[Path, dict[str, str]]
) -> None:
    data = str(gate_folder[0] / "data")
    missing = _run("scan", "--source", str(tmp_path / "nope.mp4"), "--data-dir", data)
    assert missing.returncode != 0
    assert "nope.mp4" in missing.stderr
    assert "Traceback" not in missing.stderr

    unenrolled = _run("scan", "--source", "-", "--data-dir", str(tmp_path / "fresh"), stdin="")
    assert unenrolled.returncode != 0
    assert "not set up yet" in unenrolled.stderr

    status = _run("status", "--data-dir", str(tmp_path / "fresh"))
    assert status.returncode == 0
    assert "not enrolled" in status.stdout

    sync = _run("sync", "--data-dir", str(tmp_path / "fresh"))
    assert sync.returncode == 1
    assert "Enroll it" in sync.stderr
