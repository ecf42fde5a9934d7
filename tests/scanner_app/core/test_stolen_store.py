"""Issue 14 item 8: what a thief learns from a scanner's data file.

Before, the cache sealed each holder's name under SHA-512(salt ‖ ticket id), with the salt in the
same file and every ticket id in its NFT's public metadata: a stolen disk opened every name
offline. Now names are stored exactly as the server sealed them, under each ticket's name
secret, which only the ticket's code carries.
"""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from contextlib import closing, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from scanner_app.core.gate import Gate
from scanner_app.core.standalone import load_tickets, set_up_standalone
from scanner_app.core.store import LocalStore
from scanner_app.core.store.database import DATABASE_FILE
from shared import wire
from shared.clock import ManualClock
from shared.domain import TicketStatus
from shared.holder_name import open_name
from shared.ids import new_id
from shared.keys import EncryptionKey, IssuerKeyRing, ScannerKeyRing, VerifyKey
from shared.ticket_code import TicketCode, issue_code, read_code
from testkit.names import name_secret_of, sealed_holder

START = datetime(2030, 5, 1, 19, 0, tzinfo=UTC)
NAMES = [f"Quillon Vexmoor-{i:02d}" for i in range(30)]


def _stolen_scanner(data: Path) -> tuple[list[uuid.UUID], uuid.UUID]:
    """A synced scanner that has admitted one guest: its tickets' ids and the scanned one."""
    store = LocalStore.open(data)

    issuer = IssuerKeyRing.generate()
    gate_event = wire.GateEvent(
        event_id=new_id(),
        name="Stolen scanner night",
        venue="Hall",
        starts_at=START - timedelta(hours=1),
        ends_at=START + timedelta(hours=6),
    )
    set_up_standalone(
        store, gate_event=gate_event, keys=issuer.scanner_ring, gate="North", now=START
    )
    ids = [new_id() for _ in NAMES]
    load_tickets(
        store,
        (
            wire.TicketChange(
                ticket_id=t,
                event_id=gate_event.event_id,
                status=TicketStatus.ACTIVE,
                secret_version=1,
                ticket_type="Standing",
                sealed_holder=sealed_holder(t, name, 1),
            )
            for t, name in zip(ids, NAMES, strict=True)
        ),
        START,
    )
    code = issue_code(
        issuer,
        ticket_id=ids[0],
        event_id=gate_event.event_id,
        secret_version=1,
        issued_at=START,
        name_secret=name_secret_of(ids[0]),
    )
    verdict = Gate(store, clock=ManualClock(START)).scan(code)
    assert verdict.verdict.holder_name == NAMES[0]  # the gate that holds the code shows it
    store.close()
    return ids, ids[0]


def test_a_stolen_store_with_its_keys_and_every_ticket_id_opens_no_unscanned_name(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    ids, scanned = _stolen_scanner(data)
    raw = b"".join(p.read_bytes() for p in sorted(data.glob(DATABASE_FILE + "*")))
    for name in NAMES:
        assert name.encode() not in raw
    # The thief opens the file and reads what is in it: the salt, the event's keys, the rows.
    with closing(sqlite3.connect(data / DATABASE_FILE)) as db:
        salt = bytes.fromhex(
            db.execute("SELECT value FROM state WHERE name = 'cache_salt'").fetchone()[0]
        )
        keys = db.execute("SELECT kind, key_id, key FROM keys").fetchall()
        rows = db.execute("SELECT lookup, sealed_holder FROM tickets").fetchall()
        codes = db.execute("SELECT code FROM scans WHERE code IS NOT NULL").fetchall()
    ring = ScannerKeyRing(
        [VerifyKey.from_bytes(k, bytes(m)) for kind, k, m in keys if kind == "verify"],
        [EncryptionKey(k, bytes(m)) for kind, k, m in keys if kind == "encryption"],
    )
    assert len(rows) == len(NAMES)
    opened: set[str] = set()
    # ...and knows every ticket id (as the NFTs' public metadata used to tell).
    for ticket_id in ids:
        digest = hashlib.sha512(b"gatehouse/scanner-cache/v1\x00" + salt + ticket_id.bytes).digest()
        lookup, old_key = digest[:16], digest[16:48]
        row = next((r for r in rows if bytes(r[0]) == lookup), None)
        assert row is not None  # rows can still be found by id: they hold statuses, not names
        sealed = bytes(row[1])
        # The old scheme: the name key from the same hash.
        with suppress(InvalidTag):
            opened.add(AESGCM(old_key).decrypt(sealed[:12], sealed[12:], lookup).decode())
        # Anything else derivable from the file and the id: the salt, the event keys, the id.
        for guess in (
            salt,
            ticket_id.bytes,
            digest[:16],
            digest[16:32],
            *(k.secret[:16] for k in ring.encryption_keys),
        ):
            guessed = open_name(guess, sealed, ticket_id=ticket_id, secret_version=1)
            if guessed is not None:
                opened.add(guessed)
    # The codes this device scanned are in its log (they must be uploaded): with the event's
    # keys they give their own tickets' names — and only those.
    for (text,) in codes:
        decoded = read_code(ring, text)
        assert isinstance(decoded, TicketCode)
        for _, sealed_name in rows:
            scanned_name = open_name(
                decoded.name_secret,
                bytes(sealed_name),
                ticket_id=decoded.ticket_id,
                secret_version=1,
            )
            if scanned_name is not None:
                opened.add(scanned_name)
    assert opened == {NAMES[ids.index(scanned)]}
