"""The floor of the validate benchmark: a Litestar app that does no work.

``POST /v1/validate`` decodes the same JSON body (``shared.wire.ValidateRequest``) and answers
a small admitted verdict, with no auth, no database and no crypto. Served by uvicorn with the
settings of ``gatehouse-server serve`` and the same number of workers, under the same wrk load,
it shows what HTTP, the ASGI server and the framework alone cost on this machine.

    python -m uvicorn benchmarks.trivial_app:create_app --factory --workers 2
"""

from __future__ import annotations

from litestar import Litestar, get, post

from shared.domain import Direction, VerdictResult
from shared.wire import ValidateRequest, Verdict


@post("/v1/validate", status_code=200)
async def validate(data: ValidateRequest) -> Verdict:
    return Verdict(result=VerdictResult.ADMITTED, direction=Direction(data.direction), gate="A")


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def create_app() -> Litestar:
    return Litestar(route_handlers=[validate, health], openapi_config=None)
