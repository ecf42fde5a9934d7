"""Issue 14, item 11: the JWTs. A guessable or unrotatable secret, tokens that cannot be
revoked, lifetimes without bound, and a gateway mode in which scanners could not work."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from litestar.testing import AsyncTestClient

from sync_server.app import create_app
from sync_server.http.auth import Role, key_id, mint_token
from sync_server.settings import AuthSettings, Settings, SettingsError, new_master_key
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import assert_problem

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def _env(**overrides: str) -> dict[str, str]:
    return {
        "GATEHOUSE_ENV": "production",
        "GATEHOUSE_JWT_SECRET": secrets.token_urlsafe(32),
        "GATEHOUSE_MASTER_KEY": new_master_key(),
        **overrides,
    }


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _claims(tenant: TenantHandle, role: str = "manager", **more: Any) -> dict[str, Any]:
    return {
        "sub": "someone",
        "tenant_id": str(tenant.id),
        "role": role,
        "exp": datetime.now(UTC) + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
        **more,
    }


def test_a_short_jwt_secret_is_refused_at_start_up() -> None:
    for name in ("GATEHOUSE_JWT_SECRET", "GATEHOUSE_JWT_PREVIOUS_SECRETS"):
        for environment in ("production", "staging"):
            with pytest.raises(SettingsError, match=f"{name} must be at least 32 bytes, not 6"):
                Settings.from_env(_env(GATEHOUSE_ENV=environment, **{name: "secret"}))
    # 32 bytes will do, and a developer's own machine may use what it likes.
    Settings.from_env(_env(GATEHOUSE_JWT_SECRET=secrets.token_hex(16)))
    short = secrets.token_hex(3)
    lenient = Settings.from_env(_env(GATEHOUSE_ENV="development", GATEHOUSE_JWT_SECRET=short))
    assert lenient.auth.hs_keys == (short,)


async def test_tokens_without_a_kid_or_with_an_unknown_kid_are_refused(
    client: AsyncTestClient[Any], settings: Settings, tenant: TenantHandle
) -> None:
    secret = settings.auth.jwt_secret
    no_kid = jwt.encode(_claims(tenant), secret, algorithm="HS256")
    unknown_kid = jwt.encode(
        _claims(tenant), secret, algorithm="HS256", headers={"kid": "0123456789abcdef"}
    )
    # Someone else's key, naming ours: the signature does not hold.
    forged = jwt.encode(
        _claims(tenant),
        secrets.token_urlsafe(32),
        algorithm="HS256",
        headers={"kid": key_id(secret)},
    )
    for token in (no_kid, unknown_kid, forged):
        assert_problem(await client.get("/v1/events", headers=_bearer(token)), 401, "invalid_token")
    ours = mint_token(secret, tenant_id=tenant.id, role=Role.MANAGER, subject="m", ttl_seconds=60)
    assert jwt.get_unverified_header(ours)["kid"] == key_id(secret)
    assert secret not in jwt.get_unverified_header(ours)["kid"]
    assert (await client.get("/v1/events", headers=_bearer(ours))).status_code == 200


async def test_a_token_signed_with_the_previous_key_is_accepted_during_rotation(
    settings: Settings, tenant: TenantHandle
) -> None:
    old, new = settings.auth.jwt_secret, secrets.token_urlsafe(32)
    signed_before = mint_token(
        old, tenant_id=tenant.id, role=Role.MANAGER, subject="m", ttl_seconds=60
    )

    def rotated(previous: tuple[str, ...]) -> Settings:
        auth = AuthSettings(jwt_secret=new, previous_secrets=previous)
        return Settings(database=settings.database, auth=auth, master_key=settings.master_key)

    async with AsyncTestClient(app=create_app(rotated((old,)))) as during:
        accepted = await during.get("/v1/events", headers=_bearer(signed_before))
        assert accepted.status_code == 200, accepted.text
        signed_after = mint_token(
            new, tenant_id=tenant.id, role=Role.MANAGER, subject="m", ttl_seconds=60
        )
        assert (await during.get("/v1/events", headers=_bearer(signed_after))).status_code == 200
    # Once the old key is retired, what it signed is refused.
    async with AsyncTestClient(app=create_app(rotated(()))) as after:
        refused = await after.get("/v1/events", headers=_bearer(signed_before))
        assert_problem(refused, 401, "invalid_token")
