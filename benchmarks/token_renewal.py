"""What one device token renewal (``POST /v1/devices/token``) costs.

    python -m benchmarks.token_renewal [--quick]

A fresh migrated database, the app in this process (``httpx.ASGITransport``: no network, no
uvicorn), one enrolled device renewing its tokens one renewal after another — each spends the
refresh token the previous one answered. Prints the median and the 95th percentile of the
wall-clock time per renewal, which covers the app's request handling, the device row's lock and
update in one transaction, and minting the access token. A scanner renews about twice an hour.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import sys
import time
import uuid

import httpx

from benchmarks.server_harness import fresh_database
from sync_server.app import create_app
from sync_server.domain.tenants.services import create_tenant
from sync_server.http.auth import Role, mint_token
from sync_server.settings import AuthSettings, RedisSettings, Settings

EVENT = {
    "name": "Bench",
    "venue": "Hall",
    "starts_at": "2030-05-01T19:00:00Z",
    "ends_at": "2030-05-01T23:00:00Z",
}


async def _measure(settings: Settings, renewals: int) -> list[float]:
    tenant_id = await create_tenant(settings.database.admin_url, "Bench venue")
    manager = mint_token(
        settings.auth.jwt_secret,
        tenant_id=tenant_id,
        role=Role.MANAGER,
        subject="bench",
        ttl_seconds=3600,
    )
    headers = {"Authorization": f"Bearer {manager}"}
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]  # narrower scope types
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url="http://b") as http:
        event = (await http.post("/v1/events", json=EVENT, headers=headers)).json()
        code = (
            await http.post(
                "/v1/devices/enrollments",
                json={"event_id": event["id"], "gate": "North"},
                headers=headers,
            )
        ).json()["code"]
        enrolled = await http.post(
            "/v1/devices/enroll", json={"code": code, "device_name": "Bench scanner"}
        )
        refresh = enrolled.json()["refresh_token"]
        took = []
        for _ in range(renewals):
            started = time.perf_counter()
            answer = await http.post("/v1/devices/token", json={"refresh_token": refresh})
            took.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
            refresh = answer.json()["refresh_token"]
    return took


def main(quick: bool) -> None:
    renewals = 100 if quick else 1000
    with fresh_database("renewal") as database:
        settings = Settings(
            database=database.settings(pool_size=2),
            redis=RedisSettings(key_prefix=f"gatehouse-bench-{uuid.uuid4().hex[:8]}:"),
            auth=AuthSettings(jwt_secret=secrets.token_urlsafe(32)),
            master_key=secrets.token_bytes(32),
            environment="test",
        )
        took = asyncio.run(_measure(settings, renewals))
    took.sort()
    median = statistics.median(took) * 1000
    p95 = took[int(len(took) * 0.95)] * 1000
    print(f"{renewals} renewals in sequence: median {median:.2f} ms, p95 {p95:.2f} ms per renewal")


if __name__ == "__main__":
    main("--quick" in sys.argv[1:])
