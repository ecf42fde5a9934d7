"""The real sync server for the scanner's integration tests, and a back office to set it up.

The scanner's sync engine talks to the server with a synchronous httpx client from a thread of
its own, and its tests stop and restart the server under it: so the server here is a real
``gatehouse-server serve`` process on 127.0.0.1 (one uvicorn worker), not an ASGI transport.

* ``live_database`` (session): a throw-away database built by the migrations, dropped at the end.
* ``shared_live_server`` (session): one server process for the whole run, on a port it keeps
  across restarts, with fixed secrets, so tokens, device tokens and ticket keys stay valid.
* ``live_server`` (function): that server, started again if an earlier test left it stopped.
* ``back_office`` (function): a fresh tenant, and a client acting as its venue manager.

Tenants keep tests apart (row-level security), so the tests share one server and one database.
Starting the server takes about 0.6 s; a test that stops it pays that once, the next test
finds it running again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import msgspec
import pytest

from benchmarks.server_harness import (
    BenchDatabase,
    Secrets,
    Server,
    fresh_database,
    gatehouse_serve_command,
    restartable_port,
    server_env,
)
from shared.wire import CheckinListOut, DeviceSelf, EnrolledDevice
from sync_server.domain.checkin.schemas import ConflictResolutionOut
from sync_server.domain.devices.schemas import DeviceOut, DevicePage, EnrollmentOut
from sync_server.domain.events.schemas import EventOut, KeyOut, KeyRetirement, TicketTypeOut
from sync_server.domain.scans.schemas import EventStats, ScanOut, ScanPage
from sync_server.domain.tenants.services import create_tenant
from sync_server.domain.tickets.schemas import (
    MAX_PER_PURCHASE,
    PurchaseOut,
    TicketOut,
    TicketWithCode,
    TransitionOut,
)
from sync_server.http.auth import Role, mint_token

T = TypeVar("T")

#: Enough for a handful of scanners and the back office; the sync_server tests share Postgres.
POOL_SIZE = 5
#: A test's server stops in well under a second; this bounds a shutdown stuck on a request.
STOP_TIMEOUT_S = 5.0
TOKEN_TTL_S = 6 * 3600


# --- the server -------------------------------------------------------------------------------


class LiveServer:
    """``gatehouse-server serve`` on a fixed port of 127.0.0.1 over one database.

    ``stop()`` and ``kill()`` take it down (connections are refused until ``start()``);
    ``start()`` brings it back on the same port with the same secrets, so every token and
    key handed out before still works.
    """

    def __init__(self, database: BenchDatabase, keys: Secrets, port: int | None = None) -> None:
        self.database = database
        self.secrets = keys
        self.port = port or restartable_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = server_env(
            database,
            keys,
            GATEHOUSE_ENV="test",
            GATEHOUSE_DATABASE_POOL_SIZE=str(POOL_SIZE),
            GATEHOUSE_DATABASE_MAX_OVERFLOW=str(POOL_SIZE),
        )
        self._server = Server(
            gatehouse_serve_command(self.port, workers=1),
            self.port,
            env,
            stop_timeout_s=STOP_TIMEOUT_S,
        )

    @property
    def running(self) -> bool:
        return self._server.running

    def start(self) -> None:
        """Start the server and wait until it answers. Raises ``RuntimeError`` (with the tail
        of its log) if it is already running or does not come up."""
        self._server.start()

    def stop(self) -> None:
        """Shut the server down (SIGTERM, SIGKILL after a few seconds); returns once the port
        refuses connections. Does nothing when it is not running."""
        self._server.stop()

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash or a power cut would."""
        self._server.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    def ensure_running(self) -> None:
        if not self.running:
            self.stop()  # reap a server that died by itself
            self.start()

    def close(self) -> None:
        """Stop for good and delete the log."""
        self._server.close()

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's output (all its runs), for a failing test's message."""
        return self._server.log_tail(lines)

    def token(
        self,
        tenant_id: uuid.UUID,
        role: Role = Role.MANAGER,
        subject: str = "live-test",
        ttl_seconds: int = TOKEN_TTL_S,
    ) -> str:
        """A bearer token for a manager or a service of ``tenant_id``, minted with the
        server's own secret (scanner tokens come from enrolling a device)."""
        return mint_token(
            self.secrets.jwt_secret,
            tenant_id=tenant_id,
            role=role,
            subject=subject,
            ttl_seconds=ttl_seconds,
        )


