"""The counts migration 0020's triggers keep (``gate_counts``, ``gate_minutes``,
``zone_counts``) agree with counting the scans from scratch (``gatehouse_recount_scans``),
whatever mix of writes made them: batches and single rows, entries, exits, rejections, double
entries, undone admissions, conflicts found and lifted, the feed's renumbering — written as the
application role, by several connections at once (so into several shards)."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from shared.ids import new_id
from sync_server.db.scan_signals import asyncpg_dsn
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

START = datetime(2030, 6, 1, 18, 0, tzinfo=UTC)
GATES = ("North", "South", "VIP door")
ZONES = (None, "lounge", "backstage")
REASONS = ("already_checked_in", "invalid_code", "not_on_list", None)

COUNTS = """
SELECT 'gate' AS kind, gate AS k1, reason AS k2, NULL::timestamptz AS k3,
       sum(admitted), sum(rejected), sum(conflicts), sum(annulled), sum(exits), max(last_scan_at)
FROM gate_counts WHERE event_id = $1 GROUP BY gate, reason
HAVING sum(admitted) <> 0 OR sum(rejected) <> 0 OR sum(conflicts) <> 0 OR sum(annulled) <> 0
    OR sum(exits) <> 0
UNION ALL
SELECT 'minute', gate, NULL, minute, sum(admitted), sum(rejected), NULL, NULL, NULL, NULL
FROM gate_minutes WHERE event_id = $1 GROUP BY gate, minute
HAVING sum(admitted) <> 0 OR sum(rejected) <> 0
UNION ALL
SELECT 'zone', zone, NULL, NULL, sum(inside), NULL, NULL, NULL, NULL, NULL
FROM zone_counts WHERE event_id = $1 GROUP BY zone HAVING sum(inside) <> 0
"""

INSERT = """
INSERT INTO ticket_scans (id, tenant_id, ticket_id, event_id, scanned_by, gate, direction,
                          result, reason, scanned_at, received_at, conflict_of, zone)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::timestamptz[], $10::timestamptz[],
                     $11::uuid[], $12::text[])
"""


async def _tenant_connection(settings: Settings, tenant_id: uuid.UUID) -> Any:
    connection = await asyncpg.connect(asyncpg_dsn(settings.database.url))
    await connection.execute("SELECT set_config('gatehouse.tenant_id', $1, false)", str(tenant_id))
    return connection


async def _counts(connection: Any, event_id: uuid.UUID) -> set[tuple[Any, ...]]:
    return {tuple(row.values()) for row in await connection.fetch(COUNTS, event_id)}


def _scan(
    rng: random.Random, tenant_id: uuid.UUID, event_id: uuid.UUID, ticket: uuid.UUID | None
) -> dict[str, Any]:
    rejected = ticket is None or rng.random() < 0.25
    return {
        "id": new_id(),
        "tenant_id": tenant_id,
        "ticket_id": ticket,
        "event_id": event_id,
        "scanned_by": "test",
        "gate": rng.choice(GATES),
        "direction": "exit" if rng.random() < 0.3 else "entry",
        "result": "rejected" if rejected else "admitted",
        "reason": rng.choice(REASONS) if rejected else None,
        "scanned_at": START + timedelta(seconds=rng.randrange(0, 3 * 3600)),
        "conflict_of": None,
        "zone": rng.choice(ZONES),
    }


async def _insert(connection: Any, scans: list[dict[str, Any]]) -> None:
    columns = (
        *("id", "tenant_id", "ticket_id", "event_id", "scanned_by", "gate", "direction"),
        *("result", "reason", "scanned_at", "conflict_of", "zone"),
    )
    async with connection.transaction():
        await connection.execute(INSERT, *([s[c] for s in scans] for c in columns))


async def _writer(
    settings: Settings, tenant: TenantHandle, event_id: uuid.UUID, seed: int, rounds: int
) -> None:
    """One connection's writes: its own tickets only, as check-in locks a ticket for them."""
    rng = random.Random(seed)
    tickets = [uuid.uuid4() for _ in range(12)]
    written: list[dict[str, Any]] = []
    connection = await _tenant_connection(settings, tenant.id)
    try:
        for _ in range(rounds):
            action = rng.random()
            if action < 0.45 or not written:
                batch = [
                    _scan(rng, tenant.id, event_id, rng.choice([*tickets, None]))
                    for _ in range(rng.choice((1, 1, 3, 20)))
                ]
                await _insert(connection, batch)
                written.extend(batch)
                continue
            admitted = [s for s in written if s["result"] == "admitted"]
            if not admitted:
                continue
            scan = rng.choice(admitted)
            if action < 0.6:  # undone by staff
                await connection.execute(
                    "UPDATE ticket_scans SET annulled_at = $2, annulled_by = 'staff' WHERE id = $1",
                    scan["id"],
                    START,
                )
            elif action < 0.8:  # a conflict found (of another admission of the ticket) or lifted
                others = [
                    s["id"]
                    for s in admitted
                    if s["ticket_id"] == scan["ticket_id"] and s["id"] != scan["id"]
                ]
                target = rng.choice([*others, None]) if others else None
                await connection.execute(
                    "UPDATE ticket_scans SET conflict_of = $2 WHERE id = $1", scan["id"], target
                )
            elif action < 0.9:  # an undone admission restored (not done by the app; still counted)
                await connection.execute(
                    "UPDATE ticket_scans SET annulled_at = NULL WHERE id = $1", scan["id"]
                )
            else:  # the feed's sequencer renumbers scans: counts nothing
                await connection.fetchval("SELECT gatehouse_sequence_changes(100000)")
    finally:
        await connection.close()


