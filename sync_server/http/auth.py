"""Bearer tokens: who is calling, for which tenant, in which role.

Tokens are JWTs with ``sub``, ``tenant_id``, ``role``, ``exp`` and ``jti``; device tokens add
``device_id``, ``event_id`` and ``gate``. The tenant comes from the token only, never from the
request.

Our own tokens are HS256 and name their key in the ``kid`` header (``key_id``: a short hash of
the key, never the key): the verifier accepts the current key and the previous ones
(``AuthSettings.hs_keys``), so the secret can be rotated without logging every device out, and
refuses a token with a ``kid`` it does not know. A token without a ``kid`` is refused too,
except a device token signed with the current key: scanners enrolled before tokens carried a
``kid`` keep syncing across the upgrade until their token expires (device tokens are revoked
through the devices table, so they need no ``jti`` either). When a JWKS URL is configured
(a deployment behind an API gateway), managers and services come with EdDSA/RS256 tokens
signed by its keys; device tokens, which only this server issues, stay our HS256 ones.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import anyio.to_thread
import jwt
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from shared.clock import Clock, SystemClock
from sync_server.http.problems import Forbidden, Unauthorized
from sync_server.settings import AuthSettings

HS_ALGORITHMS = ["HS256"]
JWKS_ALGORITHMS = ["EdDSA", "RS256"]


class Role(StrEnum):
    MANAGER = "manager"
    SCANNER = "scanner"
    SERVICE = "service"


#: The longest a manager or service token this server issues may live: a person's working day,
#: and a month for a service (a box office's integration), so a leaked token does not outlive
#: the next rotation of the secret. Device access tokens live
#: ``AuthSettings.device_token_ttl_seconds`` (an hour; at most a day) and are renewed with a
#: refresh token (``sync_server.domain.devices.refresh``).
MAX_TOKEN_TTL = {
    Role.MANAGER: timedelta(hours=12),
    Role.SERVICE: timedelta(days=30),
    Role.SCANNER: timedelta(days=1),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller, as the token says."""

    subject: str
    tenant_id: uuid.UUID
    role: Role
    device_id: uuid.UUID | None = None
    event_id: uuid.UUID | None = None
    gate: str | None = None
    #: The token's ``jti``: what a revocation names (``sync_server.domain.tokens``).
    token_id: str | None = None

    @property
    def actor(self) -> str:
        """How history records this caller."""
        if self.device_id is not None:
            return f"device:{self.device_id}"
        return f"{self.role}:{self.subject}"


def _duration(span: timedelta) -> str:
    hours = int(span.total_seconds()) // 3600
    return f"{hours // 24} days" if hours % 24 == 0 else f"{hours} hours"


def key_id(secret: str) -> str:
    """The ``kid`` of an HS256 key: 16 hex digits of a hash of it. It names the key, and tells
    nothing of it."""
    return hashlib.sha256(b"gatehouse/jwt-kid\0" + secret.encode()).hexdigest()[:16]


def mint_token(
    secret: str,
    *,
    tenant_id: uuid.UUID,
    role: Role,
    subject: str,
    ttl_seconds: int,
    device_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    gate: str | None = None,
    issuer: str | None = None,
    audience: str | None = None,
    now: datetime | None = None,
) -> str:
    """An HS256 token for ``subject`` signed with ``secret`` (the current key), naming it in its
    ``kid`` header, with a fresh ``jti``. Pass the configured ``issuer`` and ``audience`` (the
    verifier requires them when they are set). Raises ``ValueError`` for a TTL that is not
    positive or is above the role's ``MAX_TOKEN_TTL``."""
    if ttl_seconds <= 0:
        raise ValueError("a token's lifetime must be positive")
    longest = MAX_TOKEN_TTL.get(role)
    if longest is not None and ttl_seconds > longest.total_seconds():
        raise ValueError(
            f"a {role} token may live at most {int(longest.total_seconds())} s "
            f"({_duration(longest)}), not {ttl_seconds} s"
        )
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject,
        "tenant_id": str(tenant_id),
        "role": role.value,
        "iat": issued,
        "exp": issued + timedelta(seconds=ttl_seconds),
        "jti": uuid.uuid4().hex,
    }
    if device_id is not None:
        claims.update(device_id=str(device_id), event_id=str(event_id), gate=gate)
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": key_id(secret)})


