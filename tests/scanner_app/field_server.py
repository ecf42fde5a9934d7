"""The sync server's app in this process, over the session's migrated database, under the
scanner's own ``ServerClient`` (``litestar``'s test transport): both sides read one
``ManualClock``, so hours pass without waiting. A switch takes the server off the network, as a
festival field loses it; subclasses add switches of their own (``intercept``)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from litestar.testing import TestClient
from litestar.testing.transport import TestClientTransport as AppTransport

from benchmarks.server_harness import BenchDatabase
from scanner_app.core.sync.client import ServerClient
from shared.clock import ManualClock
from sync_server.app import create_app
from sync_server.domain.tenants.services import create_tenant
from sync_server.http.auth import Role, mint_token
from sync_server.settings import AuthSettings, RedisSettings, Settings

SERVER_URL = "https://gatehouse.test"


@dataclass
class FieldServer:
    """The server in this process, its manager, and a switch for the network."""

    http: TestClient[Any]
    clock: ManualClock
    tenant_id: uuid.UUID
    jwt_secret: str
    reachable: bool = True
    sold: list[str] = field(default_factory=list)

    def manager(self) -> dict[str, str]:
        token = mint_token(
            self.jwt_secret,
            tenant_id=self.tenant_id,
            role=Role.MANAGER,
            subject="manager",
            ttl_seconds=600,
            now=self.clock.now(),
        )
        return {"Authorization": f"Bearer {token}"}

    def intercept(self, request: httpx.Request) -> httpx.Response | None:
        """What stands between the scanner and the server for ``request``: None lets it
        through; an answer (or a raised ``httpx`` error) is what the scanner gets instead."""
        return None

    def client_factory(self, url: str, token: str | None) -> ServerClient:
        transport = AppTransport(client=self.http)

        def handle(request: httpx.Request) -> httpx.Response:
            if not self.reachable:
                raise httpx.ConnectError("no network on the field", request=request)
            answer = self.intercept(request)
            return answer if answer is not None else transport.handle_request(request)

        return ServerClient(url, token, transport=httpx.MockTransport(handle))

    def post(self, path: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
        answer = self.http.post(path, json=body, headers={**self.manager(), **headers})
        assert answer.status_code in (200, 201), answer.text
        found: dict[str, Any] = answer.json()
        return found

    def enrollment_code(self, tickets: int = 3) -> str:
        """An event running for four days, ``tickets`` sold (their codes in ``sold``), and an
        enrollment code for its gate N."""
        now = self.clock.now()
        event = self.post(
            "/v1/events",
            {
                "name": "Field festival",
                "venue": "Field",
                "starts_at": (now - timedelta(hours=1)).isoformat(),
                "ends_at": (now + timedelta(days=4)).isoformat(),
            },
        )
        kind = self.post(f"/v1/events/{event['id']}/ticket-types", {"name": "Pass", "capacity": 50})
        purchase = self.post(
            "/v1/purchases",
            {
                "ticket_type_id": kind["id"],
                "quantity": tickets,
                "holder": {"user_id": "guest", "name": "Guest"},
            },
            **{"Idempotency-Key": str(uuid.uuid4())},
        )
        self.sold = [t["code"] for t in purchase["tickets"]]
        return str(
            self.post("/v1/devices/enrollments", {"event_id": event["id"], "gate": "N"})["code"]
        )


F = TypeVar("F", bound=FieldServer)


@contextmanager
def field_server(
    database: BenchDatabase,
    make: Callable[[TestClient[Any], ManualClock, uuid.UUID, str], F],
) -> Iterator[F]:
    """A new tenant on ``database`` and the app serving it, as ``make`` wraps them."""
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    jwt_secret = secrets.token_urlsafe(32)
    settings = Settings(
        database=database.settings(pool_size=2),
        redis=RedisSettings(key_prefix=f"gatehouse-test-{secrets.token_hex(4)}:"),
        auth=AuthSettings(jwt_secret=jwt_secret),
        master_key=secrets.token_bytes(32),
        environment="test",
    )
    tenant_id = asyncio.run(create_tenant(database.admin_url, "Field festival"))
    with TestClient(app=create_app(settings, clock=clock), base_url=SERVER_URL) as http:
        yield make(http, clock, tenant_id, jwt_secret)
