"""Per request: a request id, the latency histogram, and one access log line.

Two pieces, because of where Litestar handles errors. ``RequestContextMiddleware`` is the
outermost middleware: it takes the start time and the request id and binds the id into the
logging context, so every line the request causes carries it. But an error raised by a
middleware (a missing token, a rate limit) or by routing (404) becomes a response *outside*
all middleware, in the app's own exception handler; only the app's ``before_send`` hook sees
every response. So ``before_send`` (``ResponseObserver``) adds the ``X-Request-ID`` header and,
at the last body chunk, records the duration and writes the access line.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import structlog
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from sync_server.http.auth import Principal
from sync_server.observability import metrics
from sync_server.observability.context import (
    REQUEST_ID_HEADER,
    STATE_STARTED,
    STATE_STATUS,
    assign_request_id,
    current_tenant,
)

#: The route label of requests no route matched (404, 405): never the raw path, which anyone
#: can vary to create unbounded series.
UNMATCHED = "<unmatched>"

access_log = logging.getLogger("gatehouse.access")


def _tenant_of(scope: Scope) -> str | None:
    user = scope.get("user")
    return str(user.tenant_id) if isinstance(user, Principal) else None


def _bind(scope: Scope, request_id: str) -> None:
    # Each request runs in its own task with its own copy of the context (uvicorn makes a task
    # per request), so nothing bound here leaks into another request; clearing first guards
    # against servers that reuse one task.
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    current_tenant.set(lambda: _tenant_of(scope))


class RequestContextMiddleware:
    """Assigns the request id (the caller's ``X-Request-ID`` if sane, else a new UUIDv7) and
    the start time, and binds the id and the tenant (once known) into the logging context."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            state: dict[str, Any] = scope.setdefault("state", {})
            state[STATE_STARTED] = time.perf_counter()
            _bind(scope, assign_request_id(scope))  # type: ignore[arg-type]
        await self.app(scope, receive, send)


class ResponseObserver:
    """The app's ``before_send`` hook: response header, latency histogram, access log."""

    def __init__(self, *, access_log_enabled: bool = True) -> None:
        self.access_log_enabled = access_log_enabled
        # The histogram's child per (method, route template, status), found once: ``labels()``
        # checks and joins its arguments on every call, as long again as the observation.
        # Bounded as the histogram's own series are: templates, not paths.
        self._durations: dict[tuple[object, str, int], Any] = {}

    async def __call__(self, message: Message, scope: Scope) -> None:
        if scope["type"] != ScopeType.HTTP:
            return
        if message["type"] == "http.response.start":
            state: dict[str, Any] = scope.setdefault("state", {})
            if STATE_STARTED not in state:  # routing failed: no middleware has run
                _bind(scope, assign_request_id(scope))  # type: ignore[arg-type]
            state[STATE_STATUS] = message["status"]
            headers = MutableScopeHeaders.from_message(message)
            headers[REQUEST_ID_HEADER] = assign_request_id(scope)  # type: ignore[arg-type]
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self._finished(scope)

    def _finished(self, scope: Scope) -> None:
        state: dict[str, Any] = scope.setdefault("state", {})
        status = int(state.get(STATE_STATUS, 500))
        route = scope.get("path_template") or UNMATCHED
        started = state.get(STATE_STARTED)
        duration = time.perf_counter() - started if started is not None else None
        method = scope.get("method", "")
        if duration is not None:
            series = (method, route, status)
            child = self._durations.get(series)
            if child is None:
                child = metrics.REQUEST_DURATION.labels(method=method, route=route, status=status)
                self._durations[series] = child
            child.observe(duration)
        if self.access_log_enabled and access_log.isEnabledFor(logging.INFO):
            # Never the query string or headers: tokens and enrollment codes travel there.
            fields: dict[str, Any] = {
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": None if duration is None else round(duration * 1000, 2),
                "client": _client(scope),
            }
            tenant = _tenant_of(scope)
            if tenant is not None:
                fields["tenant_id"] = tenant
            access_log.info("request", extra=fields)


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None
