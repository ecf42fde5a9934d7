"""RFC 9457 problem details with a stable ``code`` for every error the API returns.

Services raise ``Problem`` (or one of its named subclasses); Litestar's own HTTP exceptions,
database outages and open circuit breakers (``CircuitOpen``) are mapped here too, so a client
never sees an error without a ``code``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIHeader, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.types import ExceptionHandlersMap
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, ProgrammingError

from shared.wire import ONE_LINE, PROSE
from sync_server.db.migrate import MIGRATE_FIRST
from sync_server.observability.context import REQUEST_ID_HEADER, assign_request_id
from sync_server.redis.breakers import CircuitOpen

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Cannot be processed",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    500: "internal_error",
    503: "dependency_unavailable",
}


#: A sentence for a text refused by one of the shared text rules, instead of the raw regex.
_PATTERN_SENTENCES = {
    f"Expected `str` matching regex {ONE_LINE.pattern!r}": (
        "One line of text without control characters (no NUL, line break, tab or escape)."
    ),
    f"Expected `str` matching regex {PROSE.pattern!r}": (
        "Text without control characters other than line breaks and tabs (no NUL or escape)."
    ),
}


class Problem(Exception):
    """An error answer: HTTP status, stable machine code, a sentence for people."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or _TITLES.get(status, "Error")
        self.headers = headers or {}
        self.extra = extra or {}


class NotFound(Problem):
    def __init__(self, what: str) -> None:
        super().__init__(404, "not_found", f"No {what} with that id.")


class Conflict(Problem):
    def __init__(self, code: str, detail: str, **extra: Any) -> None:
        super().__init__(409, code, detail, extra=extra or None)


class Unprocessable(Problem):
    def __init__(self, code: str, detail: str, **extra: Any) -> None:
        super().__init__(422, code, detail, extra=extra or None)


class BadRequest(Problem):
    def __init__(self, code: str, detail: str, **extra: Any) -> None:
        super().__init__(400, code, detail, extra=extra or None)


