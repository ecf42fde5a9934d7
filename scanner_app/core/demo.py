"""The demo that runs without a server: issue demo ticket codes, show them to a simulated gate
camera, read them back and check them.

It covers what exists so far: the ticket code and the QR decoder. The verdict here is the code
check only (genuine? readable with our keys? for this event?); ticket status, earlier scans and
the rest of the offline rules belong to the scanner's validator.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from scanner_app.core.decoding import QrDecoder
from scanner_app.core.synthetic_frames import render_qr, synthetic_frame
from shared import wire
from shared.domain import VerdictReason, VerdictResult
from shared.keys import EncryptionKey, IssuerKeyRing, ScannerKeyRing, SigningKey
from shared.ticket_code import CodeRejection, issue_code, read_code


@dataclass(frozen=True, slots=True)
class DemoTicket:
    label: str
    code: str


@dataclass(frozen=True, slots=True)
class DemoScan:
    """One demo case after the camera: what was shown, what was read, what the gate says."""

    ticket: DemoTicket
    frame_path: Path
    read_text: str | None  # None when the decoder found no code in the frame
    decode_ms: float
    verdict: wire.Verdict | None


def check_code(keys: ScannerKeyRing, event_id: uuid.UUID, text: str) -> wire.Verdict:
    """The code-level part of a gate verdict: genuine, readable here, and for this event."""
    code = read_code(keys, text)
    if isinstance(code, CodeRejection):
        return wire.Verdict(result=VerdictResult.REJECTED, reason=code.reason)
    if code.event_id != event_id:
        return wire.Verdict(
            result=VerdictResult.REJECTED,
            reason=VerdictReason.WRONG_EVENT,
            ticket_id=code.ticket_id,
            event_id=code.event_id,
        )
    return wire.Verdict(
        result=VerdictResult.ADMITTED, ticket_id=code.ticket_id, event_id=code.event_id
    )


def demo_tickets(issuer: IssuerKeyRing, event_id: uuid.UUID) -> list[DemoTicket]:
    """A valid ticket and one of each way a code can fail the code check."""
    now = datetime.now(UTC)

    def issue(ring: IssuerKeyRing, event: uuid.UUID) -> str:
        return issue_code(
            ring, ticket_id=uuid.uuid4(), event_id=event, secret_version=0, issued_at=now
        )

    valid = issue(issuer, event_id)
    # Someone who stole a scanner has its encryption key, but must sign with a key of their own.
    stolen = issuer.active_encryption_key
    forger = IssuerKeyRing(
        [SigningKey.generate(issuer.active_signing_key.key_id)],
        [EncryptionKey(stolen.key_id, stolen.secret)],
        active_signing_id=issuer.active_signing_key.key_id,
        active_encryption_id=stolen.key_id,
    )
    # Change one character in the middle: still valid base32, so only the seal can catch it.
    middle = len(valid) // 2
    tampered = valid[:middle] + ("A" if valid[middle] != "A" else "B") + valid[middle + 1 :]
    return [
        DemoTicket("valid ticket", valid),
        DemoTicket("another valid ticket", issue(issuer, event_id)),
        DemoTicket("forged with a stolen scanner's keys", issue(forger, event_id)),
        DemoTicket("one character altered", tampered),
        DemoTicket("ticket for another event", issue(issuer, uuid.uuid4())),
        DemoTicket("issued under keys this gate lacks", issue(IssuerKeyRing.generate(), event_id)),
    ]


def run_demo(decoder: QrDecoder, out_dir: Path, seed: int = 7) -> Iterator[DemoScan]:
    """Issue the demo tickets, write each as a QR PNG and as a cluttered camera frame into
    ``out_dir``, decode the frame and check the code. Yields one ``DemoScan`` per ticket.

    Raises ``OSError`` when ``out_dir`` cannot be created or written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    issuer = IssuerKeyRing.generate()  # fresh keys every run: nothing secret lives on disk
    event_id = uuid.uuid4()
    scanner_keys = issuer.scanner_ring
    rng = np.random.default_rng(seed)
    for index, ticket in enumerate(demo_tickets(issuer, event_id), start=1):
        slug = f"{index:02d}-" + "-".join(ticket.label.replace("'", "").split())
        _write(out_dir / f"{slug}-code.png", render_qr(ticket.code, module_px=6))
        frame = synthetic_frame(ticket.code, rng).image
        frame_path = out_dir / f"{slug}-camera.jpg"
        _write(frame_path, frame)

        started = time.perf_counter()
        symbols = decoder.decode(frame)
        decode_ms = (time.perf_counter() - started) * 1000
        text = symbols[0].text if symbols else None
        verdict = check_code(scanner_keys, event_id, text) if text is not None else None
        yield DemoScan(ticket, frame_path, text, decode_ms, verdict)


def _write(path: Path, image: np.typing.NDArray[np.uint8]) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")
