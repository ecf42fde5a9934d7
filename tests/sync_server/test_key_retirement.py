"""Retiring an event's key after a loss (issue 14, item 13), against the real Postgres: codes
made with it are refused, the scanners' ring drops it, every live ticket gets a new code and
an event, in bounded batches, and doing it again changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from shared.clock import ManualClock
from sync_server.app import create_app
from sync_server.cli import main
from sync_server.db.engine import Database
from sync_server.domain.events.retirement import retire_key
from sync_server.domain.keys.services import KeyStore
from sync_server.http.auth import Role
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import (
    Client,
    assert_problem,
    buy,
    connect,
    create_event,
    create_ticket_type,
    enrolled_device,
)
from tests.sync_server.test_server_cli import _env

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

#: Inside the default test event's admission hours.
EVENT_NIGHT = datetime(2030, 5, 1, 20, 0, tzinfo=UTC)


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings, clock=ManualClock(EVENT_NIGHT))


@pytest.fixture
async def tenant(make_tenant: Callable[..., Awaitable[TenantHandle]]) -> TenantHandle:
    """Its tokens minted on the event night, where the app's clock stands."""
    return (await make_tenant("Main venue")).at(EVENT_NIGHT)


async def _on_sale(client: Client, tenant: TenantHandle, count: int) -> tuple[str, list[Any]]:
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    bought = await buy(client, tenant, ticket_type["id"], quantity=count)
    assert bought.status_code == 201, bought.text
    return event["id"], bought.json()["tickets"]


async def _active(client: Client, tenant: TenantHandle, event_id: str) -> dict[str, int]:
    listed = await client.get(f"/v1/events/{event_id}/keys", headers=tenant.token())
    assert listed.status_code == 200, listed.text
    return {k["kind"]: k["key_id"] for k in listed.json() if k["active"]}


async def _rows(settings: Settings, sql: str, **params: Any) -> list[Any]:
    async with connect(settings.database.admin_url) as connection:
        return list((await connection.execute(text(sql), params)).all())


