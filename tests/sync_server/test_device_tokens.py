"""Short-lived device access tokens, renewed with rotating refresh tokens (issue 14, item 7).

The real app in-process on the test database, with the server's clock seam (``ManualClock``)
moved forward instead of waiting: an access token lives an hour; ``POST /v1/devices/token``
spends the refresh token and answers a new pair; a spent refresh token presented again revokes
the device.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from shared.clock import ManualClock
from sync_server.app import create_app
from sync_server.domain.devices import refresh
from sync_server.settings import Settings, SettingsError, new_master_key
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import connect

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

EVENT = {
    "name": "Festival",
    "venue": "Field",
    "starts_at": "2027-07-01T10:00:00Z",
    "ends_at": "2027-07-04T23:00:00Z",
}
HOUR = 3600

Client = AsyncTestClient[Litestar]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC))


@pytest.fixture
async def client(settings: Settings, clock: ManualClock) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(settings, clock=clock)) as test_client:
        yield test_client


class Gate:
    """A scanner as the server sees it: its tokens, and the manager who enrolled it."""

    def __init__(self, client: Client, tenant: TenantHandle, clock: ManualClock) -> None:
        self.client, self.tenant, self.clock = client, tenant, clock
        self.device_id = ""
        self.access = ""
        self.refresh = ""

    def manager(self) -> dict[str, str]:
        # Minted by the server's clock, so it outlives the clock's jumps.
        return self.tenant.token(now=self.clock.now())

    async def enroll(self) -> dict[str, Any]:
        event = await self.client.post("/v1/events", json=EVENT, headers=self.manager())
        assert event.status_code == 201, event.text
        code = await self.client.post(
            "/v1/devices/enrollments",
            json={"event_id": event.json()["id"], "gate": "North"},
            headers=self.manager(),
        )
        enrolled = await self.client.post(
            "/v1/devices/enroll", json={"code": code.json()["code"], "device_name": "North"}
        )
        assert enrolled.status_code == 201, enrolled.text
        body: dict[str, Any] = enrolled.json()
        self.device_id, self.access, self.refresh = (
            body["device_id"],
            body["device_token"],
            body["refresh_token"],
        )
        return body

    async def renew(self, token: str | None = None) -> httpx.Response:
        answer = await self.client.post(
            "/v1/devices/token", json={"refresh_token": token or self.refresh}
        )
        if answer.status_code == 200 and token is None:
            body = answer.json()
            self.access, self.refresh = body["device_token"], body["refresh_token"]
        return answer

    async def feed(self, access: str | None = None) -> httpx.Response:
        return await self.client.get(
            "/v1/sync/changes", headers={"Authorization": f"Bearer {access or self.access}"}
        )

    async def listed(self) -> dict[str, Any]:
        found = await self.client.get("/v1/devices", headers=self.manager())
        device: dict[str, Any] = next(d for d in found.json()["items"] if d["id"] == self.device_id)
        return device


@pytest.fixture
async def gate(client: Client, tenant: TenantHandle, clock: ManualClock) -> Gate:
    enrolled = Gate(client, tenant, clock)
    await enrolled.enroll()
    return enrolled


def _problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


async def test_enrollment_answers_an_hour_long_access_token_and_a_refresh_token(
    client: Client, tenant: TenantHandle, clock: ManualClock
) -> None:
    body = await Gate(client, tenant, clock).enroll()
    expires = datetime.fromisoformat(body["device_token_expires_at"])
    assert expires == clock.now() + timedelta(seconds=HOUR)
    assert refresh.parse(body["refresh_token"]) is not None
    assert body["refresh_token"] != body["device_token"]


async def test_a_copied_access_token_is_useless_after_its_hour_while_the_gate_renews_on(
    gate: Gate, clock: ManualClock
) -> None:
    """The exploit: a thief copies the gate laptop's token and reads the feed. At 90f713c the
    token lived 30 days; now it is refused an hour after it was issued."""
    stolen = gate.access
    assert (await gate.feed(stolen)).status_code == 200
    clock.advance(HOUR / 2)
    renewed = await gate.renew()
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["device_token"] != stolen
    assert datetime.fromisoformat(renewed.json()["device_token_expires_at"]) == clock.now() + (
        timedelta(seconds=HOUR)
    )
    clock.advance(HOUR / 2 + 1)
    _problem(await gate.feed(stolen), 401, "token_expired")
    assert (await gate.feed()).status_code == 200
    # Renewed again and again, the gate keeps syncing for days.
    for _ in range(3):
        clock.advance(HOUR - 60)
        assert (await gate.renew()).status_code == 200
        assert (await gate.feed()).status_code == 200


async def test_a_spent_refresh_token_presented_again_revokes_the_device(
    gate: Gate, clock: ManualClock
) -> None:
    """The thief copied the refresh token too; the gate renewed since. The spent token is
    refused, the device is revoked — the gate's tokens with it — and managers see why."""
    copied = gate.refresh
    assert (await gate.renew()).status_code == 200
    clock.advance(HOUR / 2)
    assert (await gate.renew()).status_code == 200
    reused = await gate.renew(copied)
    _problem(reused, 401, "device_revoked")
    assert "used twice" in reused.json()["detail"]
    _problem(await gate.feed(), 401, "device_revoked")
    _problem(await gate.renew(), 401, "device_revoked")
    listed = await gate.listed()
    assert listed["revoked_at"] is not None
    assert listed["revoked_reason"] == "refresh_token_reused"


