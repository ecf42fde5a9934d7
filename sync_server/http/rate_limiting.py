"""The rate limit at the HTTP edge: every authenticated request is counted against its caller's
limit (``sync_server.redis.rate_limits`` counts and decides; see there for the keys and why);
a request over it is refused with 429 ``rate_limited`` and ``Retry-After``."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from sync_server.http.auth import Principal
from sync_server.http.problems import Problem
from sync_server.redis.rate_limits import RateLimits

#: Paths never limited: operators and load balancers must always get an answer.
EXEMPT_PATHS: Final = re.compile(r"^/(health|ready|metrics)/?$|^/schema(/|$)")


class RateLimited(Problem):
    """429 ``rate_limited``: the caller used up this minute's requests."""

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(
            429,
            "rate_limited",
            f"Too many requests: at most {limit} a minute for this caller. "
            f"Retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
            extra={"limit": limit, "retry_after": retry_after},
        )


class RateLimitMiddleware(ASGIMiddleware):
    """Applies ``RateLimits`` to every authenticated HTTP request (so it must sit inside the
    authentication middleware). Requests without a caller (``/health``, enrollment) pass."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, limits: Callable[[Scope], RateLimits]) -> None:
        #: How to find the app's ``RateLimits`` (built with the app's lifespan, after us).
        self._limits = limits
        # By the request's path, not the route's (the schema's pages are many routes).
        self.should_bypass_for_scope = lambda scope: EXEMPT_PATHS.match(scope["path"]) is not None

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        principal = scope.get("user")
        if isinstance(principal, Principal):
            decision = await self._limits(scope).hit(principal)
            if not decision.allowed:
                raise RateLimited(decision.limit, decision.retry_after)
        await next_app(scope, receive, send)
