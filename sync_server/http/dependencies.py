"""What the HTTP edge provides to route handlers, by name (Litestar injects a parameter whose name
is a provider's key; the aliases below say so to Litestar and to the type checker).

Per request, provided here: ``principal`` (the caller, from the bearer token), ``session`` (the
request's transaction, scoped to the caller's tenant), ``open_session`` (the same transaction,
opened only if the handler asks: a cache miss) and ``active_device`` (for handlers that need no
transaction but must still refuse a revoked device or token). For the life of the app, provided
by the app factory (``sync_server.app``): ``database``, ``clock``, ``settings`` and the objects
of the domain, the chain and Redis (``keys``, ``ownership``, ``chain_info``, ``custody``,
``ticket_cache``, ``operations``, ``rate_limits``). Each domain controller declares the
providers of its own services.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any, Final, TypeAlias

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import SkipValidation
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import Clock
from sync_server.db.engine import Database
from sync_server.http.auth import Principal
from sync_server.http.problems import Unauthorized
from sync_server.redis.rate_limits import RateLimits
from sync_server.settings import Settings

# What handlers and providers declare to receive them. The app's own objects skip validation:
# they are built by the app, and some are protocols (``Clock``) an isinstance check cannot take.
#: Opens the caller's transaction (``async with open_session() as session``).
OpenSession: TypeAlias = Callable[[], AbstractAsyncContextManager[AsyncSession]]

PrincipalDep: TypeAlias = NamedDependency[Principal]
SessionDep: TypeAlias = NamedDependency[AsyncSession]
OpenSessionDep: TypeAlias = NamedDependency[SkipValidation[OpenSession]]
ActiveDeviceDep: TypeAlias = NamedDependency[None]
DatabaseDep: TypeAlias = NamedDependency[SkipValidation[Database]]
ClockDep: TypeAlias = NamedDependency[SkipValidation[Clock]]
SettingsDep: TypeAlias = NamedDependency[SkipValidation[Settings]]
RateLimitsDep: TypeAlias = NamedDependency[SkipValidation[RateLimits]]

#: Where the app keeps its ``Services`` while its lifespan runs.
SERVICES_STATE_KEY: Final = "services"


def app_services(state: State) -> Any:
    """The app's long-lived objects (``sync_server.app.Services``), from its state: ``Any``
    here, as the HTTP edge and the domain do not import the composition root; a caller names
    the type of what it reads (``database: Database = app_services(state).database``).

    The providers of every request's own objects (``session``, ``open_session``,
    ``active_device``) and the check-in service's read what they need here, through the
    ``state`` Litestar hands any provider, rather than naming each object as a dependency:
    Litestar resolves the named dependencies of one level of the graph concurrently, one
    anyio task per dependency when there are several, and on ``POST /v1/validate`` the
    six trivial ones (principal, database, keys, ownership, clock, settings) cost more than
    the rest of the dependency graph (docs/benchmarks.md, Notes). With them read from the
    state, each level has one dependency (principal, then session, then the service), which
    Litestar awaits in place."""
    return state[SERVICES_STATE_KEY]


def _database(state: State) -> Database:
    database: Database = app_services(state).database
    return database


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    principal = request.user
    if not isinstance(principal, Principal):  # only on routes excluded from auth
        raise Unauthorized("missing_token", "Send an Authorization: Bearer <token> header.")
    return principal


async def provide_session(principal: PrincipalDep, state: State) -> AsyncIterator[AsyncSession]:
    """The request's transaction, scoped to the caller's tenant; commits when the handler
    returns, before the response is sent, and rolls back when it raises."""
    async with caller_session(_database(state), principal) as session:
        yield session


async def provide_open_session(principal: PrincipalDep, state: State) -> OpenSession:
    """For handlers that need the database only sometimes: ``session``'s transaction, opened
    (and the device's revocation checked) only when the handler opens it."""
    return partial(caller_session, _database(state), principal)


async def require_active_device(principal: PrincipalDep, state: State) -> None:
    """Refuse (401 ``device_revoked``, ``device_unknown`` or ``token_revoked``) a revoked or
    unknown device or a revoked token, for handlers that may read nothing of the tenant's: a
    revoked token stops working everywhere."""
    async with caller_session(_database(state), principal):
        pass


#: The sentence of a 401 ``device_unknown``: a valid device token naming a device this database
#: does not have (restored from a backup older than the enrollment; migration 0021).
DEVICE_UNKNOWN_DETAIL: Final = (
    "This server does not know this device (it was restored from a backup taken before the "
    "device was enrolled). Ask a manager for a new code and enroll the device again."
)

_REFUSALS = {
    "device_revoked": "This device has been revoked. Ask a manager to enroll it again.",
    "token_revoked": "This token has been revoked. Get a new one.",
    "device_unknown": DEVICE_UNKNOWN_DETAIL,
}


@asynccontextmanager
async def caller_session(database: Database, principal: Principal) -> AsyncIterator[AsyncSession]:
    """A transaction for ``principal``'s tenant, for handlers that need the database only
    sometimes (a cache miss). Raises ``Unauthorized`` when the caller's device or token is
    revoked (checked in the round trip that starts the transaction)."""
    async with database.request(principal.tenant_id, principal.device_id, principal.token_id) as (
        session,
        refusal,
    ):
        if refusal is not None:
            raise Unauthorized(refusal, _REFUSALS[refusal])
        yield session