async def test_a_retired_keys_codes_are_refused_and_every_ticket_has_a_new_code_and_event(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    event_id, tickets = await _on_sale(client, tenant, 3)
    device = await enrolled_device(client, tenant, event_id)
    old = await _active(client, tenant, event_id)
    # The device read the feed before: its ring holds the key about to be retired.
    before = (await client.get("/v1/sync/changes", headers=device.headers)).json()

    path = f"/v1/events/{event_id}/keys/{old['encryption']}/retire"
    answer = await client.post(path, headers=tenant.token())
    assert answer.status_code == 200, answer.text
    done = answer.json()
    assert (done["tickets_reissued"], done["tickets_remaining"]) == (3, 0)
    assert done["encryption_key_id"] != old["encryption"]
    assert done["signing_key_id"] != old["signing"]
    # Again (a retry after a lost answer): nothing more happens.
    again = await client.post(path, headers=tenant.token())
    assert again.status_code == 200, again.text
    assert again.json()["tickets_reissued"] == 0
    assert again.json()["retired_at"] == done["retired_at"]

    # Online: the old code is refused; the ticket's new code admits.
    first = tickets[0]
    refused = await client.post(
        "/v1/validate", json={"code": first["code"]}, headers=device.headers
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["reason"] == "unknown_key"
    fresh = await client.get(f"/v1/tickets/{first['ticket']['id']}/code", headers=tenant.token())
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["ticket"]["secret_version"] == 1
    admitted = await client.post(
        "/v1/validate", json={"code": fresh.json()["code"]}, headers=device.headers
    )
    assert admitted.status_code == 200, admitted.text

    # One ticket.reissued event per ticket, in the outbox with the ticket's new version.
    ids = [uuid.UUID(t["ticket"]["id"]) for t in tickets]
    events = await _rows(
        settings,
        "SELECT ticket_id, payload FROM outbox WHERE routing_key = 'ticket.reissued' "
        "AND ticket_id = ANY(:ids)",
        ids=ids,
    )
    assert sorted(row.ticket_id for row in events) == sorted(ids)
    assert {row.payload["data"]["secret_version"] for row in events} == {1}
    assert {row.payload["data"]["reason"] for row in events} == {"key_retired"}
    history = await client.get(
        f"/v1/tickets/{first['ticket']['id']}/history", headers=tenant.token()
    )
    assert [h["kind"] for h in history.json()] == ["purchased", "reissued", "checked_in"]

    # The scanners' feed: a ring without the retired keys, the tickets' new versions.
    after = (
        await client.get(
            "/v1/sync/changes", params={"cursor": before["next_cursor"]}, headers=device.headers
        )
    ).json()
    (ring,) = [c["keys"] for c in after["changes"] if c["type"] == "keys"]
    assert old["encryption"] not in [k["key_id"] for k in ring["encryption_keys"]]
    assert done["encryption_key_id"] in [k["key_id"] for k in ring["encryption_keys"]]
    versions = {
        c["ticket_id"]: c["secret_version"] for c in after["changes"] if c["type"] == "ticket"
    }
    assert versions == {str(i): 1 for i in ids}


async def test_only_a_manager_retires_and_bad_ids_are_named(
    client: Client, tenant: TenantHandle
) -> None:
    event_id, _ = await _on_sale(client, tenant, 1)
    key = (await _active(client, tenant, event_id))["encryption"]
    path = f"/v1/events/{event_id}/keys/{key}/retire"
    assert_problem(await client.post(path, headers=tenant.token(Role.SERVICE)), 403, "wrong_role")
    assert_problem(
        await client.post(f"/v1/events/{event_id}/keys/12345/retire", headers=tenant.token()),
        404,
        "not_found",
    )
    assert_problem(
        await client.post(f"/v1/events/{uuid.uuid4()}/keys/{key}/retire", headers=tenant.token()),
        404,
        "not_found",
    )
    too_big = await client.post(
        f"/v1/events/{event_id}/keys/{2**32}/retire", headers=tenant.token()
    )
    assert too_big.status_code == 400, too_big.text


async def test_a_large_event_is_done_in_bounded_batches_and_a_retry_finishes_it(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    event_id, tickets = await _on_sale(client, tenant, 5)
    key = (await _active(client, tenant, event_id))["signing"]
    # The service on its own pools (the app's belong to the test client's thread).
    database = Database(settings.database)
    keys, clock = KeyStore(settings.master_key), ManualClock(EVENT_NIGHT)
    tenant_id = uuid.UUID(str(tenant.id))

    def transaction() -> Any:
        return database.tenant(tenant_id)

    arguments: dict[str, Any] = {
        "tenant_id": tenant_id,
        "event_id": uuid.UUID(event_id),
        "key_id": key,
        "actor": "manager:test",
        "batch_size": 2,
    }
    try:
        cut_short = await retire_key(transaction, keys, clock, max_batches=1, **arguments)
        assert (cut_short.tickets_reissued, cut_short.tickets_remaining) == (2, 3)
        finished = await retire_key(transaction, keys, clock, **arguments)
        assert (finished.tickets_reissued, finished.tickets_remaining) == (3, 0)
    finally:
        await database.close()
    versions = await _rows(
        settings,
        "SELECT secret_version FROM tickets WHERE id = ANY(:ids)",
        ids=[uuid.UUID(t["ticket"]["id"]) for t in tickets],
    )
    assert sorted(v.secret_version for v in versions) == [1] * 5


async def test_the_command_line_retires_a_key_and_says_how_many_tickets_got_new_codes(
    tenant: TenantHandle, settings: Settings, tmp_path: Path
) -> None:
    # The server's clock and the command line's are the same (the system's).
    async with AsyncTestClient(app=create_app(settings)) as client:
        await _retire_from_the_command_line(client, tenant, settings, tmp_path)


async def _retire_from_the_command_line(
    client: Client, tenant: TenantHandle, settings: Settings, tmp_path: Path
) -> None:
    event_id, _ = await _on_sale(client, tenant, 2)
    key = (await _active(client, tenant, event_id))["encryption"]
    args = ["keys", "retire", "--tenant", str(tenant.id), "--event", event_id, str(key)]

    def run() -> Any:
        return CliRunner().invoke(main, args, env=_env(settings, tmp_path))

    result = await anyio.to_thread.run_sync(run)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "2 tickets got a new code" in result.stdout
    listed = await client.get(f"/v1/events/{event_id}/keys", headers=tenant.token())
    (retired,) = [k for k in listed.json() if k["key_id"] == key]
    assert retired["retired_at"] is not None
    assert not retired["active"]