# --- the back office ------------------------------------------------------------------------


class ApiError(Exception):
    """The server answered a set-up call with an unexpected status; ``code`` is the problem's
    stable code (``sold_out``, ``already_revoked``...) when it sent one."""

    def __init__(self, method: str, path: str, response: httpx.Response) -> None:
        self.status = response.status_code
        self.body = response.text
        self.code: str | None = None
        try:
            problem = response.json()
        except ValueError:
            problem = None
        if isinstance(problem, dict):
            self.code = problem.get("code")
        super().__init__(f"{method} {path} answered {self.status}: {self.body[:500]}")


@dataclass(frozen=True, slots=True)
class SoldTicket:
    """A ticket as its holder has it: the id and the text of its QR code."""

    id: uuid.UUID
    code: str
    secret_version: int
    holder_name: str


@dataclass(frozen=True, slots=True)
class OnSale:
    """An event, its ticket type and the tickets sold for it."""

    event: EventOut
    ticket_type: TicketTypeOut
    tickets: list[SoldTicket]

    @property
    def event_id(self) -> uuid.UUID:
        return self.event.id


def _sold(ticket: TicketOut, code: str) -> SoldTicket:
    return SoldTicket(
        id=ticket.id,
        code=code,
        secret_version=ticket.secret_version,
        holder_name=ticket.holder.name,
    )