class Unauthorized(Problem):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(401, code, detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(Problem):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(403, code, detail)


def problem_response(request: Request[Any, Any, Any], problem: Problem) -> Response[Any]:
    body: dict[str, Any] = {
        "type": f"https://gatehouse.dev/problems/{problem.code}",
        "title": problem.title,
        "status": problem.status,
        "code": problem.code,
        "detail": problem.detail,
        "instance": request.url.path,
        **problem.extra,
    }
    # The id in the X-Request-ID header and in every log line of this request: a client quoting
    # it lets support find exactly what happened.
    body["request_id"] = assign_request_id(request.scope)  # type: ignore[arg-type]
    return Response(
        content=body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


def _from_problem(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, Problem)
    return problem_response(request, exc)


def _from_http(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if isinstance(exc, ValidationException):
        problem = Problem(
            400,
            "validation_failed",
            "The request is not valid: see errors.",
            extra={"errors": _readable(exc.extra)} if exc.extra else None,
        )
    else:
        detail = exc.detail if exc.detail and exc.detail != _TITLES.get(status) else None
        problem = Problem(
            status,
            _CODES.get(status, "http_error"),
            detail or _TITLES.get(status, "The request failed."),
            headers=dict(exc.headers or {}),
        )
    return problem_response(request, problem)


def _readable(errors: Any) -> Any:
    """Litestar's list of field errors (``message``, ``key``, ``source``), a refused text's
    message put in words."""
    if not isinstance(errors, list):
        return errors
    return [
        {**error, "message": _PATTERN_SENTENCES.get(error["message"], error["message"])}
        if isinstance(error, dict) and "message" in error
        else error
        for error in errors
    ]


def _from_database(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.warning("database unavailable: %s", exc)
    problem = Problem(
        503,
        "dependency_unavailable",
        "The database is not reachable right now. Retry shortly.",
        headers={"Retry-After": "5"},
    )
    return problem_response(request, problem)


#: What Postgres says of a table, column or function it does not have (SQLSTATE): the schema
#: is behind the code.
_SCHEMA_BEHIND = {"42P01", "42703", "42883"}


def _from_programming(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, ProgrammingError)
    if getattr(exc.orig, "sqlstate", None) not in _SCHEMA_BEHIND:
        return _from_anything(request, exc)
    log.error("%s (%s)", MIGRATE_FIRST, exc.orig)
    problem = Problem(503, "schema_not_migrated", MIGRATE_FIRST, headers={"Retry-After": "30"})
    return problem_response(request, problem)


def circuit_open_problem(exc: CircuitOpen) -> Problem:
    """What a client hears of a call refused by an open circuit: 503 with ``Retry-After``."""
    return Problem(
        503,
        "dependency_unavailable",
        str(exc),
        headers={"Retry-After": str(exc.wait_seconds)},
        extra={"service": exc.service},
    )


def _from_circuit_open(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, CircuitOpen)
    return problem_response(request, circuit_open_problem(exc))


def _from_anything(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return _from_database(request, exc)
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    problem = Problem(500, "internal_error", "Something went wrong on our side.")
    return problem_response(request, problem)


def exception_handlers() -> ExceptionHandlersMap:
    return {
        Problem: _from_problem,
        CircuitOpen: _from_circuit_open,
        HTTPException: _from_http,
        OperationalError: _from_database,
        ProgrammingError: _from_programming,
        InterfaceError: _from_database,
        ConnectionError: _from_database,
        Exception: _from_anything,
    }


# --- the OpenAPI document's error answers -----------------------------------------------------


class ProblemDetails(msgspec.Struct, kw_only=True):
    """The body of every error answer (``application/problem+json``), as ``problem_response``
    builds it: RFC 9457's members, our stable ``code`` and the request's id. Some problems add
    members of their own (``errors``, ``limit``, ``retry_after``, ``service``...)."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    instance: str
    request_id: str
    #: What is wrong with the request, for ``validation_failed``.
    errors: list[dict[str, Any]] | None = None


#: What each documented error status means, for the document's readers.
_MEANINGS: Final = {
    400: "The request is not valid: `validation_failed` (see `errors`) or the route's own code.",
    401: "No bearer token, a bad or expired one, or a revoked device's (`WWW-Authenticate`).",
    403: "The token's role (or device) may not do this.",
    404: "Nothing with that id for this caller.",
    409: "The request conflicts with the current state (the code says how).",
    413: "The body is larger than this route takes (`too_large`).",
    422: "Understood, but refused by the rules (the code says which).",
    429: "Over this caller's rate limit: retry after `Retry-After` seconds.",
    503: "A dependency (database, Redis-backed circuit, chain) is unavailable: retry after "
    "`Retry-After` seconds.",
}

#: The answers every route behind the bearer token can give besides its own: no or bad token,
#: wrong role, over the rate limit, a dependency down.
AUTHENTICATED: Final = (401, 403, 429, 503)


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """The OpenAPI ``responses=`` of a route's error answers, each an ``application/problem+json``
    ``ProblemDetails``. Give the route ``operation_class=DocumentedOperation`` too: it adds the
    answers' headers."""
    return {
        status: ResponseSpec(
            data_container=ProblemDetails,
            media_type=PROBLEM_JSON,
            description=_MEANINGS[status],
            generate_examples=False,
        )
        for status in statuses
    }


def _header(description: str, schema: Schema, *, required: bool = False) -> OpenAPIHeader:
    return OpenAPIHeader(schema=schema, description=description, required=required)


_REQUEST_ID = _header(
    "The request's id, as in every log line it caused (the caller's own when it sent a sane one).",
    Schema(type=OpenAPIType.STRING),
    required=True,
)
_RETRY_AFTER = _header(
    "Seconds to wait before retrying.",
    Schema(type=OpenAPIType.STRING, pattern="^[0-9]+$"),
    required=True,
)
_WWW_AUTHENTICATE = _header(
    "The scheme to authenticate with: `Bearer`.", Schema(type=OpenAPIType.STRING)
)


@dataclass
class DocumentedOperation(Operation):
    """Every route's OpenAPI operation (``operation_class=``): adds the headers Litestar's
    ``ResponseSpec`` cannot declare — ``X-Request-ID`` on every answer, ``Retry-After`` on 429
    and on a problem's 503, ``WWW-Authenticate`` on 401."""

    def __post_init__(self) -> None:
        for status, response in (self.responses or {}).items():
            if not isinstance(response, OpenAPIResponse):
                continue
            headers = dict(response.headers or {})
            headers[REQUEST_ID_HEADER] = _REQUEST_ID
            problem = PROBLEM_JSON in (response.content or {})
            if problem and status in ("429", "503"):
                headers["Retry-After"] = _RETRY_AFTER
            if status == "401":
                headers["WWW-Authenticate"] = _WWW_AUTHENTICATE
            response.headers = headers


@dataclass
class PublicOperation(DocumentedOperation):
    """The operation of a route that needs no token (``opt={"exclude_from_auth": True}``): no
    security requirement, overriding the document's bearer default."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.security = []
