"""The OpenAPI document (``/schema/openapi.json``) says what the API really answers: the real
success codes and bodies, every error status as ``application/problem+json``, its headers, and
which routes need no token. Client generators and the fuzz test (test_fuzz_api.py) trust it."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from tests.sync_server.helpers import assert_problem

pytestmark = pytest.mark.anyio

METHODS = ("get", "post", "put", "patch", "delete")
PROBLEM = {"$ref": "#/components/schemas/ProblemDetails"}
#: The routes that need no token, as the document must say.
PUBLIC = {
    ("get", "/health"),
    ("get", "/ready"),
    ("post", "/v1/devices/enroll"),
    ("post", "/v1/devices/token"),
    ("get", "/v1/chain/metadata/{mint}"),
}
#: The public route that answers 401: its credential (a refresh token) is in the body.
RENEWAL = ("post", "/v1/devices/token")
#: The routes that take an Idempotency-Key and may answer with a replay.
IDEMPOTENT = {
    ("post", "/v1/purchases"),
    ("post", "/v1/tickets/{ticket_id}/transfer"),
    ("post", "/v1/tickets/{ticket_id}/revoke"),
    # Optional there: a retry with the same key answers the list made the first time.
    ("post", "/v1/events/{event_id}/checkin-lists"),
    ("post", "/v1/events/{event_id}/checkin-lists/import-pretix"),
}


@pytest.fixture
async def document(client: AsyncTestClient[Litestar]) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def is_public(operation: dict[str, Any]) -> bool:
    return operation.get("security") == []


async def test_validate_documents_its_verdict_answers_and_no_201(document: dict[str, Any]) -> None:
    responses = document["paths"]["/v1/validate"]["post"]["responses"]
    assert "201" not in responses
    for status in ("200", "409", "422"):
        assert responses[status]["content"] == {
            "application/json": {"schema": {"$ref": "#/components/schemas/Verdict"}}
        }, status
    assert responses["400"]["content"] == {"application/problem+json": {"schema": PROBLEM}}


async def test_the_changes_feed_is_typed_as_a_changes_page(document: dict[str, Any]) -> None:
    operation = document["paths"]["/v1/sync/changes"]["get"]
    content = operation["responses"]["200"]["content"]
    assert content == {"application/json": {"schema": {"$ref": "#/components/schemas/ChangesPage"}}}
    assert "application/msgpack" in operation["responses"]["200"]["description"]
    page = document["components"]["schemas"]["ChangesPage"]
    assert {"changes", "next_cursor", "has_more"} <= set(page["properties"])
    parameters = {(p["name"], p["in"]): p for p in operation["parameters"]}
    assert parameters["limit", "query"]["schema"]["type"] == "integer"
    assert ("cursor", "query") in parameters


async def test_public_routes_need_no_token_in_the_document(document: dict[str, Any]) -> None:
    public = {(method, path) for method, path, op in operations(document) if is_public(op)}
    assert public == PUBLIC
    assert document["security"] == [{"bearer": []}]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def test_the_document_and_the_auth_middleware_agree(
    app: Litestar, document: dict[str, Any]
) -> None:
    """A route the middleware lets through without a token is public in the document, and
    every other route is not: the two declarations cannot drift apart."""
    documented = {(method, path): op for method, path, op in operations(document)}
    checked = 0
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                operation = documented.get((method.lower(), route.path_format))
                if operation is None:
                    continue  # not in the document (/metrics, the schema's own pages)
                excluded = bool(handler.opt.get("exclude_from_auth"))
                assert is_public(operation) is excluded, (method, route.path_format)
                checked += 1
    assert checked == len(documented)


async def test_public_routes_answer_without_a_token_and_others_refuse(
    client: AsyncTestClient[Litestar],
) -> None:
    assert (await client.get("/health")).status_code == 200
    enroll = await client.post("/v1/devices/enroll", json={"code": "nope", "device_name": "x"})
    assert enroll.status_code != 401, enroll.text
    assert_problem(await client.get("/v1/events"), 401, "missing_token")


async def test_every_error_answer_is_a_problem(document: dict[str, Any]) -> None:
    """Every non-2xx response of every operation is ``application/problem+json`` with the
    problem schema — except /ready's 503, which is the readiness report itself."""
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                continue
            if (method, path, status) == ("get", "/ready", "503"):
                schema = {"$ref": "#/components/schemas/ReadinessReport"}
                assert response["content"] == {"application/json": {"schema": schema}}
                continue
            if path == "/v1/validate" and status in ("409", "422"):
                continue  # verdicts (above)
            assert response["content"] == {"application/problem+json": {"schema": PROBLEM}}, (
                method,
                path,
                status,
            )


async def test_the_problem_schema_is_the_body_we_send(
    document: dict[str, Any], client: AsyncTestClient[Litestar]
) -> None:
    schema = document["components"]["schemas"]["ProblemDetails"]
    required = set(schema["required"])
    assert required == {"type", "title", "status", "code", "detail", "instance", "request_id"}
    body = (await client.get("/v1/events")).json()
    assert required <= set(body)


async def test_routes_document_401_403_429_and_503_as_they_answer_them(
    document: dict[str, Any],
) -> None:
    for method, path, operation in operations(document):
        responses = operation["responses"]
        if (method, path) == RENEWAL:
            # Public (no bearer token), but its credential is the refresh token in the body:
            # refused with a 401 like a bearer token, WWW-Authenticate included.
            assert "401" in responses
            assert not {"403"} & set(responses)
            assert "WWW-Authenticate" in responses["401"]["headers"]
            continue
        if is_public(operation):
            assert not {"401", "403"} & set(responses), (method, path)
            # Limited per client address, except the orchestrator's probes.
            assert ("429" in responses) is (path not in ("/health", "/ready")), (method, path)
            continue
        assert {"401", "403", "429", "503"} <= set(responses), (method, path)
        assert responses["429"]["headers"]["Retry-After"]["required"] is True
        assert responses["503"]["headers"]["Retry-After"]["required"] is True
        assert "WWW-Authenticate" in responses["401"]["headers"]


async def test_every_answer_documents_its_request_id(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            header = response.get("headers", {}).get("X-Request-ID")
            assert header is not None, (method, path, status)
            assert header["schema"] == {"type": "string"}


async def test_idempotent_routes_document_the_key_and_the_replay(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
        success = next(r for s, r in operation["responses"].items() if s.startswith("2"))
        replayed = "Idempotent-Replayed" in success.get("headers", {})
        assert ("Idempotency-Key" in names) is ((method, path) in IDEMPOTENT), (method, path)
        assert replayed is ((method, path) in IDEMPOTENT), (method, path)
