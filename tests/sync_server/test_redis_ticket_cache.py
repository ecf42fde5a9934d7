"""The read-through ticket cache (``ticket:{id}``) against the real Redis and Postgres: what
is stored, that every kind of write to a ticket invalidates it after commit, that a rolled-back
write does not, that a slow reader cannot put back an old row, and tenant isolation."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar
from redis.asyncio import Redis

from shared.domain import TicketStatus
from shared.ids import new_id
from sync_server.app import Services, services
from sync_server.db.engine import ticket_written
from sync_server.domain.tickets.schemas import Holder, TicketOut
from sync_server.domain.tickets.services import expire_tickets
from sync_server.redis.ticket_cache import TOMBSTONE_PREFIX, TicketCache
from sync_server.settings import Settings
from tests.sync_server import redis_service
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import HOLDER, Client, bought, concurrent_client, enrolled_device

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    async with redis_service.client(settings.redis) as client:
        yield client


@pytest.fixture
async def api(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """The API in the test's own event loop, so the test may use its Redis and database."""
    async with concurrent_client(app) as http:
        yield http


@pytest.fixture
def app_services(app: Litestar, api: httpx.AsyncClient) -> Services:
    return services(app)  # ``api`` has started the app


def _key(settings: Settings, ticket_id: str) -> str:
    return f"{settings.redis.key_prefix}ticket:{ticket_id}"


async def _cached(redis: Redis, settings: Settings, ticket_id: str) -> dict[str, Any] | None:
    """The cached answer, or None when the key is empty or holds a tombstone."""
    raw = await redis_service.text(redis, _key(settings, ticket_id))
    if raw is None or raw.startswith(TOMBSTONE_PREFIX):
        return None
    value: dict[str, Any] = json.loads(raw)
    return value


async def _tombstoned(redis: Redis, settings: Settings, ticket_id: str) -> bool:
    return (await redis_service.text(redis, _key(settings, ticket_id)) or "").startswith(
        TOMBSTONE_PREFIX
    )


async def _read(api: Client, tenant: TenantHandle, ticket_id: str) -> Any:
    response = await api.get(f"/v1/tickets/{ticket_id}", headers=tenant.token())
    assert response.status_code == 200, response.text
    return response.json()


async def _poke(redis: Redis, settings: Settings, ticket_id: str, name: str) -> None:
    """Change the cached copy behind the server's back, to see whether an answer came from it."""
    key = _key(settings, ticket_id)
    value = json.loads(await redis_service.text(redis, key) or "null")
    value["ticket"]["holder"]["name"] = name
    await redis.set(key, json.dumps(value), keepttl=True)


async def test_a_read_fills_the_cache_and_the_next_read_is_served_from_it(
    api: httpx.AsyncClient, tenant: TenantHandle, redis: Redis, settings: Settings
) -> None:
    ticket_id = (await bought(api, tenant))["tickets"][0]["ticket"]["id"]
    assert (
        await redis_service.text(redis, _key(settings, ticket_id)) is None
    )  # a purchase stores nothing

    first = await _read(api, tenant, ticket_id)
    cached = await _cached(redis, settings, ticket_id)
    assert cached == {"tenant_id": str(tenant.id), "ticket": first}
    assert 290 <= await redis.ttl(_key(settings, ticket_id)) <= 300

    await _poke(redis, settings, ticket_id, "From the cache")
    assert (await _read(api, tenant, ticket_id))["holder"]["name"] == "From the cache"


