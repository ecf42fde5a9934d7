"""``gatehouse-server worker`` as a real process: it relays a committed event, and SIGTERM
stops it cleanly (exit 0, nothing left claimed)."""

from __future__ import annotations

import asyncio
import base64
import signal
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from sync_server.db.engine import Database
from sync_server.messaging.outbox import add_ticket_event
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import connect
from tests.sync_server.messaging.rabbit import bound_queue, collect, of_tenants

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SERVER = Path(sys.executable).parent / "gatehouse-server"


async def test_worker_relays_and_stops_on_sigterm(
    settings: Settings, tenant: TenantHandle, amqp_url: str, tmp_path: Path
) -> None:
    env = {
        "PATH": str(SERVER.parent),
        "GATEHOUSE_ENV": "test",
        "GATEHOUSE_CONFIG_DIR": str(tmp_path),
        "GATEHOUSE_DATABASE_URL": settings.database.url,
        "GATEHOUSE_DATABASE_ADMIN_URL": settings.database.admin_url,
        "GATEHOUSE_JWT_SECRET": settings.auth.jwt_secret,
        "GATEHOUSE_MASTER_KEY": base64.urlsafe_b64encode(settings.master_key).decode(),
        "GATEHOUSE_AMQP_URL": amqp_url,
        "GATEHOUSE_LOG_FORMAT": "console",
    }
    database = Database(settings.database)
    async with bound_queue(amqp_url) as queue:
        process = await asyncio.create_subprocess_exec(
            str(SERVER), "worker", env=env, stderr=asyncio.subprocess.PIPE
        )
        try:
            async with database.tenant(tenant.id) as session:
                event_id = add_ticket_event(
                    session,
                    routing_key="ticket.purchased",
                    tenant_id=tenant.id,
                    ticket_id=uuid.uuid4(),
                    time=datetime.now(UTC),
                    data={"note": "through the worker"},
                )
            arrivals = await collect(queue, mine=of_tenants(tenant.id), expected=1, settle=0)
            assert arrivals[0].envelope["id"] == str(event_id)

            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 20)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await database.close()
    assert process.stderr is not None
    log = (await process.stderr.read()).decode()
    assert process.returncode == 0, log
    assert "worker stopped" in log
    assert "Traceback" not in log

    # Marked sent: the relay committed what the broker confirmed before it exited.
    async with connect(settings.database.admin_url) as db:
        sent_at = await db.scalar(
            text("SELECT sent_at FROM outbox WHERE id = :id"), {"id": event_id}
        )
    assert sent_at is not None
