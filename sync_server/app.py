"""The app factory: settings → pools, DI, auth, error handling, routes. Nothing connects at
import time; the database pool opens with the app's lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.compression import CompressionConfig
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import Scope
from sqlalchemy import text

from shared.clock import Clock, SystemClock
from sync_server.chain.client import ChainKeys
from sync_server.chain.ownership import ChainOwnership, GuardedOwnership
from sync_server.db.engine import Database
from sync_server.domain.chain.controllers import CHAIN_ROUTES
from sync_server.domain.checkin.controllers import CHECKIN_ROUTES
from sync_server.domain.devices.controllers import DeviceController
from sync_server.domain.events.controllers import EventController
from sync_server.domain.keys.services import KeyStore
from sync_server.domain.scans.controllers import SCAN_ROUTES
from sync_server.domain.tickets.controllers import TICKET_ROUTES
from sync_server.domain.tickets.schemas import TicketOut
from sync_server.http.auth import BearerAuthMiddleware, TokenVerifier
from sync_server.http.ops import OPS_ROUTES, Operations
from sync_server.http.problems import exception_handlers
from sync_server.http.rate_limiting import RateLimitMiddleware
from sync_server.http.request_context import RequestContextMiddleware, ResponseObserver
from sync_server.observability.readiness import AmqpProbe, PostgresProbe, Readiness, RedisProbe
from sync_server.redis.breakers import Breakers
from sync_server.redis.link import RedisLink
from sync_server.redis.rate_limits import RateLimits
from sync_server.redis.ticket_cache import TicketCache
from sync_server.runtime import (
    Runtime,
    provide_principal,
    provide_runtime,
    provide_session,
    runtime,
)
from sync_server.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> Litestar:
    """Build the API. ``settings`` default to the environment (``Settings.from_env``)."""
    settings = settings or Settings.from_env()
    verifier = TokenVerifier(settings.auth)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # A lifespan nested in another of the same app (tests run one per event loop) hands
        # the outer one's objects back when it ends: its pools belong to the other loop.
        outer = {name: app.state.get(name) for name in ("runtime", "operations")}
        database = Database(settings.database)
        redis = RedisLink(settings.redis)  # connects on first use; works degraded without it
        ticket_cache = TicketCache(redis, settings.redis.ticket_cache_ttl_seconds, TicketOut)
        # Committed ticket changes leave the cache before the writer's response is sent.
        database.on_tickets_written = ticket_cache.invalidate
        breakers = Breakers(redis, settings.breakers)
        shared = Runtime(
            settings=settings,
            database=database,
            keys=KeyStore(settings.master_key),
            verifier=verifier,
            clock=clock or SystemClock(),
            redis=redis,
            rate_limits=RateLimits(redis, settings.rate_limits),
            ticket_cache=ticket_cache,
            breakers=breakers,
        )
        chain: ChainOwnership | None = None
        if settings.chain.enabled:
            shared.chain_keys = ChainKeys.from_settings(settings.chain)
            chain = ChainOwnership.from_settings(settings.chain, shared.chain_keys)
            # Slow, failing or unreachable: the verdict is "not chain-verified", never a wait.
            shared.ownership = GuardedOwnership(
                chain, breakers, timeout_seconds=settings.chain.ownership_timeout_seconds
            )
        app.state["runtime"] = shared
        timeout = settings.observability.ready_timeout_seconds
        readiness = Readiness(
            [
                PostgresProbe(database.engine),
                # Through the shared link: a successful probe also tells it Redis is back.
                RedisProbe(redis.ping),
                AmqpProbe(settings.amqp.url, timeout=timeout),
            ],
            timeout=timeout,
        )
        app.state["operations"] = Operations(
            readiness, database, timeout, runtime(app.state).breakers
        )
        try:
            async with database.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as error:
            log.warning("database not reachable at start-up: %s", error)
        try:
            yield
        finally:
            await readiness.close()
            if chain is not None:
                await chain.close()
            await database.close()
            await redis.close()
            app.state.update({name: value for name, value in outer.items() if value is not None})

    return Litestar(
        route_handlers=[
            *OPS_ROUTES,
            EventController,
            DeviceController,
            *TICKET_ROUTES,
            *CHECKIN_ROUTES,
            *SCAN_ROUTES,
            *CHAIN_ROUTES,
        ],
        lifespan=[lifespan],
        middleware=[
            # First, so its request id and start time cover everything after it.
            RequestContextMiddleware,
            DefineMiddleware(BearerAuthMiddleware, verifier=verifier, exclude=["^/schema"]),
            # Inside authentication: it counts per caller, so it needs the token's principal.
            RateLimitMiddleware(_rate_limits),
        ],
        before_send=[ResponseObserver(access_log_enabled=settings.observability.access_log)],
        dependencies={
            "rt": Provide(provide_runtime),
            "principal": Provide(provide_principal),
            "session": Provide(provide_session),
        },
        exception_handlers=exception_handlers(),
        # Logging is the process's business (gatehouse-server serve/worker configure it, see
        # observability/logs.py): Litestar's default would replace the root handler in every
        # worker with a plain-text one.
        logging_config=None,
        # gzip when the client asks for it: the changes feed is large and compresses well.
        compression_config=CompressionConfig(backend="gzip", minimum_size=1024),
        openapi_config=OpenAPIConfig(
            title="Gatehouse API",
            version="1",
            path="/schema",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
            security=[{"bearer": []}],
        ),
    )


def _rate_limits(scope: Scope) -> RateLimits:
    return runtime(Litestar.from_scope(scope).state).rate_limits