async def test_transfer_revoke_and_check_in_invalidate_after_commit(
    api: httpx.AsyncClient, tenant: TenantHandle, redis: Redis, settings: Settings
) -> None:
    purchase = await bought(api, tenant, quantity=2)
    ticket_id = purchase["tickets"][0]["ticket"]["id"]
    await _read(api, tenant, ticket_id)

    transferred = await api.post(
        f"/v1/tickets/{ticket_id}/transfer",
        json={"holder": {"user_id": "user-2", "name": "Grace Guest"}},
        headers={**tenant.token(), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert transferred.status_code == 200, transferred.text
    assert await _tombstoned(redis, settings, ticket_id)
    after_transfer = await _read(api, tenant, ticket_id)
    assert after_transfer["secret_version"] == 1
    assert after_transfer["holder"]["name"] == "Grace Guest"
    assert (await _cached(redis, settings, ticket_id))["ticket"]["secret_version"] == 1  # type: ignore[index]

    # An online check-in (first admission) and its annulment change the status.
    code = transferred.json()["code"]
    admitted = await api.post(
        "/v1/validate", json={"code": code, "gate": "Box office"}, headers=tenant.token()
    )
    assert admitted.status_code == 200, admitted.text
    assert (await _read(api, tenant, ticket_id))["status"] == TicketStatus.CHECKED_IN
    annulled = await api.post(
        f"/v1/scans/{admitted.json()['scan_id']}/annul", headers=tenant.token()
    )
    assert annulled.status_code == 200, annulled.text
    assert (await _read(api, tenant, ticket_id))["status"] == TicketStatus.ACTIVE

    revoked = await api.post(
        f"/v1/tickets/{ticket_id}/revoke",
        json={"reason": "chargeback"},
        headers={**tenant.token(), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert revoked.status_code == 200, revoked.text
    assert (await _read(api, tenant, ticket_id))["status"] == TicketStatus.REVOKED
    assert (await _cached(redis, settings, ticket_id))["ticket"]["status"] == "revoked"  # type: ignore[index]


async def test_offline_admissions_and_expiry_invalidate(
    api: httpx.AsyncClient,
    tenant: TenantHandle,
    redis: Redis,
    settings: Settings,
    app_services: Services,
) -> None:
    purchase = await bought(api, tenant, quantity=2)
    first, second = (t["ticket"]["id"] for t in purchase["tickets"])
    event_id = purchase["tickets"][0]["ticket"]["event_id"]
    await _read(api, tenant, first)
    await _read(api, tenant, second)

    device = await enrolled_device(api, tenant, event_id)
    scan = {
        "scan_id": str(new_id()),
        "code": purchase["tickets"][0]["code"],
        "gate": device.gate,
        "direction": "entry",
        "scanned_at": "2030-05-01T19:30:00+00:00",
        "clock_offset_ms": 0,
        "device_result": "admitted",
    }
    uploaded = await api.post("/v1/sync/scans", json={"scans": [scan]}, headers=device.headers)
    assert uploaded.status_code == 200, uploaded.text
    assert (await _read(api, tenant, first))["status"] == TicketStatus.CHECKED_IN

    # The expiry job runs outside any request: the database's commit hook still reaches the
    # cache (the API's Database carries it; ``gatehouse-server expire`` wires its own).
    async with app_services.database.tenant(tenant.id) as session:
        assert await expire_tickets(session, datetime(2031, 1, 1, tzinfo=UTC)) == 2
    assert await _tombstoned(redis, settings, second)
    assert (await _read(api, tenant, second))["status"] == TicketStatus.EXPIRED


async def test_a_rolled_back_write_announces_nothing(
    api: httpx.AsyncClient,
    tenant: TenantHandle,
    redis: Redis,
    settings: Settings,
    app_services: Services,
) -> None:
    ticket_id = (await bought(api, tenant))["tickets"][0]["ticket"]["id"]
    await _read(api, tenant, ticket_id)
    before = await redis_service.text(redis, _key(settings, ticket_id))

    with pytest.raises(RuntimeError, match="changed my mind"):
        async with app_services.database.tenant(tenant.id) as session:
            ticket_written(session, uuid.UUID(ticket_id))
            raise RuntimeError("changed my mind")
    assert await redis_service.text(redis, _key(settings, ticket_id)) == before

    # A refused write through the API (already revoked: 409) leaves the cache alone too.
    for expected in (200, 409):
        response = await api.post(
            f"/v1/tickets/{ticket_id}/revoke",
            json={"reason": "fraud"},
            headers={**tenant.token(), "Idempotency-Key": str(uuid.uuid4())},
        )
        assert response.status_code == expected
        if expected == 200:
            await _read(api, tenant, ticket_id)
            before = await redis_service.text(redis, _key(settings, ticket_id))
    assert await redis_service.text(redis, _key(settings, ticket_id)) == before


async def test_a_reader_that_read_the_old_row_cannot_store_it_after_a_write(
    redis: Redis, settings: Settings, app_services: Services
) -> None:
    """The race: miss → read the old row → (a writer commits and invalidates) → store. The
    store must not happen, or the old row would be served for five minutes."""
    cache: TicketCache[TicketOut] = app_services.ticket_cache
    tenant_id, ticket_id = uuid.uuid4(), uuid.uuid4()
    old = _ticket(ticket_id, "Old Holder")

    async def load_then_a_write_commits() -> TicketOut:
        row = old  # read before the writer commits
        await cache.invalidate([ticket_id])  # the writer's after-commit invalidation
        return row

    assert await cache.read(tenant_id, ticket_id, load_then_a_write_commits) == old
    assert await _tombstoned(redis, settings, str(ticket_id))

    # The next reader (after the write) sees the tombstone, reads the new row and stores it.
    new = _ticket(ticket_id, "New Holder")

    async def load_new() -> TicketOut:
        return new

    assert await cache.read(tenant_id, ticket_id, load_new) == new
    assert (await _cached(redis, settings, str(ticket_id)))["ticket"]["holder"]["name"] == (  # type: ignore[index]
        "New Holder"
    )


async def test_a_cached_ticket_is_never_served_to_another_tenant(
    api: httpx.AsyncClient,
    tenant: TenantHandle,
    make_tenant: Any,
    redis: Redis,
    settings: Settings,
) -> None:
    ticket_id = (await bought(api, tenant))["tickets"][0]["ticket"]["id"]
    await _read(api, tenant, ticket_id)
    cached = await redis_service.text(redis, _key(settings, ticket_id))

    intruder: TenantHandle = await make_tenant("Intruder")
    response = await api.get(f"/v1/tickets/{ticket_id}", headers=intruder.token())
    assert response.status_code == 404
    assert (
        await redis_service.text(redis, _key(settings, ticket_id)) == cached
    )  # untouched, not replaced


async def test_invalidations_redis_did_not_take_are_written_when_it_answers_again(
    redis: Redis, settings: Settings, app_services: Services
) -> None:
    """Redis reachable again, but this process missed it: the kept invalidation is written
    before this process reads the cache again."""
    cache: TicketCache[TicketOut] = app_services.ticket_cache
    tenant_id, ticket_id = uuid.uuid4(), uuid.uuid4()
    stale = _ticket(ticket_id, "Stale")
    value = msgspec.json.encode({"tenant_id": tenant_id, "ticket": stale})
    await redis.set(_key(settings, str(ticket_id)), value, ex=300)

    app_services.redis.mark_down(ConnectionError("simulated"))
    await cache.invalidate([ticket_id])  # not written: Redis is "down"
    fresh = _ticket(ticket_id, "Fresh")

    async def load() -> TicketOut:
        return fresh

    assert await cache.read(tenant_id, ticket_id, load) == fresh  # cache skipped while down
    assert await app_services.redis.ping()  # answers again: the kept invalidation is written
    assert await _tombstoned(redis, settings, str(ticket_id))
    assert await cache.read(tenant_id, ticket_id, load) == fresh


def _ticket(ticket_id: uuid.UUID, name: str) -> TicketOut:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    return TicketOut(
        id=ticket_id,
        event_id=uuid.uuid4(),
        ticket_type_id=uuid.uuid4(),
        purchase_id=uuid.uuid4(),
        status=TicketStatus.ACTIVE,
        secret_version=0,
        holder=Holder(user_id=HOLDER["user_id"], name=name),
        nft_mint=None,
        blockchain_sync_status="not_minted",
        created_at=now,
        updated_at=now + timedelta(seconds=1),
    )
