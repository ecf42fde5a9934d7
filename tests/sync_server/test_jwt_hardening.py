"""Issue 14, item 11: the JWTs. A guessable or unrotatable secret, tokens that cannot be
revoked, lifetimes without bound, and a gateway mode in which scanners could not work."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar.testing import AsyncTestClient

from sync_server.app import create_app
from sync_server.http.auth import Role, key_id, mint_token
from sync_server.settings import AuthSettings, Settings, SettingsError, new_master_key
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import assert_problem, bought, create_event, enrolled_device
from tests.sync_server.test_auth_and_outages import gateway_key, jwks_url
from tests.sync_server.test_server_cli import _env as _cli_env
from tests.sync_server.test_server_cli import _invoke, _ok, _one_sentence_error

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
__all__ = ["gateway_key", "jwks_url"]  # the gateway's key set, served on 127.0.0.1


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


async def test_a_device_token_from_before_key_ids_keeps_working_until_it_expires(
    client: AsyncTestClient[Any], settings: Settings, tenant: TenantHandle
) -> None:
    """Scanners enrolled before tokens carried a kid (and a jti) keep syncing across the
    upgrade, as long as the token is signed with the current key; a manager or service token of
    that shape, or a device one signed with any other key, is refused."""
    event = await create_event(client, tenant)
    device = await enrolled_device(client, tenant, event["id"])
    issued = device.headers["Authorization"].removeprefix("Bearer ")
    fresh = jwt.decode(issued, options={"verify_signature": False})
    before = {name: value for name, value in fresh.items() if name != "jti"}
    secret = settings.auth.jwt_secret
    legacy = jwt.encode(before, secret, algorithm="HS256")
    assert "kid" not in jwt.get_unverified_header(legacy)
    assert (await client.get("/v1/devices/me", headers=_bearer(legacy))).status_code == 200
    strangers = jwt.encode(before, secrets.token_urlsafe(32), algorithm="HS256")
    assert_problem(
        await client.get("/v1/devices/me", headers=_bearer(strangers)), 401, "invalid_token"
    )
    no_jti = {name: value for name, value in _claims(tenant).items() if name != "jti"}
    unrevocable = jwt.encode(no_jti, secret, algorithm="HS256", headers={"kid": key_id(secret)})
    assert_problem(
        await client.get("/v1/events", headers=_bearer(unrevocable)), 401, "invalid_token"
    )


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


def _jti(headers: dict[str, str]) -> str:
    token = headers["Authorization"].removeprefix("Bearer ")
    jti: str = jwt.decode(token, options={"verify_signature": False})["jti"]
    return jti


async def test_a_revoked_jti_is_refused_at_once_by_every_instance(
    settings: Settings, tenant: TenantHandle, make_tenant: Any
) -> None:
    stolen, service, other = tenant.token(), tenant.token(Role.SERVICE), tenant.token()
    async with (
        AsyncTestClient(app=create_app(settings)) as first,
        AsyncTestClient(app=create_app(settings)) as second,
    ):
        ticket_id = (await bought(first, tenant))["tickets"][0]["ticket"]["id"]
        # The second instance has verified (and cached) the stolen token, and cached the ticket.
        for headers in (stolen, service):
            assert (await second.get("/v1/events", headers=headers)).status_code == 200
            read = await second.get(f"/v1/tickets/{ticket_id}", headers=headers)
            assert read.status_code == 200

        for headers in (stolen, service):
            revoked = await first.post(
                "/v1/tokens/revocations", json={"jti": _jti(headers)}, headers=other
            )
            assert revoked.status_code == 201, revoked.text
            assert revoked.json()["revoked_by"] == "manager:manager-user"
        for client in (first, second):
            for headers in (stolen, service):
                for path in ("/v1/events", f"/v1/tickets/{ticket_id}", "/v1/chain/config"):
                    refused = await client.get(path, headers=headers)
                    assert_problem(refused, 401, "token_revoked")
            assert (await client.get("/v1/events", headers=other)).status_code == 200

        # Revoking again answers the first revocation.
        again = await first.post(
            "/v1/tokens/revocations", json={"jti": _jti(stolen)}, headers=other
        )
        assert again.status_code == 201
        # Only a manager revokes, and only in its own tenant.
        fresh_service = tenant.token(Role.SERVICE)
        assert_problem(
            await first.post(
                "/v1/tokens/revocations", json={"jti": _jti(other)}, headers=fresh_service
            ),
            403,
            "wrong_role",
        )
        elsewhere: TenantHandle = await make_tenant("Elsewhere")
        foreign = await first.post(
            "/v1/tokens/revocations", json={"jti": _jti(other)}, headers=elsewhere.token()
        )
        assert foreign.status_code == 201
        assert (await first.get("/v1/events", headers=other)).status_code == 200
        for body in ({"jti": ""}, {"jti": "x", "expires_at": "2030-01-01T00:00:00"}, {}):
            bad = await first.post("/v1/tokens/revocations", json=body, headers=other)
            assert_problem(bad, 400, "validation_failed")


async def test_the_cli_revokes_a_token_and_bounds_lifetimes(
    client: AsyncTestClient[Any], settings: Settings, tenant: TenantHandle, tmp_path: Path
) -> None:
    env = _cli_env(settings, tmp_path)
    made = await _invoke(["token", "--tenant", str(tenant.id), "--role", "manager"], env)
    token = _ok(made).strip()
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    assert f"gatehouse-server token revoke --tenant {tenant.id} {jti}" in made.stderr
    assert (await client.get("/v1/events", headers=_bearer(token))).status_code == 200
    revoked = _ok(await _invoke(["token", "revoke", "--tenant", str(tenant.id), jti], env))
    assert f"Revoked token {jti}" in revoked
    assert_problem(await client.get("/v1/events", headers=_bearer(token)), 401, "token_revoked")

    for role, most in (("manager", 12 * 3600), ("service", 30 * 24 * 3600)):
        args = ["token", "--tenant", str(tenant.id), "--role", role, "--ttl"]
        too_long = await _invoke([*args, str(most + 1)], env)
        assert f"A {role} token may live at most {most} seconds" in _one_sentence_error(too_long)
        longest = _ok(await _invoke([*args, str(most)], env)).strip()
        claims = jwt.decode(longest, options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == most
    with pytest.raises(ValueError, match="at most 43200 s"):
        mint_token(
            settings.auth.jwt_secret,
            tenant_id=tenant.id,
            role=Role.MANAGER,
            subject="m",
            ttl_seconds=12 * 3600 + 1,
        )
    short = _cli_env(
        settings, tmp_path, GATEHOUSE_ENV="production", GATEHOUSE_JWT_SECRET=secrets.token_hex(4)
    )
    refused = await _invoke(["token", "--tenant", str(tenant.id), "--role", "manager"], short)
    assert "GATEHOUSE_JWT_SECRET must be at least 32 bytes" in _one_sentence_error(refused)


def test_a_key_set_without_issuer_and_audience_is_refused() -> None:
    url = "http://127.0.0.1:9/jwks.json"
    for missing in ({}, {"GATEHOUSE_JWT_ISSUER": "gw"}, {"GATEHOUSE_JWT_AUDIENCE": "gh"}):
        with pytest.raises(SettingsError, match="GATEHOUSE_JWT_ISSUER and GATEHOUSE_JWT_AUDIENCE"):
            Settings.from_env(_env(GATEHOUSE_JWKS_URL=url, **missing))
    with_both = _env(GATEHOUSE_JWKS_URL=url, GATEHOUSE_JWT_ISSUER="gw", GATEHOUSE_JWT_AUDIENCE="gh")
    assert Settings.from_env(with_both).auth.audience == "gh"


async def test_with_a_key_set_device_tokens_still_work_and_ours_serve_only_devices(
    settings: Settings, jwks_url: str, gateway_key: Ed25519PrivateKey, tenant: TenantHandle
) -> None:
    auth = AuthSettings(
        jwt_secret=settings.auth.jwt_secret, jwks_url=jwks_url, issuer="gw", audience="gh"
    )
    gateway = Settings(database=settings.database, auth=auth, master_key=settings.master_key)

    def signed(**claims: Any) -> str:
        body = _claims(tenant, **{"iss": "gw", "aud": "gh", **claims})
        return jwt.encode(body, gateway_key, algorithm="EdDSA", headers={"kid": "gw-1"})

    manager = TenantHandle(tenant.id, lambda *_, **__: _bearer(signed()))
    async with AsyncTestClient(app=create_app(gateway)) as client:
        event = await create_event(client, manager)
        device = await enrolled_device(client, manager, event["id"])
        token = device.headers["Authorization"].removeprefix("Bearer ")
        assert jwt.get_unverified_header(token) == {
            "alg": "HS256",
            "typ": "JWT",
            "kid": key_id(settings.auth.jwt_secret),
        }
        me = await client.get("/v1/devices/me", headers=device.headers)
        assert me.status_code == 200, me.text
        assert me.json()["device_id"] == device.device_id

        # Our key signs devices only; the gateway's tokens must name this audience and issuer.
        ours = mint_token(
            settings.auth.jwt_secret,
            tenant_id=tenant.id,
            role=Role.MANAGER,
            subject="m",
            ttl_seconds=60,
            issuer="gw",
            audience="gh",
        )
        refused = [
            ours,
            signed(aud="someone-else"),
            signed(iss="someone-else"),
            jwt.encode(
                _claims(tenant, iss="gw"),  # no audience
                gateway_key,
                algorithm="EdDSA",
                headers={"kid": "gw-1"},
            ),
        ]
        for token in refused:
            response = await client.get("/v1/events", headers=_bearer(token))
            assert_problem(response, 401, "invalid_token")
        assert (await client.get("/v1/events", headers=_bearer(signed()))).status_code == 200
