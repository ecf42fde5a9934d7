"""The cost of check-in lists on an online verdict (issue 16): the server's CPU per
``POST /v1/validate`` for an event without lists and for one with two lists and a rule, the
app in-process on a throw-away database (the one process measured: Postgres's own work is not
in it), and the one statement that reads an event's plan when its cache is cold.

    python -m benchmarks.checkin_lists [--quick]

Each ticket is validated once (a first entry): the history is empty, the lists' zone check and
the rule ("once a day") run in full. The plan is cached per event and setup version, so a warm
verdict adds no statement; the cold read happens once per event and setup change.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import sys
import time
import uuid

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from benchmarks.environment import header
from benchmarks.server_harness import fresh_database
from sync_server.app import create_app
from sync_server.domain.checkin import setup as plans
from sync_server.domain.tenants.services import create_tenant
from sync_server.http.auth import Role, mint_token
from sync_server.settings import AuthSettings, DatabaseSettings, RateLimitSettings, Settings

EVENT = {
    "name": "Bench",
    "venue": "Hall",
    "starts_at": "2030-05-01T19:00:00Z",
    "ends_at": "2030-05-01T23:00:00Z",
}


async def _event(
    http: httpx.AsyncClient, manager: dict[str, str], *, lists: bool, tickets: int
) -> tuple[str, list[str], dict[str, str]]:
    event = (await http.post("/v1/events", json=EVENT, headers=manager)).json()
    kind = (
        await http.post(
            f"/v1/events/{event['id']}/ticket-types",
            json={"name": "GA", "capacity": tickets},
            headers=manager,
        )
    ).json()
    if lists:
        path = f"/v1/events/{event['id']}/checkin-lists"
        await http.post(path, json={"name": "VIP", "gates": ["VIP"]}, headers=manager)
        made = await http.post(
            path,
            json={
                "name": "Main",
                "gates": ["Main"],
                "ticket_type_ids": [kind["id"]],
                "rules": {"<": [{"var": "entries_today"}, 1]},
            },
            headers=manager,
        )
        assert made.status_code == 201, made.text
    codes: list[str] = []
    while len(codes) < tickets:  # at most 50 a purchase
        bought = await http.post(
            "/v1/purchases",
            json={
                "ticket_type_id": kind["id"],
                "quantity": min(50, tickets - len(codes)),
                "holder": {"user_id": "u", "name": "Bench Guest"},
            },
            headers={**manager, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert bought.status_code == 201, bought.text
        codes += [t["code"] for t in bought.json()["tickets"]]
    enrollment = (
        await http.post(
            "/v1/devices/enrollments",
            json={"event_id": event["id"], "gate": "Main"},
            headers=manager,
        )
    ).json()
    device = (
        await http.post(
            "/v1/devices/enroll", json={"code": enrollment["code"], "device_name": "Main"}
        )
    ).json()
    return event["id"], codes, {"Authorization": f"Bearer {device['device_token']}"}


async def _verdicts(http: httpx.AsyncClient, codes: list[str], device: dict[str, str]) -> float:
    """CPU ms per verdict of this process over ``codes``, each validated once."""
    started = time.process_time()
    for code in codes:
        answer = await http.post("/v1/validate", json={"code": code}, headers=device)
        assert answer.json()["result"] == "admitted", answer.text
    return (time.process_time() - started) * 1000 / len(codes)


async def _measure(admin_url: str, app_url: str, quick: bool) -> str:
    count = 200 if quick else 1000
    rounds = 1 if quick else 3
    settings = Settings(
        database=DatabaseSettings(url=app_url, admin_url=admin_url, app_role="gatehouse_app"),
        auth=AuthSettings(jwt_secret=secrets.token_urlsafe(32)),
        master_key=secrets.token_bytes(32),
        environment="test",
        rate_limits=RateLimitSettings(scanner=0, manager=0, anonymous=0),
    )
    tenant_id = await create_tenant(admin_url, "Bench")
    manager = {
        "Authorization": "Bearer "
        + mint_token(
            settings.auth.jwt_secret,
            tenant_id=tenant_id,
            role=Role.MANAGER,
            subject="bench",
            ttl_seconds=3600,
        )
    }
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    plain: list[float] = []
    listed: list[float] = []
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url="http://b") as http:
        for _ in range(rounds):
            # Alternating, so that drift of the machine touches both alike.
            _, codes, device = await _event(http, manager, lists=False, tickets=count)
            plain.append(await _verdicts(http, codes, device))
            event_id, codes, device = await _event(http, manager, lists=True, tickets=count)
            listed.append(await _verdicts(http, codes, device))
    connection = await asyncpg.connect(
        make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        reads = []
        for _ in range(50 if quick else 500):
            started = time.perf_counter()
            row = await plans.read_setup(connection, uuid.UUID(event_id))
            plans.plan_of(row)  # type: ignore[arg-type]
            reads.append((time.perf_counter() - started) * 1000)
    finally:
        await connection.close()
    base, with_lists = statistics.median(plain), statistics.median(listed)
    return "\n".join(
        [
            "## Check-in lists on validate (issue 16)",
            "",
            header("python -m benchmarks.checkin_lists" + (" --quick" if quick else "")),
            "",
            f"Server CPU per verdict (app in-process, {count} first entries, median of {rounds}):",
            "",
            "| event | CPU ms / verdict |",
            "| --- | ---: |",
            f"| no lists | {base:.2f} |",
            f"| 2 lists, a rule (once a day) | {with_lists:.2f} |",
            f"| difference | {with_lists - base:+.2f} ({(with_lists / base - 1) * 100:+.0f} %) |",
            "",
            f"A cold plan (the setup statement and its plan, as the owner): p50 "
            f"{statistics.median(reads):.2f} ms over {len(reads)} reads; once per event and "
            "setup version, then cached.",
        ]
    )


def run(quick: bool = False) -> str:
    with fresh_database("lists") as database:
        return asyncio.run(_measure(database.admin_url, database.app_url, quick))


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