def _json(payload: dict[str, Any]) -> dict[str, Any]:
    """Drop the fields left at None, so that the server applies its defaults."""
    return {k: v for k, v in payload.items() if v is not None}


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class BackOffice:
    """One tenant's venue manager (or ticketing service) setting up a live server over HTTP.

    Every method is one or a few API calls that must succeed; any other answer raises
    ``ApiError``. Answers come back as the server's own response types. Each request opens a
    fresh connection, so a restart of the server between calls does no harm.
    """

    def __init__(self, server: LiveServer, tenant_id: uuid.UUID, role: Role = Role.MANAGER) -> None:
        self.server = server
        self.tenant_id = tenant_id
        self.token = server.token(tenant_id, role)
        self._http = httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30.0,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    @classmethod
    def for_new_tenant(cls, server: LiveServer, name: str = "Live venue") -> BackOffice:
        """A new tenant, created with the owner's connection as operators do. Call it outside
        a running event loop."""
        tenant_id = asyncio.run(create_tenant(server.database.admin_url, name))
        return cls(server, tenant_id)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BackOffice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self,
        method: str,
        path: str,
        answer: type[T],
        *,
        expect: int = 200,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> T:
        response = self._http.request(method, path, json=body, params=params, headers=headers)
        if response.status_code != expect:
            raise ApiError(method, path, response)
        return msgspec.json.decode(response.content, type=answer)

    # events

    def create_event(
        self,
        name: str = "Live concert",
        venue: str = "Main Hall",
        *,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
        allow_reentry: bool = False,
        admission_opens_at: datetime | None = None,
    ) -> EventOut:
        """An event; by default one that started an hour ago and ends in six hours, so gates
        admit now."""
        now = datetime.now(UTC)
        body = {
            "name": name,
            "venue": venue,
            "starts_at": (starts_at or now - timedelta(hours=1)).isoformat(),
            "ends_at": (ends_at or now + timedelta(hours=6)).isoformat(),
            "allow_reentry": allow_reentry,
            "admission_opens_at": _time(admission_opens_at),
        }
        return self._call("POST", "/v1/events", EventOut, expect=201, body=_json(body))

    def create_ticket_type(
        self, event_id: uuid.UUID, name: str = "General", capacity: int = 1000
    ) -> TicketTypeOut:
        return self._call(
            "POST",
            f"/v1/events/{event_id}/ticket-types",
            TicketTypeOut,
            expect=201,
            body={"name": name, "capacity": capacity},
        )

    def create_checkin_list(self, event_id: uuid.UUID, **fields: Any) -> CheckinListOut:
        """A check-in list of the event (``POST .../checkin-lists``' fields, ids as UUIDs)."""
        return self._call(
            "POST",
            f"/v1/events/{event_id}/checkin-lists",
            CheckinListOut,
            expect=201,
            body=_json(fields),
        )

    def change_checkin_list(
        self, event_id: uuid.UUID, list_id: uuid.UUID, **fields: Any
    ) -> CheckinListOut:
        return self._call(
            "PATCH",
            f"/v1/events/{event_id}/checkin-lists/{list_id}",
            CheckinListOut,
            body=_json(fields),
        )

    def stats(self, event_id: uuid.UUID) -> EventStats:
        return self._call("GET", f"/v1/events/{event_id}/stats", EventStats)

    # tickets

    def buy(
        self,
        ticket_type_id: uuid.UUID,
        quantity: int = 1,
        *,
        holder_name: str = "Ada Guest",
        user_id: str | None = None,
    ) -> list[SoldTicket]:
        """``quantity`` tickets for one holder, in purchases of at most 50 (each with its own
        ``Idempotency-Key``). Raises ``ApiError`` with ``code == "sold_out"`` past capacity."""
        holder = {"user_id": user_id or f"user-{uuid.uuid4().hex[:12]}", "name": holder_name}
        sold: list[SoldTicket] = []
        while len(sold) < quantity:
            count = min(MAX_PER_PURCHASE, quantity - len(sold))
            purchase = self._call(
                "POST",
                "/v1/purchases",
                PurchaseOut,
                expect=201,
                body={"ticket_type_id": str(ticket_type_id), "quantity": count, "holder": holder},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            sold.extend(_sold(t.ticket, t.code) for t in purchase.tickets)
        return sold

    def event_on_sale(self, tickets: int = 3, **event: Any) -> OnSale:
        """An event (``create_event``'s keywords), one ticket type and ``tickets`` sold."""
        created = self.create_event(**event)
        ticket_type = self.create_ticket_type(created.id, capacity=max(tickets, 1000))
        return OnSale(created, ticket_type, self.buy(ticket_type.id, tickets))

    def ticket(self, ticket_id: uuid.UUID) -> TicketOut:
        return self._call("GET", f"/v1/tickets/{ticket_id}", TicketOut)

    def history(self, ticket_id: uuid.UUID) -> list[TransitionOut]:
        """The ticket's lifecycle steps, oldest first: who changed it, and why when said."""
        return self._call("GET", f"/v1/tickets/{ticket_id}/history", list[TransitionOut])

    def transfer(
        self, ticket_id: uuid.UUID, holder_name: str = "Bea Newholder", user_id: str | None = None
    ) -> SoldTicket:
        """Give the ticket to a new holder: the returned code has the new secret version; the
        old one is now ``superseded``."""
        holder = {"user_id": user_id or f"user-{uuid.uuid4().hex[:12]}", "name": holder_name}
        moved = self._call(
            "POST",
            f"/v1/tickets/{ticket_id}/transfer",
            TicketWithCode,
            body={"holder": holder},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        return _sold(moved.ticket, moved.code)

    def revoke(self, ticket_id: uuid.UUID, reason: str = "Refunded") -> TicketOut:
        return self._call(
            "POST",
            f"/v1/tickets/{ticket_id}/revoke",
            TicketOut,
            body={"reason": reason},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )

    def resolve_conflict(
        self, scan_id: uuid.UUID, action: str = "accept", note: str | None = None
    ) -> ConflictResolutionOut:
        """``POST /v1/scans/{id}/resolve``: a manager judges a double entry."""
        body: dict[str, Any] = {"action": action}
        if note is not None:
            body["note"] = note
        return self._call("POST", f"/v1/scans/{scan_id}/resolve", ConflictResolutionOut, body=body)

    def code(self, ticket_id: uuid.UUID) -> SoldTicket:
        """The ticket with a fresh code of its current secret version."""
        found = self._call("GET", f"/v1/tickets/{ticket_id}/code", TicketWithCode)
        return _sold(found.ticket, found.code)

    # keys

    def keys(self, event_id: uuid.UUID) -> list[KeyOut]:
        return self._call("GET", f"/v1/events/{event_id}/keys", list[KeyOut])

    def retire_key(self, event_id: uuid.UUID, key_id: int) -> KeyRetirement:
        """Retire one of the event's keys (after a lost scanner); its tickets get new codes."""
        return self._call("POST", f"/v1/events/{event_id}/keys/{key_id}/retire", KeyRetirement)

    # devices

    def create_enrollment(
        self, event_id: uuid.UUID, gate: str = "North 1", ttl_seconds: int | None = None
    ) -> EnrollmentOut:
        """A one-time code that enrolls one scanner for ``gate`` of the event."""
        body = {"event_id": str(event_id), "gate": gate, "ttl_seconds": ttl_seconds}
        return self._call(
            "POST", "/v1/devices/enrollments", EnrollmentOut, expect=201, body=_json(body)
        )

    def enrolled_device(
        self, event_id: uuid.UUID, gate: str = "North 1", device_name: str | None = None
    ) -> EnrolledDevice:
        """A code created and redeemed at once: a device for tests that need one without
        going through the scanner's own enrollment."""
        enrollment = self.create_enrollment(event_id, gate)
        return enroll(self.server.url, enrollment.code, device_name or f"{gate} scanner")

    def devices(self, event_id: uuid.UUID | None = None) -> list[DeviceOut]:
        params = {"limit": "500"} | ({"event_id": str(event_id)} if event_id else {})
        return self._call("GET", "/v1/devices", DevicePage, params=params).items

    def revoke_device(self, device_id: uuid.UUID) -> None:
        """Revoke a device: its token is refused (401 ``device_revoked``) from now on."""
        response = self._http.delete(f"/v1/devices/{device_id}")
        if response.status_code != 204:
            raise ApiError("DELETE", f"/v1/devices/{device_id}", response)

    # scans

    def scans(self, event_id: uuid.UUID, **filters: str | bool) -> list[ScanOut]:
        """Every scan of the event the server holds, oldest first, all pages. ``filters`` are
        the scan log's other query parameters (``gate``, ``result``, ``conflicts_only``...)."""
        params = {"event_id": str(event_id), "limit": "1000"}
        params |= {k: str(v).lower() if isinstance(v, bool) else v for k, v in filters.items()}
        found: list[ScanOut] = []
        while True:
            page = self._call("GET", "/v1/scans", ScanPage, params=params)
            found.extend(page.items)
            if page.next_cursor is None:
                return found
            params["cursor"] = page.next_cursor


def enroll(server_url: str, code: str, device_name: str = "Gate scanner") -> EnrolledDevice:
    """Redeem an enrollment code as a scanner does (no token needed)."""
    response = httpx.post(
        f"{server_url}/v1/devices/enroll",
        json={"code": code, "device_name": device_name},
        timeout=30.0,
    )
    if response.status_code != 201:
        raise ApiError("POST", "/v1/devices/enroll", response)
    return msgspec.json.decode(response.content, type=EnrolledDevice)


def device_me(server_url: str, device_token: str) -> DeviceSelf:
    """``GET /v1/devices/me`` with a device's token; ``ApiError`` unless 200."""
    response = httpx.get(
        f"{server_url}/v1/devices/me",
        headers={"Authorization": f"Bearer {device_token}"},
        timeout=30.0,
    )
    if response.status_code != 200:
        raise ApiError("GET", "/v1/devices/me", response)
    return msgspec.json.decode(response.content, type=DeviceSelf)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def live_database() -> Iterator[BenchDatabase]:
    """A migrated database for the live server, dropped at the end of the session."""
    with fresh_database("scanner", prefix="gatehouse_test") as database:
        yield database


@pytest.fixture(scope="session")
def shared_live_server(live_database: BenchDatabase) -> Iterator[LiveServer]:
    """The one server process of the session; stopped (and its log deleted) at the end. Use
    ``live_server`` in tests, which makes sure it is up."""
    server = LiveServer(live_database, Secrets())
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def live_server(shared_live_server: LiveServer) -> LiveServer:
    """The live server, running (started again if an earlier test stopped or killed it)."""
    shared_live_server.ensure_running()
    return shared_live_server


@pytest.fixture
def back_office(live_server: LiveServer) -> Iterator[BackOffice]:
    """A new tenant on the live server, and its venue manager."""
    with BackOffice.for_new_tenant(live_server) as office:
        yield office
