"""Small helpers shared by the server tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from shared.keys import IssuerKeyRing
from sync_server.db.engine import Database
from sync_server.domain.keys.services import KeyStore
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle

Client = AsyncTestClient[Litestar] | httpx.AsyncClient

EVENT = {
    "name": "Spring Concert",
    "venue": "Main Hall",
    "starts_at": "2030-05-01T19:00:00Z",
    "ends_at": "2030-05-01T23:00:00Z",
}
HOLDER = {"user_id": "user-1", "name": "Ada Guest"}


async def create_event(client: Client, tenant: TenantHandle, **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/events", json={**EVENT, **fields}, headers=tenant.token())
    assert response.status_code == 201, response.text
    event: dict[str, Any] = response.json()
    return event


async def create_ticket_type(
    client: Client, tenant: TenantHandle, event_id: str, capacity: int = 100, name: str = "General"
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/events/{event_id}/ticket-types",
        json={"name": name, "capacity": capacity},
        headers=tenant.token(),
    )
    assert response.status_code == 201, response.text
    ticket_type: dict[str, Any] = response.json()
    return ticket_type


async def buy(
    client: Client,
    tenant: TenantHandle,
    ticket_type_id: str,
    quantity: int = 1,
    key: str | None = None,
    holder: dict[str, str] | None = None,
) -> Any:
    return await client.post(
        "/v1/purchases",
        json={"ticket_type_id": ticket_type_id, "quantity": quantity, "holder": holder or HOLDER},
        headers={**tenant.token(), "Idempotency-Key": key or str(uuid.uuid4())},
    )


async def bought(client: Client, tenant: TenantHandle, quantity: int = 1) -> dict[str, Any]:
    """A fresh event and ticket type, and a successful purchase of ``quantity`` tickets."""
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    response = await buy(client, tenant, ticket_type["id"], quantity)
    assert response.status_code == 201, response.text
    purchase: dict[str, Any] = response.json()
    return purchase


def assert_problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code, body
    assert body["detail"]
    assert body["title"]


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[AsyncConnection]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            yield connection
    finally:
        await engine.dispose()


@asynccontextmanager
async def concurrent_client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests really run at the same time: Litestar's test client handles one
    request at a time, so races must go through an ASGI transport with the app's lifespan."""
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]  # narrower scope types
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield http


@dataclass(frozen=True)
class DeviceHandle:
    device_id: str
    gate: str
    headers: dict[str, str]


async def enrolled_device(
    client: Client, tenant: TenantHandle, event_id: str, gate: str = "North 1"
) -> DeviceHandle:
    """A scanner enrolled for ``gate`` of the event, through the real enrollment flow."""
    created = await client.post(
        "/v1/devices/enrollments",
        json={"event_id": event_id, "gate": gate},
        headers=tenant.token(),
    )
    assert created.status_code == 201, created.text
    enrolled = await client.post(
        "/v1/devices/enroll",
        json={"code": created.json()["code"], "device_name": f"{gate} scanner"},
    )
    assert enrolled.status_code == 201, enrolled.text
    body = enrolled.json()
    return DeviceHandle(
        body["device_id"], gate, {"Authorization": f"Bearer {body['device_token']}"}
    )


async def issuer_ring(settings: Settings, tenant_id: uuid.UUID, event_id: str) -> IssuerKeyRing:
    """The event's issuer keys, as the server holds them: to make codes the API does not make
    (a ticket not on the list, a secret version ahead of the ticket's)."""
    database = Database(settings.database)
    try:
        async with database.tenant(tenant_id) as session:
            return await KeyStore(settings.master_key).issuer_ring(
                session, uuid.UUID(event_id), tenant_id=tenant_id
            )
    finally:
        await database.close()


def sample_value(body: bytes, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus exposition ``body``, or None."""
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if isinstance(sample, Sample) and sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None
