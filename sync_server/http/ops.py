"""``/health``, ``/ready`` and ``/metrics``: for load balancers and Prometheus.

``/health`` and ``/ready`` need no token and are never rate-limited (orchestrators' probes).
``/metrics`` holds every tenant's figures, so the API serves it only to whoever sends the
operators' token (``GATEHOUSE_METRICS_TOKEN``, as ``Authorization: Bearer …``); without the
setting the API serves no ``/metrics`` at all (404), and a wrong or missing token is a 404 too
(nothing tells a stranger the page exists).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass
from typing import Any, TypeAlias

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import SkipValidation
from litestar.types import ControllerRouterHandler
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy.exc import DBAPIError, ProgrammingError

from sync_server.db.engine import Database
from sync_server.http.problems import Problem, PublicOperation
from sync_server.messaging.outbox import outbox_backlog
from sync_server.observability import metrics
from sync_server.observability.readiness import Readiness, ReadinessReport
from sync_server.redis.breakers import Breakers

log = logging.getLogger(__name__)

_OPS = {"exclude_from_auth": True}


@dataclass(slots=True)
class Operations:
    """What the ops endpoints need; built with the app's lifespan, provided as ``operations``."""

    readiness: Readiness
    database: Database
    timeout_seconds: float = 2.0
    breakers: Breakers | None = None
    #: The token ``/metrics`` asks for; None: the API serves no metrics.
    metrics_token: str | None = None

    def may_scrape(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries the metrics token."""
        if self.metrics_token is None or authorization is None:
            return False
        scheme, _, token = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.metrics_token.encode()
        )

    async def scraped(self) -> list[Metric]:
        """Gauges computed for this scrape: dependency status and the outbox backlog; the
        circuit-breaker gauge is brought up to date (an open circuit turns half-open by the
        clock alone, with no call to record it)."""
        report, backlog, _ = await asyncio.gather(
            self.readiness.report(), self._outbox_backlog(), self._breaker_states()
        )
        families = _dependency_families(report)
        if backlog is not None:
            unsent, lag = backlog
            families.append(
                GaugeMetricFamily(
                    f"{metrics.PREFIX}_outbox_unsent",
                    "Outbox events not yet confirmed by RabbitMQ, all tenants.",
                    value=unsent,
                )
            )
            families.append(
                GaugeMetricFamily(
                    f"{metrics.PREFIX}_outbox_lag_seconds",
                    "Age of the oldest outbox event not yet published; 0 when none waits.",
                    value=lag,
                )
            )
        return families

    async def _breaker_states(self) -> None:
        if self.breakers is None:
            return
        try:
            async with asyncio.timeout(self.timeout_seconds):
                for service in self.breakers.services():
                    state = await self.breakers.state(service)
                    metrics.set_breaker_state(service, state.value)
        except TimeoutError:
            return  # the last values stand; Redis's trouble shows in gatehouse_dependency_up

    async def _outbox_backlog(self) -> tuple[int, float] | None:
        """(unsent rows, age of the oldest in seconds), or None when the database cannot say
        now — then the samples are left out rather than reported as a reassuring zero."""
        try:
            async with asyncio.timeout(self.timeout_seconds):
                async with self.database.engine.connect() as connection:
                    backlog = await outbox_backlog(connection)
        except ProgrammingError as error:  # a database the migrations have not reached
            log.warning("outbox backlog unknown: %s", error.orig or error)
            return None
        except (DBAPIError, OSError, TimeoutError):
            return None  # Postgres is down: /ready and gatehouse_dependency_up say so
        return backlog.unsent, backlog.oldest_age_seconds


def _dependency_families(report: ReadinessReport) -> list[Metric]:
    up = GaugeMetricFamily(
        f"{metrics.PREFIX}_dependency_up",
        "1 when the dependency answered the readiness probe, else 0.",
        labels=["dependency"],
    )
    latency = GaugeMetricFamily(
        f"{metrics.PREFIX}_dependency_latency_seconds",
        "How long the last readiness probe of the dependency took.",
        labels=["dependency"],
    )
    for name, check in report.checks.items():
        up.add_metric([name], 1.0 if check.status == "up" else 0.0)
        latency.add_metric([name], check.latency_ms / 1000)
    return [up, latency]


OperationsDep: TypeAlias = NamedDependency[SkipValidation[Operations]]


@get("/health", opt=_OPS, tags=["ops"], operation_class=PublicOperation)
async def health() -> dict[str, str]:
    """Liveness: the process answers. Checks no dependency, so a database outage never makes
    an orchestrator restart every instance."""
    return {"status": "ok"}


@get(
    "/ready",
    opt=_OPS,
    tags=["ops"],
    operation_class=PublicOperation,
    # Not a problem: the same report, saying which dependency is down.
    responses={503: ResponseSpec(ReadinessReport, description="Postgres does not answer.")},
)
async def ready(operations: OperationsDep) -> Response[ReadinessReport]:
    """Readiness, per dependency with status and latency: 200 when Postgres answers (status
    ``ready``, or ``degraded`` when Redis or RabbitMQ does not), 503 when it does not."""
    report = await operations.readiness.report()
    return Response(report, status_code=report.http_status)


@get("/metrics", opt=_OPS, tags=["ops"], include_in_schema=False)
async def prometheus_metrics(
    operations: OperationsDep, request: Request[Any, Any, Any]
) -> Response[bytes]:
    """Prometheus text exposition: every worker process's metrics, summed; only with the
    metrics token (404 otherwise)."""
    if not operations.may_scrape(request.headers.get("authorization")):
        raise Problem(404, "not_found", "Nothing here.")
    body, content_type = metrics.render(await operations.scraped())
    return Response(body, media_type=content_type)


OPS_ROUTES: list[ControllerRouterHandler] = [health, ready, prometheus_metrics]
