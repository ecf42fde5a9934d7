"""The rate limits at the HTTP edge (``sync_server.redis.rate_limits`` counts and decides; see
there for the keys and why): every authenticated request is counted against its caller's
limit, every request without a token against its client address's, and an upload of offline
scans against its device's scans a minute (by the handler, once the batch is read). A request
over a limit is refused with 429 ``rate_limited`` and ``Retry-After``."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from sync_server.http.auth import Principal
from sync_server.http.problems import Problem
from sync_server.redis.rate_limits import RateDecision, RateLimits

#: Paths never limited: orchestrators' probes must always get an answer. ``/health`` touches
#: nothing; ``/ready``'s report is probed at most once a second per process (``Readiness``).
EXEMPT_PATHS: Final = re.compile(r"^/(health|ready)/?$")


class RateLimited(Problem):
    """429 ``rate_limited``: the caller used up this minute's requests (or scans)."""

    def __init__(self, limit: int, retry_after: int, *, what: str = "requests") -> None:
        super().__init__(
            429,
            "rate_limited",
            f"Too many {what}: at most {limit} a minute for this caller. Retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
            extra={"limit": limit, "retry_after": retry_after},
        )


def refuse_over(decision: RateDecision, *, what: str = "requests") -> None:
    """Raise ``RateLimited`` when ``decision`` refused."""
    if not decision.allowed:
        raise RateLimited(decision.limit, decision.retry_after, what=what)


def client_address(scope: Scope) -> str:
    """Who is asking: the connection's peer. Behind a reverse proxy, uvicorn has already put
    the client that ``X-Forwarded-For`` names in its place — only when the peer is one of
    ``FORWARDED_ALLOW_IPS`` (``gatehouse-server serve`` runs it with ``proxy_headers``), so a
    client cannot choose its own address by sending the header."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class RateLimitMiddleware(ASGIMiddleware):
    """Applies ``RateLimits`` to every HTTP request (so it must sit inside the authentication
    middleware): per caller with a token, per client address without one."""

    scopes = (ScopeType.HTTP,)

    def __init__(
        self, limits: Callable[[Scope], RateLimits], *, counted_elsewhere: str | None = None
    ) -> None:
        """``counted_elsewhere``: a path prefix whose requests another layer counts (the
        console counts its pages per signed-in manager once it has read the session)."""
        #: How to find the app's ``RateLimits`` (built with the app's lifespan, after us).
        self._limits = limits
        # By the request's path, not the route's.
        self.should_bypass_for_scope = lambda scope: (
            EXEMPT_PATHS.match(scope["path"]) is not None
            or (counted_elsewhere is not None and scope["path"].startswith(counted_elsewhere))
        )

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        principal = scope.get("user")
        limits = self._limits(scope)
        if isinstance(principal, Principal):
            refuse_over(await limits.hit(principal))
        else:
            refuse_over(await limits.anonymous(client_address(scope)))
        await next_app(scope, receive, send)