async def test_a_thief_who_renews_first_is_found_out_when_the_gate_renews(gate: Gate) -> None:
    """The other order: the gate renews, the thief presents the copied token before the gate
    used its new one (as a retry after a lost answer would) and gets a pair; the gate's next
    renewal shows two holders, and the device — the thief's new tokens with it — is revoked."""
    copied = gate.refresh
    assert (await gate.renew()).status_code == 200
    thief = await gate.renew(copied)
    assert thief.status_code == 200, thief.text
    _problem(await gate.renew(), 401, "device_revoked")
    _problem(await gate.feed(thief.json()["device_token"]), 401, "device_revoked")
    _problem(await gate.renew(thief.json()["refresh_token"]), 401, "device_revoked")
    assert (await gate.listed())["revoked_reason"] == "refresh_token_reused"


async def test_a_renewal_whose_answer_was_lost_is_answered_again(gate: Gate) -> None:
    """The gate sent its refresh token, the server renewed, the answer never arrived: the
    gate sends the same token again and gets a working pair — not a revocation."""
    sent = gate.refresh
    lost = await gate.renew(sent)
    assert lost.status_code == 200
    retried = await gate.renew(sent)
    assert retried.status_code == 200, retried.text
    assert retried.json()["refresh_token"] != lost.json()["refresh_token"]
    gate.access, gate.refresh = retried.json()["device_token"], retried.json()["refresh_token"]
    assert (await gate.feed()).status_code == 200
    assert (await gate.renew()).status_code == 200
    assert (await gate.feed()).status_code == 200
    assert (await gate.listed())["revoked_at"] is None


async def test_revoking_a_device_refuses_both_its_tokens_at_once(gate: Gate) -> None:
    revoked = await gate.client.delete(f"/v1/devices/{gate.device_id}", headers=gate.manager())
    assert revoked.status_code == 204
    _problem(await gate.feed(), 401, "device_revoked")
    _problem(await gate.renew(), 401, "device_revoked")
    assert (await gate.listed())["revoked_reason"] == "manager"


async def test_a_refresh_token_unused_for_longer_than_its_idle_time_renews_nothing(
    gate: Gate, clock: ManualClock, settings: Settings
) -> None:
    clock.advance(settings.auth.device_refresh_idle_seconds - 60)
    assert (await gate.renew()).status_code == 200  # a festival's days offline: still fine
    clock.advance(settings.auth.device_refresh_idle_seconds + 1)
    _problem(await gate.renew(), 401, "refresh_token_expired")
    assert (await gate.listed())["revoked_at"] is None


