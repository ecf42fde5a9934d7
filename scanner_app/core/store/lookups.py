"""The gate screen's lookups in the scan log: who is inside now, and the holders of tickets this
device scanned, found by name. Read-only; the managers' log (``scanlog``) counts inside per gate
with the same ``inside_by_gate``, so the two figures always agree."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from scanner_app.core.store.cache import find_ticket
from scanner_app.core.store.sealing import Sealer
from scanner_app.core.store.times import from_micros
from shared.domain import Direction, VerdictResult
from shared.holder_name import open_name


def inside_by_gate(conn: Connection) -> dict[str, int]:
    """Who is inside now, as this device knows it, by the gate they came in through: tickets
    whose latest counted admission (this device's or another gate's from the feed; not undone;
    an entry that was a double entry does not count) is an entry. Per ticket, not entries minus
    exits, because an exit gate lets out anyone with a genuine code — including people it never
    saw come in. The gate screen's "inside now" is the sum; the scan log shows it per gate."""
    # Each ticket's latest counted entry or exit (the partial index on admitted scans serves
    # this); the ticket is inside on that entry's gate.
    inside = conn.exec_driver_sql(
        "SELECT gate, count(*) AS inside FROM ("
        "  SELECT gate, direction, row_number() OVER ("
        "    PARTITION BY ticket_lookup ORDER BY at DESC, scan_id DESC) AS n"
        "  FROM scans WHERE result = 'admitted' AND ticket_lookup IS NOT NULL AND NOT annulled"
        "  AND (direction = 'exit' OR conflict_of IS NULL)"
        ") WHERE n = 1 AND direction = 'entry' GROUP BY gate"
    )
    return {r.gate: int(r.inside) for r in inside}


@dataclass(frozen=True, slots=True)
class NameMatch:
    """A ticket this device scanned whose holder's name matches a search."""

    holder_name: str
    ticket_type: str | None
    last_scan_at: datetime
    last_result: VerdictResult
    last_direction: Direction
    #: The code text as it was read: scanning it again is what "check in" from a search does.
    code: str


def find_scanned_holders(
    conn: Connection, sealer: Sealer, query: str, limit: int = 50
) -> list[NameMatch]:
    """Tickets scanned at this device whose holder's name contains ``query`` (case-insensitive).

    Names in the cache are sealed per ticket under the ticket's name secret, which only its
    code carries (docs/scanner.md): a device can read the names of tickets it has scanned with
    a GH2 code (its own log keeps the secret with the scan) and of no others. So this searches
    those, and only those.
    """
    needle = query.strip().casefold()
    if not needle:
        return []
    rows = conn.exec_driver_sql(
        "SELECT ticket_id, name_secret, code, at, result, direction FROM scans "
        "WHERE origin = 'local' AND ticket_id IS NOT NULL ORDER BY at DESC"
    ).all()
    matches: list[NameMatch] = []
    seen: set[bytes] = set()
    for r in rows:
        if r.ticket_id in seen:
            continue
        seen.add(r.ticket_id)
        ticket_id = uuid.UUID(bytes=r.ticket_id)
        cached = find_ticket(conn, sealer.lookup(ticket_id))
        name = None
        if cached is not None:
            name = open_name(
                r.name_secret,
                cached.sealed_holder,
                ticket_id=ticket_id,
                secret_version=cached.secret_version,
            )
        if name is None or needle not in name.casefold():
            continue
        matches.append(
            NameMatch(
                holder_name=name,
                ticket_type=cached.ticket_type if cached else None,
                last_scan_at=from_micros(r.at),
                last_result=VerdictResult(r.result),
                last_direction=Direction(r.direction),
                code=r.code or "",
            )
        )
        if len(matches) >= limit:
            break
    return matches
