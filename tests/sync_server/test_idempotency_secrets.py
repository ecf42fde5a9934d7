"""Issue 14, item 6: a leaked database backup must not yield entry codes. An idempotency row
keeps what a replay needs (the tickets and their secret versions), never a code; a replay
issues the codes afresh; rows expire and the worker's prune job deletes them (and spent
token revocations)."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from sync_server.db.engine import Database
from sync_server.db.migrate import ensure_database, upgrade
from sync_server.db.pruning import prune
from sync_server.http.auth import Role
from sync_server.settings import Settings
from tests.sync_server.conftest import APP_ROLE, PG_HOST, TenantHandle, _drop
from tests.sync_server.helpers import (
    Client,
    buy,
    connect,
    create_event,
    create_ticket_type,
    enrolled_device,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def _verdict(client: Client, tenant: TenantHandle, code: str) -> dict[str, Any]:
    response = await client.post(
        "/v1/codes/check", json={"code": code}, headers=tenant.token(Role.SERVICE)
    )
    assert response.status_code == 200, response.text
    verdict: dict[str, Any] = response.json()["verdict"]
    return verdict


async def _rows_holding(settings: Settings, needle: str) -> list[str]:
    """Every row of every table (as its text form: all columns, JSON included) holding
    ``needle``: what a reader of a backup could find."""
    found: list[str] = []
    async with connect(settings.database.admin_url) as connection:
        tables = (
            await connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
        ).scalars()
        for table in list(tables):
            hits = await connection.execute(
                text(f'SELECT t::text FROM "{table}" AS t WHERE strpos(t::text, :needle) > 0'),
                {"needle": needle},
            )
            found += [f"{table}: {row[0][:80]}" for row in hits]
    return found


async def test_no_row_of_the_database_holds_an_issued_code_and_a_replay_still_admits(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    key = str(uuid.uuid4())
    first = await buy(client, tenant, ticket_type["id"], quantity=2, key=key)
    assert first.status_code == 201, first.text
    codes = [item["code"] for item in first.json()["tickets"]]
    ticket_id = first.json()["tickets"][0]["ticket"]["id"]
    transferred = await client.post(
        f"/v1/tickets/{ticket_id}/transfer",
        json={"holder": {"user_id": "user-2", "name": "Grace Friend"}},
        headers={**tenant.token(Role.SERVICE), "Idempotency-Key": key},
    )
    assert transferred.status_code == 200, transferred.text
    codes.append(transferred.json()["code"])
    for code in codes:
        assert await _rows_holding(settings, code) == []
        # Not even most of it (a prefix, say, or the text in another case).
        assert await _rows_holding(settings, code[3:60]) == []

    async with connect(settings.database.admin_url) as connection:
        kept = (
            await connection.execute(
                text(
                    "SELECT response_body, expires_at - created_at AS ttl FROM idempotency_keys "
                    "WHERE tenant_id = :t AND key = :k AND scope = 'purchases'"
                ),
                {"t": tenant.id, "k": key},
            )
        ).one()
    assert [item["code"] for item in kept.response_body["tickets"]] == ["", ""]
    assert kept.ttl.total_seconds() == 48 * 3600

    replay = await buy(client, tenant, ticket_type["id"], quantity=2, key=key)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    replayed = replay.json()["tickets"]
    assert [t["ticket"] for t in replayed] == [t["ticket"] for t in first.json()["tickets"]]
    # The untransferred ticket's fresh code admits; the transferred one's first-version code is
    # superseded, exactly as the first answer's code now is.
    assert (await _verdict(client, tenant, replayed[1]["code"]))["result"] == "admitted"
    assert (await _verdict(client, tenant, replayed[0]["code"]))["reason"] == "superseded"
    for item in replayed:
        assert await _rows_holding(settings, item["code"]) == []


async def test_the_worker_prune_job_deletes_expired_rows(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    device = await enrolled_device(client, tenant, event["id"])
    expired, live = str(uuid.uuid4()), str(uuid.uuid4())
    for key in (expired, live):
        assert (await buy(client, tenant, ticket_type["id"], key=key)).status_code == 201
    async with connect(settings.database.admin_url) as connection:
        await connection.execute(
            text(
                "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' "
                "WHERE tenant_id = :t AND key = :k"
            ),
            {"t": tenant.id, "k": expired},
        )
        # A revocation outlives its token for nothing: it goes too; a live one stays.
        await connection.execute(
            text(
                "INSERT INTO token_revocations (tenant_id, jti, expires_at, revoked_by) VALUES "
                "(:t, 'spent', now() - interval '1 second', 'test'), "
                "(:t, 'live', now() + interval '1 hour', 'test')"
            ),
            {"t": tenant.id},
        )
        # A device's junk-upload counts are kept 30 days: the one from 31 days ago goes.
        await connection.execute(
            text(
                "INSERT INTO junk_scans (tenant_id, device_id, minute, stored, dropped) VALUES "
                "(:t, :d, date_trunc('minute', now()) - interval '31 days', 100, 7), "
                "(:t, :d, date_trunc('minute', now()) - interval '29 days', 100, 3)"
            ),
            {"t": tenant.id, "d": device.device_id},
        )
        await connection.commit()

    # What the worker's prune job runs (its scheduling: tests/sync_server/messaging/
    # test_scheduled_jobs.py).
    database = Database(settings.database)
    try:
        pruned = await prune(database, datetime.now(UTC))
    finally:
        await database.close()
    assert pruned.idempotency_keys >= 1
    assert pruned.token_revocations >= 1
    assert pruned.junk_scans >= 1
    listed = await client.get(f"/v1/devices?event_id={event['id']}", headers=tenant.token())
    assert [d["junk_scans_not_stored"] for d in listed.json()["items"]] == [3]

    async with connect(settings.database.admin_url) as connection:
        keys = (
            await connection.execute(
                text("SELECT key FROM idempotency_keys WHERE tenant_id = :t"), {"t": tenant.id}
            )
        ).scalars()
        assert set(keys) == {live}
        jtis = (
            await connection.execute(
                text("SELECT jti FROM token_revocations WHERE tenant_id = :t"), {"t": tenant.id}
            )
        ).scalars()
        assert set(jtis) == {"live"}


def test_the_migration_blanks_the_codes_rows_already_held() -> None:
    name = f"gatehouse_scrub_{secrets.token_hex(4)}"
    url = f"{PG_HOST}/{name}"
    code = "GH1" + secrets.token_hex(20).upper()
    purchase = {"purchase_id": "p", "tickets": [{"ticket": {"id": "a"}, "code": code}] * 2}
    transfer = {"ticket": {"id": "a"}, "code": code}

    async def seed() -> None:
        async with connect(url) as connection:
            tenant = await connection.scalar(
                text("INSERT INTO tenants (id, name) VALUES (gen_random_uuid(), 'T') RETURNING id")
            )
            for scope, body in (("purchases", purchase), ("tickets/a/transfer", transfer)):
                await connection.execute(
                    text(
                        "INSERT INTO idempotency_keys (tenant_id, principal, scope, key, "
                        "request_hash, response_status, response_body) "
                        "VALUES (:t, 'p', :s, 'k', '\\x00', 201, CAST(:b AS jsonb))"
                    ),
                    {"t": tenant, "s": scope, "b": json.dumps(body)},
                )
            await connection.commit()

    async def kept() -> list[Any]:
        async with connect(url) as connection:
            rows = await connection.execute(
                text("SELECT response_body, expires_at > now() FROM idempotency_keys ORDER BY 1")
            )
            return list(rows)

    asyncio.run(ensure_database(url))
    try:
        upgrade(url, APP_ROLE, "0006")
        asyncio.run(seed())
        upgrade(url, APP_ROLE)
        rows = asyncio.run(kept())
        assert sorted(json.dumps(body, sort_keys=True) for body, _ in rows) == sorted(
            json.dumps(body, sort_keys=True)
            for body in (
                {**purchase, "tickets": [{"ticket": {"id": "a"}, "code": ""}] * 2},
                {**transfer, "code": ""},
            )
        )
        assert all(live for _, live in rows)
    finally:
        asyncio.run(_drop(name))
