"""The rate limits at the HTTP edge (``sync_server.redis.rate_limits`` counts and decides; see
there for the keys and why): every authenticated request is counted against its caller's
limit, every request without a token against its client address's, and an upload of offline
scans against its device's scans a minute (by the handler, once the batch is read). A request
over a limit is refused with 429 ``rate_limited`` and ``Retry-After``."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
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

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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


def trusted_networks(proxies: Iterable[str]) -> tuple[Network, ...]:
    """The settings' ``trusted_proxies`` (already checked) as networks."""
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def client_address(scope: Scope, trusted: tuple[Network, ...]) -> str:
    """Who is asking: the socket's peer, or — only when the peer is a trusted proxy — the
    nearest address in ``X-Forwarded-For`` that is not a trusted proxy itself (read from the
    right: whatever the client wrote on the left is not believed)."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    forwarded = b",".join(
        value for name, value in scope.get("headers", ()) if name.lower() == b"x-forwarded-for"
    )
    address = peer
    for part in reversed(forwarded.decode("latin-1").split(",")):
        candidate = part.strip()
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            break  # not an address: stop at the last one a trusted proxy wrote
        address = candidate
        if not _is_trusted(candidate, trusted):
            break
    return address


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted)


class RateLimitMiddleware(ASGIMiddleware):
    """Applies ``RateLimits`` to every HTTP request (so it must sit inside the authentication
    middleware): per caller with a token, per client address without one."""

    scopes = (ScopeType.HTTP,)

    def __init__(
        self, limits: Callable[[Scope], RateLimits], *, trusted_proxies: Iterable[str] = ()
    ) -> None:
        #: How to find the app's ``RateLimits`` (built with the app's lifespan, after us).
        self._limits = limits
        self._trusted = trusted_networks(trusted_proxies)
        # By the request's path, not the route's.
        self.should_bypass_for_scope = lambda scope: EXEMPT_PATHS.match(scope["path"]) is not None

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        principal = scope.get("user")
        limits = self._limits(scope)
        if isinstance(principal, Principal):
            refuse_over(await limits.hit(principal))
        else:
            refuse_over(await limits.anonymous(client_address(scope, self._trusted)))
        await next_app(scope, receive, send)