@pytest.mark.parametrize(
    "body",
    [{}, {"refresh_token": ""}, {"refresh_token": 7}, {"refresh_token": "x" * 300}, []],
)
async def test_a_renewal_request_that_is_not_one_is_a_400(client: Client, body: object) -> None:
    _problem(await client.post("/v1/devices/token", json=body), 400, "validation_failed")


async def test_a_refresh_token_that_is_not_the_devices_renews_nothing_and_revokes_nothing(
    gate: Gate, make_tenant: Any
) -> None:
    """Knowing a device's id (it is in every scan it uploads) is not enough to revoke it: a
    token without the device's family secret is merely invalid."""
    real = refresh.parse(gate.refresh)
    assert real is not None
    forged = [
        "ghr1.nonsense",
        str(refresh.first_token(real.tenant_id, real.device_id)),  # another family
        str(refresh.RefreshToken(real.tenant_id, real.device_id, 5, "A" * 22, "B" * 43)),
        str(refresh.first_token(uuid.uuid4(), real.device_id)),  # no such tenant
    ]
    other = await make_tenant("Other venue")
    forged.append(  # the right family under another tenant: row-level security hides the row
        str(refresh.RefreshToken(other.id, real.device_id, 0, real.family, real.secret))
    )
    for token in forged:
        _problem(await gate.renew(token), 401, "refresh_token_invalid")
    assert (await gate.listed())["revoked_at"] is None
    assert (await gate.renew()).status_code == 200


async def test_a_device_enrolled_before_refresh_tokens_keeps_its_token_and_cannot_renew(
    gate: Gate, settings: Settings
) -> None:
    """Devices enrolled before migration 0008 have no refresh token (the columns are NULL):
    their 30-day token works until it expires, and no refresh token renews them."""
    async with connect(settings.database.admin_url) as conn:
        await conn.execute(
            text(
                "UPDATE devices SET refresh_family_hash = NULL, refresh_hash = NULL, "
                "refresh_previous_hash = NULL WHERE id = :id"
            ),
            {"id": uuid.UUID(gate.device_id)},
        )
        await conn.commit()
    assert (await gate.feed()).status_code == 200
    _problem(await gate.renew(), 401, "refresh_token_invalid")


def test_device_token_lifetimes_are_bounded_at_start_up() -> None:
    """A 30-day access token (the old default) or a refresh idle time no longer than the access
    token is refused with a sentence naming the setting; the defaults are an hour and 30 days."""
    base = {
        "GATEHOUSE_ENV": "production",
        "GATEHOUSE_JWT_SECRET": secrets.token_urlsafe(32),
        "GATEHOUSE_MASTER_KEY": new_master_key(),
    }
    defaults = Settings.from_env(base).auth
    assert (defaults.device_token_ttl_seconds, defaults.device_refresh_idle_seconds) == (
        HOUR,
        30 * 24 * HOUR,
    )
    for bad in ("30", str(30 * 24 * HOUR)):
        with pytest.raises(SettingsError, match="GATEHOUSE_DEVICE_TOKEN_TTL must be from 60"):
            Settings.from_env({**base, "GATEHOUSE_DEVICE_TOKEN_TTL": bad})
    for bad in (str(HOUR), str(91 * 24 * HOUR)):
        with pytest.raises(SettingsError, match="GATEHOUSE_DEVICE_REFRESH_IDLE_TTL must be"):
            Settings.from_env({**base, "GATEHOUSE_DEVICE_REFRESH_IDLE_TTL": bad})


async def test_a_refresh_token_newer_than_the_database_is_refused_without_revoking(
    gate: Gate,
) -> None:
    """A database restored from a backup taken before the device renewed has not issued the
    device's refresh token yet: a generation ahead of it is not a reuse. It renews nothing (its
    secret cannot be checked) and revokes nothing; the device is told to enroll again."""
    real = refresh.parse(gate.refresh)
    assert real is not None
    ahead = refresh.RefreshToken(
        real.tenant_id, real.device_id, real.generation + 3, real.family, "B" * 43
    )
    _problem(await gate.renew(str(ahead)), 401, "refresh_token_ahead")
    assert (await gate.listed())["revoked_at"] is None
    assert (await gate.renew()).status_code == 200