async def test_kept_counts_agree_with_counting_from_scratch(
    settings: Settings, tenant: TenantHandle
) -> None:
    event_id = new_id()
    owner = await asyncpg.connect(asyncpg_dsn(settings.database.admin_url))
    try:
        await owner.execute(
            "INSERT INTO events (id, tenant_id, name, venue, starts_at, ends_at)"
            " VALUES ($1, $2, 'Tally night', 'Hall', $3, $4)",
            event_id,
            tenant.id,
            START,
            START + timedelta(hours=6),
        )
        await asyncio.gather(
            *(_writer(settings, tenant, event_id, seed, rounds=60) for seed in range(4))
        )
        reader = await _tenant_connection(settings, tenant.id)
        try:
            kept = await _counts(reader, event_id)
            shards = await reader.fetchval(
                "SELECT count(DISTINCT shard) FROM gate_counts WHERE event_id = $1", event_id
            )
            await owner.execute("SELECT gatehouse_recount_scans($1)", event_id)
            counted = await _counts(reader, event_id)
        finally:
            await reader.close()
    finally:
        await owner.close()
    assert shards > 1  # the four writers added to rows of their own
    assert {row[0] for row in counted} == {"gate", "minute", "zone"}
    gates = [row for row in counted if row[0] == "gate"]
    assert all(sum(row[i] for row in gates) > 0 for i in range(4, 9))  # every kind of count
    assert kept == counted


async def test_a_tenant_sees_and_writes_only_its_own_counts(
    settings: Settings, make_tenant: Any
) -> None:
    ours, theirs = await make_tenant("Ours"), await make_tenant("Theirs")
    event_id = new_id()
    owner = await asyncpg.connect(asyncpg_dsn(settings.database.admin_url))
    try:
        await owner.execute(
            "INSERT INTO events (id, tenant_id, name, venue, starts_at, ends_at)"
            " VALUES ($1, $2, 'Theirs', 'Hall', $3, $4)",
            event_id,
            theirs.id,
            START,
            START + timedelta(hours=6),
        )
    finally:
        await owner.close()
    writer = await _tenant_connection(settings, theirs.id)
    try:
        rng = random.Random(3)
        await _insert(writer, [_scan(rng, theirs.id, event_id, uuid.uuid4()) for _ in range(5)])
        assert await _counts(writer, event_id)
    finally:
        await writer.close()
    reader = await _tenant_connection(settings, ours.id)
    try:
        for table in ("gate_counts", "gate_minutes", "zone_counts"):
            assert await reader.fetchval(f"SELECT count(*) FROM {table}") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.execute(
                "INSERT INTO gate_counts (tenant_id, event_id, gate, reason, shard, admitted)"
                " VALUES ($1, $2, 'North', '', 0, 1000)",
                theirs.id,
                event_id,
            )
    finally:
        await reader.close()
