"""What the current request is, for logs and error bodies: its id and its tenant.

Kept apart from the middleware (and free of the HTTP stack) so that anything — the error
handlers, the log pipeline — can ask without import cycles.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any

from shared.ids import new_id

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()
# What we accept from a load balancer or client: the ids proxies make (UUIDs, hex, base64-ish)
# and nothing that could forge a log line or a header. Anything else is replaced by our own.
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=-]{0,127}")

#: Keys in the ASGI scope's ``state`` (Litestar's ``request.state``).
STATE_REQUEST_ID = "request_id"
STATE_STARTED = "request_started"
STATE_STATUS = "response_status"

#: The tenant of the current request, once authentication has named it. A callable, because the
#: tenant is known only after the auth middleware, which runs inside the one that sets this.
current_tenant: ContextVar[Callable[[], str | None] | None] = ContextVar(
    "gatehouse_current_tenant", default=None
)


def assign_request_id(scope: MutableMapping[str, Any]) -> str:
    """The request's id, assigned on first call: the caller's ``X-Request-ID`` when it looks
    like an id, otherwise a new UUIDv7. Later calls return the same id."""
    state: MutableMapping[str, Any] = scope.setdefault("state", {})
    found = state.get(STATE_REQUEST_ID)
    if isinstance(found, str):
        return found
    request_id = _incoming(scope) or str(new_id())
    state[STATE_REQUEST_ID] = request_id
    return request_id


def _incoming(scope: Mapping[str, Any]) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == _HEADER_KEY:
            text = value.decode("latin-1")
            return text if _SANE_ID.fullmatch(text) else None
    return None