class TokenVerifier:
    """Checks a bearer token and turns its claims into a ``Principal``."""

    #: Verified tokens remembered per process (a scanner sends the same token all day).
    CACHE_SIZE = 10_000

    def __init__(self, settings: AuthSettings, clock: Clock | None = None) -> None:
        self._settings = settings
        #: Whose time decides expiry: the app's clock (a test moves it; ``SystemClock`` else).
        self._clock: Clock = clock or SystemClock()
        self._jwks = jwt.PyJWKClient(settings.jwks_url) if settings.jwks_url else None
        self._hs_keys = {key_id(secret): secret for secret in settings.hs_keys}
        self._verified: dict[str, tuple[Principal, float]] = {}

    async def verify(self, token: str) -> Principal:
        """Raises ``Unauthorized`` with a code saying what is wrong with the token.

        A token that verified before is taken from a cache until its ``exp``: a token cannot
        change, and revocation of devices is checked against the database on every request.
        """
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires = cached
            if self._clock.now().timestamp() < expires:
                return principal
            del self._verified[token]
        principal, expires = await self._verify(token)
        if len(self._verified) >= self.CACHE_SIZE:
            self._verified.clear()  # crude but bounded; a cold cache costs one decode per token
        self._verified[token] = (principal, expires)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
            # The header's alg picks the kind of key: ours (HS256, by kid) or the key set's
            # (EdDSA/RS256 only), so no token is ever checked against the wrong kind of key.
            ours = self._jwks is None or header.get("alg") in HS_ALGORITHMS
            key: Any
            kid = header.get("kid")
            legacy = ours and not kid
            if self._jwks is not None and not ours:
                # PyJWKClient fetches (and caches) the key set over blocking HTTP.
                key = (
                    await anyio.to_thread.run_sync(self._jwks.get_signing_key_from_jwt, token)
                ).key
                algorithms = JWKS_ALGORITHMS
            elif legacy:  # only a device token may be this; checked below once it is read
                key, algorithms = self._settings.jwt_secret, HS_ALGORITHMS
            else:
                key, algorithms = self._hs_key(kid), HS_ALGORITHMS
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=self._settings.issuer,
                audience=self._settings.audience,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self._settings.audience is not None,
                    # Checked below against the app's clock, not the machine's.
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
            expires = float(claims["exp"])
            if not math.isfinite(expires):
                raise jwt.InvalidTokenError("exp is not a time")
        except (jwt.PyJWKClientError, jwt.InvalidTokenError, TypeError, ValueError) as error:
            raise Unauthorized("invalid_token", f"The token is not valid: {error}.") from error
        if self._clock.now().timestamp() >= expires:
            raise Unauthorized("token_expired", "The token has expired.")
        principal = _principal(claims)
        if principal.role is not Role.SCANNER and legacy:
            raise Unauthorized(
                "invalid_token", "The token does not name its key (no kid header); get a new one."
            )
        if principal.role is not Role.SCANNER and not claims.get("jti"):
            raise Unauthorized(
                "invalid_token", "The token has no jti, so it could not be revoked; get a new one."
            )
        if ours and self._jwks is not None and principal.role is not Role.SCANNER:
            raise Unauthorized(
                "invalid_token",
                "This server takes manager and service tokens from the key set at its JWKS URL; "
                "it signs only device tokens itself.",
            )
        return principal, expires

    def _hs_key(self, kid: object) -> str:
        if not isinstance(kid, str) or not kid:
            raise Unauthorized(
                "invalid_token", "The token does not name its key (no kid header); get a new one."
            )
        key = self._hs_keys.get(kid)
        if key is None:
            raise Unauthorized(
                "invalid_token",
                "The token's key (kid) is not one of this server's: it was retired or never "
                "ours; get a new token.",
            )
        return key


def _principal(claims: dict[str, Any]) -> Principal:
    try:
        role = Role(claims["role"])
        tenant_id = uuid.UUID(str(claims["tenant_id"]))
        device_id = uuid.UUID(str(claims["device_id"])) if claims.get("device_id") else None
        event_id = uuid.UUID(str(claims["event_id"])) if claims.get("event_id") else None
    except (KeyError, ValueError) as error:
        raise Unauthorized(
            "invalid_token", "The token lacks a valid tenant_id or role claim."
        ) from error
    if role is Role.SCANNER and device_id is None:
        raise Unauthorized("invalid_token", "A scanner token must name its device.")
    return Principal(
        subject=str(claims["sub"]),
        tenant_id=tenant_id,
        role=role,
        device_id=device_id,
        event_id=event_id,
        gate=claims.get("gate"),
        token_id=str(claims["jti"]) if claims.get("jti") else None,
    )


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    """Every route needs a valid bearer token unless its handler opts out with
    ``opt={"exclude_from_auth": True}``."""

    def __init__(self, app: Any, verifier: TokenVerifier, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._verifier = verifier

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing_token", "Send an Authorization: Bearer <token> header.")
        principal = await self._verifier.verify(token.strip())
        return AuthenticationResult(user=principal, auth=token)


def allow(
    *roles: Role,
) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]:
    """A guard that lets only the given roles through (403 otherwise).

    A coroutine function although it awaits nothing: Litestar runs a plain function guard in
    a worker thread (``sync_to_thread``), a hop to a thread and back on every request."""
    allowed: Sequence[Role] = roles

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = connection.user
        if not isinstance(principal, Principal) or principal.role not in allowed:
            names = " or ".join(r.value for r in allowed)
            raise Forbidden("wrong_role", f"This needs a {names} token.")

    return guard
