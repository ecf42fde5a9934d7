"""The API fuzzed against its own OpenAPI document (schemathesis), on a live server.

The app runs under a real uvicorn server on 127.0.0.1, over the test database and Redis. Every
documented operation is called with generated requests — valid ones and deliberately invalid
ones — under a manager's, a service's and an enrolled scanner's token (the scanner's from a real
enrollment). Every answer must be a documented status, with the documented content type,
headers and body, and none may be a server error.

Bounded: a few examples per operation and role, so the whole run stays around a minute.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx
import msgspec
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from benchmarks.server_harness import free_port
from sync_server.app import create_app
from sync_server.domain.tenants.services import create_tenant
from sync_server.http.auth import Role, mint_token
from sync_server.settings import AuthSettings, RateLimitSettings, Settings
from tests.sync_server.helpers import EVENT, HOLDER

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: Generated examples per operation and role: enough to reach every route's validation and its
#: handler, few enough for a two-core machine (about a minute in all).
EXAMPLES = 10
ROLES = ("manager", "service", "scanner")


@dataclass(frozen=True)
class LiveApi:
    url: str
    #: Authorization headers by role.
    tokens: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def live_api(settings: Settings) -> Iterator[LiveApi]:
    """The app under uvicorn in a thread, and a tenant with an event on sale and an enrolled
    scanner. Rate limits are off: the fuzzer must reach the handlers, not the 429."""
    app = create_app(
        replace(settings, rate_limits=RateLimitSettings(0, 0, 0, scanner_scans=0, anonymous=0))
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server stopped while starting"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        url = f"http://127.0.0.1:{port}"
        yield LiveApi(url, _tokens(url, settings))
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _tokens(url: str, settings: Settings) -> dict[str, dict[str, str]]:
    tenant_id = asyncio.run(create_tenant(settings.database.admin_url, "Fuzzed venue"))

    def bearer(role: Role) -> dict[str, str]:
        token = mint_token(
            settings.auth.jwt_secret,
            tenant_id=tenant_id,
            role=role,
            subject=f"fuzz-{role}",
            ttl_seconds=3600,
        )
        return {"Authorization": f"Bearer {token}"}

    manager = bearer(Role.MANAGER)
    with httpx.Client(base_url=url, timeout=10) as http:

        def post(path: str, body: Mapping[str, object], **headers: str) -> dict[str, object]:
            response = http.post(path, json=body, headers={**manager, **headers})
            assert response.status_code in (200, 201), response.text
            found: dict[str, object] = response.json()
            return found

        event = post("/v1/events", EVENT)
        ticket_type = post(
            f"/v1/events/{event['id']}/ticket-types", {"name": "General", "capacity": 100}
        )
        post(
            "/v1/purchases",
            {"ticket_type_id": ticket_type["id"], "quantity": 2, "holder": HOLDER},
            **{"Idempotency-Key": str(uuid.uuid4())},
        )
        enrollment = post("/v1/devices/enrollments", {"event_id": event["id"], "gate": "North 1"})
        enrolled = http.post(
            "/v1/devices/enroll",
            json={"code": enrollment["code"], "device_name": "Fuzzed scanner"},
        )
        assert enrolled.status_code == 201, enrolled.text
    scanner = {"Authorization": f"Bearer {enrolled.json()['device_token']}"}
    return {"manager": manager, "service": bearer(Role.SERVICE), "scanner": scanner}


def _document() -> dict[str, object]:
    """The app's own OpenAPI document, as /schema/openapi.json serves it (test_openapi.py reads
    it there). Built without connecting anywhere: the tests are generated from it at import."""
    app = create_app(
        Settings(
            auth=AuthSettings(jwt_secret=secrets.token_urlsafe(32)),
            master_key=secrets.token_bytes(32),
            environment="test",
        )
    )
    found: dict[str, object] = msgspec.json.decode(
        msgspec.json.encode(app.openapi_schema.to_schema())
    )
    return found


schema = schemathesis.openapi.from_dict(_document())


@pytest.mark.parametrize("role", ROLES)
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=False,
)
def test_every_answer_is_documented_and_none_is_a_server_error(
    case: Case[Any], role: str, live_api: LiveApi
) -> None:
    case.call_and_validate(base_url=live_api.url, headers=live_api.tokens[role], checks=CHECKS)
