"""Issue 14 items 7, 12 and 13 at the server: holder names leave it only sealed under the
ticket's name secret (which only the ticket's GH2 code carries), the secret is sealed at rest,
and codes nobody's keys read cost no key-ring query per code."""

from __future__ import annotations

import base64
import os
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from shared import wire
from shared.clock import ManualClock
from shared.holder_name import open_name
from shared.ids import new_id
from shared.keys import ScannerKeyRing
from shared.ticket_code import CODE_BYTES_V1, TicketCode, read_code
from sync_server.app import create_app
from sync_server.db.engine import Database
from sync_server.domain.keys.sealing import MasterKey
from sync_server.domain.keys.services import RELOAD_INTERVAL, KeyStore
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import (
    Client,
    DeviceHandle,
    buy,
    connect,
    create_event,
    create_ticket_type,
    enrolled_device,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

EVENT_NIGHT = datetime(2030, 5, 1, 20, 0, tzinfo=UTC)
NAMES = ["Zoë Quartermaine-Okafor", "Bartholomew Vandersloot", "Ingrid Þórsdóttir"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(EVENT_NIGHT)


@pytest.fixture
def app(settings: Settings, clock: ManualClock) -> Litestar:
    return create_app(settings, clock=clock)


@pytest.fixture
async def tenant(make_tenant: Callable[..., Awaitable[TenantHandle]]) -> TenantHandle:
    """Its tokens minted on the event night, where the app's clock stands."""
    return (await make_tenant("Main venue")).at(EVENT_NIGHT)


async def _sold(client: Client, tenant: TenantHandle) -> tuple[str, list[dict[str, Any]]]:
    """An event with one ticket per name of ``NAMES``."""
    created = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, created["id"])
    tickets = []
    for number, name in enumerate(NAMES):
        response = await buy(
            client, tenant, ticket_type["id"], holder={"user_id": f"u{number}", "name": name}
        )
        assert response.status_code == 201, response.text
        tickets += response.json()["tickets"]
    return created["id"], tickets


async def _feed_raw(client: Client, device: DeviceHandle, accept: str) -> bytes:
    response = await client.get(
        "/v1/sync/changes", params={"limit": 5000}, headers={**device.headers, "Accept": accept}
    )
    assert response.status_code == 200, response.text
    return response.content


def _ring(page: wire.ChangesPage) -> ScannerKeyRing:
    ring = ScannerKeyRing()
    for change in page.changes:
        if isinstance(change, wire.KeysChange):
            ring = ring.merged(ScannerKeyRing.from_wire(change.keys))
    return ring


def _opened(page: wire.ChangesPage, code: str) -> str | None:
    """What a scanner that synced ``page`` shows for ``code`` offline: the sealed name from the
    feed, opened with the name secret the code carries."""
    decoded = read_code(_ring(page), code)
    assert isinstance(decoded, TicketCode)
    changes = [
        c
        for c in page.changes
        if isinstance(c, wire.TicketChange) and c.ticket_id == decoded.ticket_id
    ]
    return open_name(
        decoded.name_secret,
        changes[-1].sealed_holder,
        ticket_id=decoded.ticket_id,
        secret_version=decoded.secret_version,
    )


async def test_the_changes_feed_carries_no_holder_name_in_clear(
    client: Client, tenant: TenantHandle
) -> None:
    """Issue 14 item 7: any device token could read every holder's name from the feed."""
    event_id, tickets = await _sold(client, tenant)
    device = await enrolled_device(client, tenant, event_id)
    for accept in ("application/json", "application/msgpack"):
        raw = await _feed_raw(client, device, accept)
        for name in NAMES:
            for part in (name, *name.split()):
                assert part.encode() not in raw, f"{part!r} in clear in the {accept} feed"
                assert part.encode("unicode_escape") not in raw
    page = msgspec.json.decode(
        await _feed_raw(client, device, "application/json"), type=wire.ChangesPage
    )
    # ...and yet a gate that scans a ticket's code opens that ticket's name, and only that one.
    for ticket, name in zip(tickets, NAMES, strict=True):
        assert _opened(page, ticket["code"]) == name
    sealed = [c.sealed_holder for c in page.changes if isinstance(c, wire.TicketChange)]
    first = read_code(_ring(page), tickets[0]["code"])
    assert isinstance(first, TicketCode)
    assert [
        open_name(first.name_secret, s, ticket_id=first.ticket_id, secret_version=0) for s in sealed
    ].count(NAMES[0]) == 1


async def test_a_transfer_gives_a_new_name_secret_and_replays_carry_the_current_one(
    client: Client, tenant: TenantHandle
) -> None:
    event_id, tickets = await _sold(client, tenant)
    device = await enrolled_device(client, tenant, event_id)
    ticket_id = tickets[0]["ticket"]["id"]
    headers = {**tenant.token(), "Idempotency-Key": "move-it"}
    body = {"holder": {"user_id": "u9", "name": "Friend Newholder"}}
    moved = await client.post(f"/v1/tickets/{ticket_id}/transfer", json=body, headers=headers)
    assert moved.status_code == 200, moved.text
    replayed = await client.post(f"/v1/tickets/{ticket_id}/transfer", json=body, headers=headers)
    assert replayed.status_code == 200
    again = await client.get(f"/v1/tickets/{ticket_id}/code", headers=tenant.token())
    page = msgspec.json.decode(
        await _feed_raw(client, device, "application/json"), type=wire.ChangesPage
    )
    for code in (moved.json()["code"], replayed.json()["code"], again.json()["code"]):
        assert _opened(page, code) == "Friend Newholder"
    # The old holder's code (superseded) opens neither the new name nor, any more, the old one.
    old = read_code(_ring(page), tickets[0]["code"])
    assert isinstance(old, TicketCode)
    change = [
        c for c in page.changes if isinstance(c, wire.TicketChange) and c.ticket_id == old.ticket_id
    ][-1]
    for version in (0, 1):
        assert (
            open_name(
                old.name_secret,
                change.sealed_holder,
                ticket_id=old.ticket_id,
                secret_version=version,
            )
            is None
        )


async def test_the_database_keeps_the_name_secret_only_sealed(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    _, tickets = await _sold(client, tenant)
    code = tickets[0]["code"]
    async with connect(settings.database.admin_url) as connection:
        row = (
            (
                await connection.execute(
                    text("SELECT * FROM tickets WHERE id = :id"), {"id": tickets[0]["ticket"]["id"]}
                )
            )
            .mappings()
            .one()
        )
    sealed = row["name_secret_sealed"]
    assert sealed is not None
    assert len(sealed) == 1 + 12 + 16 + 16
    secret = MasterKey(settings.master_key).open_name_secret(
        sealed,
        tenant_id=tenant.id,
        ticket_id=uuid.UUID(tickets[0]["ticket"]["id"]),
        secret_version=0,
    )
    for value in row.values():
        if isinstance(value, bytes | str):
            blob = value if isinstance(value, bytes) else value.encode()
            assert secret not in blob
            assert secret.hex().encode() not in blob
    # ...and it is the one the code carries.
    ring = await _event_ring(settings, tenant, tickets[0]["ticket"]["event_id"])
    decoded = read_code(ring, code)
    assert isinstance(decoded, TicketCode)
    assert decoded.name_secret == secret


async def _event_ring(settings: Settings, tenant: TenantHandle, event_id: str) -> ScannerKeyRing:
    database = Database(settings.database)
    try:
        async with database.tenant(tenant.id) as session:
            return await KeyStore(settings.master_key).scanner_ring(
                session, uuid.UUID(event_id), tenant_id=tenant.id
            )
    finally:
        await database.close()


async def test_a_ticket_without_a_name_secret_gets_one_with_its_next_code(
    client: Client, tenant: TenantHandle, settings: Settings
) -> None:
    """Tickets sold before names were sealed: the feed sends no name until a code is made."""
    event_id, tickets = await _sold(client, tenant)
    ticket_id = tickets[1]["ticket"]["id"]
    async with connect(settings.database.admin_url) as connection:
        await connection.execute(
            text("UPDATE tickets SET name_secret_sealed = NULL WHERE id = :id"), {"id": ticket_id}
        )
        await connection.commit()
    device = await enrolled_device(client, tenant, event_id)
    page = msgspec.json.decode(
        await _feed_raw(client, device, "application/json"), type=wire.ChangesPage
    )
    before = [
        c
        for c in page.changes
        if isinstance(c, wire.TicketChange) and str(c.ticket_id) == ticket_id
    ]
    assert before[-1].sealed_holder is None
    fresh = await client.get(f"/v1/tickets/{ticket_id}/code", headers=tenant.token())
    assert fresh.status_code == 200
    page = msgspec.json.decode(
        await _feed_raw(client, device, "application/json"), type=wire.ChangesPage
    )
    assert _opened(page, fresh.json()["code"]) == NAMES[1]


# --- item 12: what a junk code costs ------------------------------------------------------


@contextmanager
def _key_queries() -> Iterator[list[str]]:
    """The statements that read the key table while the block runs."""
    seen: list[str] = []

    def count(*args: Any) -> None:
        statement = args[2]
        if re.search(r"\bFROM keys\b", statement):
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


def _junk(count: int) -> list[str]:
    """Well-formed codes under keys nobody has: GH1 with random key ids, GH2 with random
    hints (random bytes of the right size)."""
    texts = []
    for number in range(count):
        if number % 2:
            texts.append("GH1" + base64.b32encode(os.urandom(CODE_BYTES_V1)).decode())
        else:
            texts.append("GH2" + base64.b32encode(os.urandom(160)).decode())
    return texts


def _scan(code: str) -> dict[str, Any]:
    return {
        "scan_id": str(new_id()),
        "code": code,
        "gate": "North 1",
        "direction": "entry",
        "scanned_at": EVENT_NIGHT.isoformat(),
        "clock_offset_ms": 0,
        "device_result": "rejected",
        "device_reason": "unknown_key",
    }


async def test_junk_codes_cost_at_most_one_key_query_whatever_the_batch_size(
    client: Client, tenant: TenantHandle
) -> None:
    """Issue 14 item 12: each code with a well-formed unknown key id cost a key-ring reload and
    a key lookup — two queries per code, about 1.2 million a minute from one device."""
    event_id, tickets = await _sold(client, tenant)
    device = await enrolled_device(client, tenant, event_id)
    costs = []
    for size in (10, 400):
        with _key_queries() as seen:
            response = await client.post(
                "/v1/sync/scans",
                json={"scans": [_scan(c) for c in _junk(size)]},
                headers=device.headers,
            )
        assert response.status_code == 200, response.text
        outcomes = response.json()["outcomes"]
        assert {o["reason"] for o in outcomes} == {"unknown_key"}
        costs.append(len(seen))
    assert max(costs) <= 1, costs
    # A burst of online checks of junk reloads the rings no more than once either.
    with _key_queries() as seen:
        for code in _junk(60):
            answer = await client.post("/v1/validate", json={"code": code}, headers=device.headers)
            assert answer.status_code == 422
            assert answer.json()["reason"] == "unknown_key"
    assert len(seen) <= 1, seen
    # Genuine codes still read, also of another event of the tenant (wrong event).
    _, others = await _sold(client, tenant)
    wrong = await client.post(
        "/v1/validate", json={"code": others[0]["code"]}, headers=device.headers
    )
    assert wrong.json()["reason"] == "wrong_event"
    good = await client.post(
        "/v1/validate", json={"code": tickets[0]["code"]}, headers=device.headers
    )
    assert good.json()["result"] == "admitted"


async def test_keys_made_by_another_instance_are_read_after_the_reload_interval(
    client: Client, tenant: TenantHandle, settings: Settings, clock: ManualClock
) -> None:
    """The price of reading from memory, and its bound: a rotation made by another server
    process is seen once the reload interval has passed; a junk marker seen again is free."""
    event_id, tickets = await _sold(client, tenant)
    device = await enrolled_device(client, tenant, event_id)
    first = await client.post(
        "/v1/validate", json={"code": tickets[0]["code"]}, headers=device.headers
    )
    assert first.json()["result"] == "admitted"  # this instance has the tenant's rings now
    database = Database(settings.database)
    try:
        async with database.tenant(tenant.id) as session:  # another instance rotates
            await KeyStore(settings.master_key).rotate(
                session, tenant_id=tenant.id, event_id=uuid.UUID(event_id)
            )
    finally:
        await database.close()
    fresh = await client.get(
        f"/v1/tickets/{tickets[1]['ticket']['id']}/code", headers=tenant.token()
    )
    code = fresh.json()["code"]
    with _key_queries() as seen:
        early = await client.post("/v1/validate", json={"code": code}, headers=device.headers)
    assert (early.json()["reason"], len(seen)) == ("unknown_key", 0)
    clock.advance(RELOAD_INTERVAL)
    with _key_queries() as seen:
        late = await client.post("/v1/validate", json={"code": code}, headers=device.headers)
    assert (late.json()["result"], len(seen)) == ("admitted", 1)
    # A junk key id found unknown is remembered: asking again after the interval costs nothing.
    junk = _junk(2)[1]
    clock.advance(RELOAD_INTERVAL)
    with _key_queries() as seen:
        await client.post("/v1/validate", json={"code": junk}, headers=device.headers)
        clock.advance(RELOAD_INTERVAL)
        again = junk[:3] + junk[3:10] + ("A" if junk[10] != "A" else "B") + junk[11:]
        await client.post("/v1/validate", json={"code": again}, headers=device.headers)
    assert len(seen) == 1
