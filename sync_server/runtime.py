"""What request handlers share for the life of the app: the database, the key store, the
token verifier, the clock. Built by the app factory, reached through dependency injection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import Clock
from sync_server.chain.client import ChainKeys
from sync_server.db.engine import Database
from sync_server.domain.checkin.ownership import NotChainChecked, OwnershipCheck
from sync_server.domain.keys.services import KeyStore
from sync_server.domain.tickets.schemas import TicketOut
from sync_server.http.auth import Principal, TokenVerifier
from sync_server.http.problems import Unauthorized
from sync_server.redis.breakers import Breakers
from sync_server.redis.link import RedisLink
from sync_server.redis.rate_limits import RateLimits
from sync_server.redis.ticket_cache import TicketCache
from sync_server.settings import Settings


@dataclass(slots=True)
class Runtime:
    settings: Settings
    database: Database
    keys: KeyStore
    verifier: TokenVerifier
    clock: Clock
    #: Redis and what rides on it; each works (degraded) while Redis is down.
    redis: RedisLink
    rate_limits: RateLimits
    ticket_cache: TicketCache[TicketOut]
    breakers: Breakers
    #: The on-chain ownership step of check-in: "not checked" with the chain off, the chain
    #: client behind a timeout and the ``solana-rpc`` circuit breaker with it on.
    ownership: OwnershipCheck = field(default_factory=NotChainChecked)
    #: The issuer's and custodian's keys; None with the chain off.
    chain_keys: ChainKeys | None = None


def runtime(state: State) -> Runtime:
    found: Runtime = state["runtime"]
    return found


async def provide_runtime(state: State) -> Runtime:
    return runtime(state)


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    principal = request.user
    if not isinstance(principal, Principal):  # only on routes excluded from auth
        raise Unauthorized("missing_token", "Send an Authorization: Bearer <token> header.")
    return principal


async def provide_session(
    request: Request[Any, Any, Any], state: State
) -> AsyncIterator[AsyncSession]:
    """The request's transaction, scoped to the caller's tenant; commits when the handler
    returns, before the response is sent, and rolls back when it raises."""
    principal = await provide_principal(request)
    async with caller_session(runtime(state).database, principal) as session:
        yield session


@asynccontextmanager
async def caller_session(database: Database, principal: Principal) -> AsyncIterator[AsyncSession]:
    """A transaction for ``principal``'s tenant, for handlers that need the database only
    sometimes (a cache miss). Raises ``Unauthorized`` when the caller's device is revoked."""
    async with database.request(principal.tenant_id, principal.device_id) as (session, allowed):
        if not allowed:
            raise Unauthorized(
                "device_revoked",
                "This device has been revoked. Ask a manager to enroll it again.",
            )
        yield session


# What handlers declare to receive the shared objects (Litestar injects them by these names:
# ``session``, ``rt`` and ``principal``).
SessionDep: TypeAlias = NamedDependency[AsyncSession]
RuntimeDep: TypeAlias = NamedDependency[Runtime]
PrincipalDep: TypeAlias = NamedDependency[Principal]
