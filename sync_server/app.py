"""The app factory: settings → pools, DI, auth, error handling, routes. Nothing connects at
import time; the database pool opens with the app's lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from litestar import Litestar
from litestar.config.compression import CompressionConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template import TemplateConfig
from litestar.types import Scope

from shared.clock import Clock, SystemClock
from sync_server.chain.client import ChainKeys
from sync_server.console.assets import missing_assets
from sync_server.console.live import LiveDashboards, ended_on_shutdown
from sync_server.console.router import TEMPLATES_DIR, console_router
from sync_server.console.web import PREFIX as CONSOLE_PREFIX
from sync_server.db.engine import Database
from sync_server.db.migrate import schema_problem
from sync_server.db.scan_signals import ScanSignals
from sync_server.domain.chain.controllers import CHAIN_ROUTES
from sync_server.domain.chain.ownership import ChainOwnership, GuardedOwnership
from sync_server.domain.chain.services import ChainInfo
from sync_server.domain.checkin.controllers import CHECKIN_ROUTES
from sync_server.domain.checkin.ownership import NotChainChecked, OwnershipCheck
from sync_server.domain.devices.controllers import DeviceController
from sync_server.domain.events.controllers import EventController
from sync_server.domain.keys.services import KeyStore
from sync_server.domain.scans.controllers import SCAN_ROUTES
from sync_server.domain.sync.controllers import SYNC_ROUTES
from sync_server.domain.tickets.controllers import TICKET_ROUTES
from sync_server.domain.tickets.schemas import TicketOut
from sync_server.domain.tokens.controllers import TOKEN_ROUTES
from sync_server.http.auth import BearerAuthMiddleware, TokenVerifier
from sync_server.http.dependencies import (
    SERVICES_STATE_KEY,
    app_services,
    provide_open_session,
    provide_principal,
    provide_session,
    require_active_device,
)
from sync_server.http.ops import OPS_ROUTES, Operations
from sync_server.http.problems import exception_handlers
from sync_server.http.rate_limiting import RateLimitMiddleware
from sync_server.http.request_context import RequestContextMiddleware, ResponseObserver
from sync_server.observability.readiness import AmqpProbe, PostgresProbe, Readiness, RedisProbe
from sync_server.redis.breakers import Breakers
from sync_server.redis.link import RedisLink
from sync_server.redis.rate_limits import RateLimits
from sync_server.redis.ticket_cache import TicketCache
from sync_server.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    """What the app builds once per lifespan (the pools bind to its event loop) and shares
    between requests. Handlers never see this: the app provides each object by name (see
    ``create_app``'s ``dependencies``), and each domain controller builds its services from
    the objects it names — except the providers on every request's path (the session's and
    the check-in service's), which read theirs from the app's state
    (``sync_server.http.dependencies.app_services`` says why)."""

    settings: Settings
    database: Database
    clock: Clock
    keys: KeyStore
    #: Redis and what rides on it; each works (degraded) while Redis is down.
    redis: RedisLink
    rate_limits: RateLimits
    ticket_cache: TicketCache[TicketOut]
    breakers: Breakers
    #: The on-chain ownership step of check-in: "not checked" with the chain off, the chain
    #: client behind a timeout and the ``solana-rpc`` circuit breaker with it on.
    ownership: OwnershipCheck
    #: The chain's public face (configuration, NFT metadata); "off" with the chain off.
    chain_info: ChainInfo
    #: The custodial wallet's address; None with the chain off.
    custody: str | None
    #: What /ready and /metrics ask.
    operations: Operations
    #: Which events' scans changed, in this process and the others (``db.scan_signals``).
    scan_signals: ScanSignals
    #: The console's live dashboards in this process (``console.live``).
    live_dashboards: LiveDashboards


def services(app: Litestar) -> Services:
    """The app's long-lived objects, while its lifespan runs (for tests and tools)."""
    return _services(app.state)


def _services(state: State) -> Services:
    found: Services = app_services(state)
    return found


def _provided(part: Callable[[Services], object]) -> Provide:
    """A provider of one of the app's long-lived objects."""

    async def provide(state: State) -> Any:
        return part(_services(state))

    return Provide(provide)


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> Litestar:
    """Build the API. ``settings`` default to the environment (``Settings.from_env``);
    ``clock`` to the system's (its time decides verdicts, expiry and rate-limit minutes)."""
    settings = settings or Settings.from_env()
    app_clock: Clock = clock or SystemClock()
    verifier = TokenVerifier(settings.auth, app_clock)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # A lifespan nested in another of the same app (tests run one per event loop) hands
        # the outer one's objects back when it ends: its pools belong to the other loop.
        outer: Services | None = app.state.get(SERVICES_STATE_KEY)
        database = Database(settings.database)
        redis = RedisLink(settings.redis)  # connects on first use; works degraded without it
        ticket_cache = TicketCache(redis, settings.redis.ticket_cache_ttl_seconds, TicketOut)
        # Committed ticket changes leave the cache before the writer's response is sent.
        database.on_tickets_written = ticket_cache.invalidate
        # Committed scans wake the live dashboards of every process (no round trip added).
        scan_signals = ScanSignals(settings.database.url)
        database.on_scans_written = scan_signals.written
        live_dashboards = LiveDashboards(scan_signals)
        breakers = Breakers(redis, settings.breakers)
        chain: ChainOwnership | None = None
        chain_keys: ChainKeys | None = None
        ownership: OwnershipCheck = NotChainChecked()
        if settings.chain.enabled:
            chain_keys = ChainKeys.from_settings(settings.chain)
            chain = ChainOwnership.from_settings(settings.chain, chain_keys)
            # Slow, failing or unreachable: the verdict is "not chain-verified", never a wait.
            ownership = GuardedOwnership(
                chain, breakers, timeout_seconds=settings.chain.ownership_timeout_seconds
            )
        timeout = settings.observability.ready_timeout_seconds
        readiness = Readiness(
            [
                PostgresProbe(database.engine, schema_problem),
                # Through the shared link: a successful probe also tells it Redis is back.
                RedisProbe(redis.ping),
                AmqpProbe(settings.amqp.url, timeout=timeout),
            ],
            timeout=timeout,
        )
        app.state[SERVICES_STATE_KEY] = Services(
            settings=settings,
            database=database,
            clock=app_clock,
            keys=KeyStore(settings.master_key, clock=app_clock.monotonic),
            redis=redis,
            rate_limits=RateLimits(
                redis, settings.rate_limits, clock=lambda: app_clock.now().timestamp()
            ),
            ticket_cache=ticket_cache,
            breakers=breakers,
            ownership=ownership,
            chain_info=ChainInfo(settings.chain, chain_keys, database),
            custody=str(chain_keys.custody.pubkey()) if chain_keys is not None else None,
            operations=Operations(
                readiness,
                database,
                timeout,
                breakers,
                metrics_token=settings.observability.metrics_token,
            ),
            scan_signals=scan_signals,
            live_dashboards=live_dashboards,
        )
        missing = missing_assets()
        if missing:
            log.warning(
                "the console's browser assets are missing (%s): run ./dev setup; its pages "
                "work without them and say so",
                ", ".join(missing),
            )
        try:
            async with database.engine.connect() as connection:
                problem = await schema_problem(connection)
        except Exception as error:
            log.warning("database not reachable at start-up: %s", error)
        else:
            if problem is not None:
                log.error("%s", problem)
        try:
            # The dashboards' streams end on the first SIGTERM, not after uvicorn's grace
            # period for open connections.
            with ended_on_shutdown(live_dashboards.end):
                yield
        finally:
            live_dashboards.end()
            await scan_signals.close()
            await readiness.close()
            if chain is not None:
                await chain.close()
            await database.close()
            await redis.close()
            if outer is not None:
                app.state[SERVICES_STATE_KEY] = outer

    return Litestar(
        route_handlers=[
            *OPS_ROUTES,
            EventController,
            DeviceController,
            *TICKET_ROUTES,
            *CHECKIN_ROUTES,
            *SYNC_ROUTES,
            *SCAN_ROUTES,
            *CHAIN_ROUTES,
            *TOKEN_ROUTES,
            # The managers' console: HTML pages, signed in with a session cookie, not in the
            # OpenAPI schema (docs/console.md).
            console_router(),
        ],
        lifespan=[lifespan],
        middleware=[
            # First, so its request id and start time cover everything after it.
            RequestContextMiddleware,
            # OPTIONS too (Litestar lets it through by default): this API serves no browser
            # preflight, and a controller's guards run on its OPTIONS route and need the caller.
            DefineMiddleware(
                BearerAuthMiddleware,
                verifier=verifier,
                # The console authenticates with its own session cookie (and never by bearer
                # token); the API never by that cookie.
                exclude=["^/schema", "^/console"],
                exclude_http_methods=[],
            ),
            # Inside authentication: it counts per caller, so it needs the token's principal
            # (requests without one count per client address).
            RateLimitMiddleware(_rate_limits, counted_elsewhere=f"{CONSOLE_PREFIX}/"),
        ],
        before_send=[ResponseObserver(access_log_enabled=settings.observability.access_log)],
        # Per request, from the HTTP edge: the caller and its tenant's transaction. For the
        # app's life, by name: the objects handlers and the controllers' service providers
        # declare (``sync_server.http.dependencies`` lists them).
        dependencies={
            "principal": Provide(provide_principal),
            "session": Provide(provide_session),
            "open_session": Provide(provide_open_session),
            "active_device": Provide(require_active_device),
            "settings": _provided(lambda built: built.settings),
            "database": _provided(lambda built: built.database),
            "clock": _provided(lambda built: built.clock),
            "keys": _provided(lambda built: built.keys),
            "ticket_cache": _provided(lambda built: built.ticket_cache),
            "ownership": _provided(lambda built: built.ownership),
            "chain_info": _provided(lambda built: built.chain_info),
            "custody": _provided(lambda built: built.custody),
            "operations": _provided(lambda built: built.operations),
            "rate_limits": _provided(lambda built: built.rate_limits),
        },
        exception_handlers=exception_handlers(),
        template_config=TemplateConfig(directory=TEMPLATES_DIR, engine=JinjaTemplateEngine),
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
    return _services(Litestar.from_scope(scope).state).rate_limits
