"""Server settings, read once from the environment (``GATEHOUSE_*``).

Defaults work on a developer machine with Postgres, Redis and RabbitMQ on localhost (what
``./dev`` starts). Two secrets have no safe default: the JWT secret and the master key that
seals ticket keys at rest.
When they are not set and ``GATEHOUSE_ENV`` is not ``production``, the server creates them once
in a file only the current user can read (``dev-secrets.json`` in the user's config folder) so
that ``serve``, ``token`` and ``demo`` agree with each other; in production it refuses to start.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from shared.wire import MAX_SCAN_BATCH

MASTER_KEY_BYTES = 32
#: The least an HS256 key may have (RFC 7518: a key as long as the hash), outside development.
JWT_SECRET_MIN_BYTES = 32
#: Environments where a short JWT secret is let through (a developer's or a test's own).
LENIENT_ENVIRONMENTS = ("development", "test")
#: The role migration 0005 creates for the outbox relay.
RELAY_ROLE = "gatehouse_relay"


class SettingsError(ValueError):
    """A setting is missing or unusable; the message names the variable and what it needs."""


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    #: The application's connection: a non-superuser role that row-level security applies to.
    url: str = "postgresql+asyncpg://gatehouse_app@127.0.0.1:5432/gatehouse"
    #: The owner's connection, for migrations and creating tenants.
    admin_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/gatehouse"
    #: The role migrations grant the application's privileges to.
    app_role: str = "gatehouse_app"
    # Requests beyond the pool wait for a connection rather than open one: on a small machine
    # a connection opened and closed per burst costs more than the wait (measured: 64 clients
    # ran slower than 16 with a pool of 10 + 20 overflow).
    pool_size: int = 20
    max_overflow: int = 5
    #: The outbox relay's connection (``gatehouse-server worker``), as the role the migrations
    #: create for it: it reads every tenant's outbox and may only mark rows sent. Unset: ``url``
    #: with the user ``gatehouse_relay`` and no password.
    relay_url: str | None = field(default=None, repr=False)

    def relay_connection_url(self) -> str:
        """``relay_url``, or the application's URL with the relay role's name in it."""
        if self.relay_url:
            return self.relay_url
        from sqlalchemy.engine import make_url  # noqa: PLC0415 - only the worker needs it

        derived = make_url(self.url).set(username=RELAY_ROLE, password=None)
        return derived.render_as_string(hide_password=False)


#: Bounds of a device's access token's lifetime (seconds), and of its refresh token's idle time.
MIN_DEVICE_TOKEN_TTL = 60
MAX_DEVICE_TOKEN_TTL = 24 * 3600
MAX_DEVICE_REFRESH_IDLE = 90 * 24 * 3600


@dataclass(frozen=True, slots=True)
class AuthSettings:
    #: The current HS256 key: signs every token this server issues.
    jwt_secret: str = field(default="", repr=False)
    #: Keys rotated out, still accepted until the tokens they signed have expired
    #: (``GATEHOUSE_JWT_PREVIOUS_SECRETS``, comma-separated).
    previous_secrets: tuple[str, ...] = field(default=(), repr=False)
    #: JWKS URL for EdDSA/RS256 manager and service tokens from an API gateway (then ``issuer``
    #: and ``audience`` are required); device tokens stay ours, HS256 with the secret.
    jwks_url: str | None = None
    issuer: str | None = None
    audience: str | None = None
    token_ttl_seconds: int = 3600
    #: A device's access token (``GATEHOUSE_DEVICE_TOKEN_TTL``): short, so a copy of it is worth
    #: little; the device renews it on sync with its refresh token. A minute to a day.
    device_token_ttl_seconds: int = 3600
    #: A device's refresh token stops renewing after this long unused
    #: (``GATEHOUSE_DEVICE_REFRESH_IDLE_TTL``): longer than any festival without network.
    #: More than the access token's lifetime, at most 90 days.
    device_refresh_idle_seconds: int = 30 * 24 * 3600
    enrollment_ttl_seconds: int = 24 * 3600

    def __post_init__(self) -> None:
        if not MIN_DEVICE_TOKEN_TTL <= self.device_token_ttl_seconds <= MAX_DEVICE_TOKEN_TTL:
            raise SettingsError(
                f"GATEHOUSE_DEVICE_TOKEN_TTL must be from {MIN_DEVICE_TOKEN_TTL} to "
                f"{MAX_DEVICE_TOKEN_TTL} seconds, not {self.device_token_ttl_seconds}"
            )
        if not (
            self.device_token_ttl_seconds
            < self.device_refresh_idle_seconds
            <= MAX_DEVICE_REFRESH_IDLE
        ):
            raise SettingsError(
                "GATEHOUSE_DEVICE_REFRESH_IDLE_TTL must be more than GATEHOUSE_DEVICE_TOKEN_TTL "
                f"and at most {MAX_DEVICE_REFRESH_IDLE} seconds (90 days), not "
                f"{self.device_refresh_idle_seconds}"
            )
        if self.jwks_url and not (self.issuer and self.audience):
            raise SettingsError(
                "GATEHOUSE_JWT_ISSUER and GATEHOUSE_JWT_AUDIENCE must be set with "
                "GATEHOUSE_JWKS_URL: without them any token the gateway's keys signed, for any "
                "service, would be taken as one for this server"
            )

    @property
    def hs_keys(self) -> tuple[str, ...]:
        """Every HS256 key a token may be signed with: the current one first."""
        return (self.jwt_secret, *self.previous_secrets)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    #: The address scanners reach this server at (``GATEHOUSE_PUBLIC_URL``, e.g.
    #: ``https://gates.example.org``): the console's enrollment codes name it. Unset: the
    #: address the manager's browser used.
    public_url: str | None = None

    def __post_init__(self) -> None:
        url = self.public_url
        if url is not None and (
            not url.startswith(("https://", "http://"))
            or "?" in url
            or "#" in url
            or len(url.split("://", 1)[1].strip("/")) == 0
        ):
            raise SettingsError(
                "GATEHOUSE_PUBLIC_URL must be the server's address as scanners reach it, like "
                f"https://gates.example.org (no query), not {url!r}"
            )


@dataclass(frozen=True, slots=True)
class RedisSettings:
    #: Rate limits, the ticket cache and shared circuit breakers; check-in works without it.
    url: str = "redis://127.0.0.1:6379/0"
    #: Put before every key (empty in production; tests use one per run so runs never meet).
    key_prefix: str = ""
    #: Connect and command timeout: a hung Redis costs one request this much, once.
    timeout_seconds: float = 0.25
    #: How long ``GET /v1/tickets/{id}`` answers may be served from Redis; 0 turns it off.
    ticket_cache_ttl_seconds: int = 300


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """Requests per minute per caller (tenant and token subject), by role; 0 means no limit.

    A gate's scanner sees a person every few seconds and syncs in batches, so 600 a minute is
    far above any real gate and still stops a device stuck in a loop; services buy and transfer
    for many people at once, so they get more."""

    scanner: int = 600
    manager: int = 600
    service: int = 3000
    #: Scans a minute a device may upload (``POST /v1/sync/scans`` counts each batch by its
    #: size, not as one request); 0 for no limit, else at least one full batch
    #: (``shared.wire.MAX_SCAN_BATCH``), so a batch the scanner sends can always go through.
    scanner_scans: int = 6000
    #: Requests a minute per client address without a token (enrollment, chain metadata,
    #: ``/metrics``, the schema); 0 for no limit. ``/health`` and ``/ready`` are never limited.
    anonymous: int = 120
    #: Uploaded scans whose code does not read (``invalid_code``, ``unknown_key``, malformed)
    #: stored per device and minute; the rest are counted, not stored. 0 stores none.
    junk_per_minute: int = 100


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    #: Consecutive failures of a dependency (across all processes) that open its circuit.
    failure_threshold: int = 5
    #: How long an open circuit refuses calls before one trial call may go through. Less than
    #: the 30 s the shared state lives in Redis, or the trial would never be seen.
    open_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class AmqpSettings:
    #: RabbitMQ, for the outbox relay and the consumers; the API only reports whether it answers.
    url: str = field(default="amqp://guest:guest@127.0.0.1:5672/", repr=False)


LOG_FORMATS = ("json", "console")


@dataclass(frozen=True, slots=True)
class ObservabilitySettings:
    #: ``json`` (one object a line, for collectors) or ``console`` (for people at a terminal).
    log_format: str = "console"
    log_level: str = "INFO"
    #: One structured line per request (method, route, status, duration, tenant).
    access_log: bool = True
    #: How long ``/ready`` waits for each dependency before calling it down.
    ready_timeout_seconds: float = 2.0
    #: Where ``gatehouse-server worker`` serves its own ``/metrics`` (relay and consumer
    #: counters); port 0 (the default) serves none.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 0
    #: The bearer token ``/metrics`` on the API's port asks for (every tenant's figures are in
    #: it); unset, the API serves no ``/metrics`` (404).
    metrics_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class JobSettings:
    """The worker's scheduled jobs (docs/operations.md "Scheduled jobs"); all in seconds."""

    #: How often tickets of ended events are expired (``GATEHOUSE_JOBS_EXPIRE_EVERY``).
    expire_every: float = 300.0
    #: How long after an event's end its tickets are expired (``GATEHOUSE_EXPIRY_GRACE``):
    #: late exits and re-entries still work, a show that overran still scans.
    expiry_grace: float = 6 * 3600.0
    #: How often old rows are pruned (``GATEHOUSE_JOBS_PRUNE_EVERY``).
    prune_every: float = 3600.0
    #: How often keys due for rotation are looked for (``GATEHOUSE_JOBS_KEY_ROTATION_EVERY``).
    key_rotation_every: float = 86400.0
    #: An event's active ticket-code key older than this is due for rotation
    #: (``GATEHOUSE_KEY_MAX_AGE``; default 90 days).
    key_max_age: float = 90 * 86400.0
    #: How often a worker looks for a due job (``GATEHOUSE_JOBS_TICK``).
    tick: float = 30.0
    #: How long a run's lease lasts unless renewed (``GATEHOUSE_JOBS_LEASE``): a worker that
    #: dies mid-run holds its job at most this long. Renewed every third of it while running.
    lease: float = 300.0


@dataclass(frozen=True, slots=True)
class ChainSettings:
    """Solana: where the chain is and who the issuer is. No RPC URL means no chain: tickets are
    not minted and verdicts say they were not chain-verified (``chain_verified = null``)."""

    #: JSON-RPC endpoint (``GATEHOUSE_SOLANA_RPC_URL``); unset turns the chain off.
    rpc_url: str | None = None
    #: PubSub WebSocket (``GATEHOUSE_SOLANA_WS_URL``); unset: the RPC URL with ws:// or wss://.
    ws_url: str | None = None
    #: The issuer's keypair as solana-keygen JSON (64 numbers): pays for and signs mints, holds
    #: the freeze authority. Read from the file ``GATEHOUSE_SOLANA_ISSUER_KEYPAIR`` names (or the
    #: JSON text itself); never stored in the repository.
    issuer_keypair: str = field(default="", repr=False)
    #: Holds the NFTs of holders without a wallet (``GATEHOUSE_SOLANA_CUSTODY_KEYPAIR``, same
    #: forms); unset: the issuer is the custodian.
    custody_keypair: str = field(default="", repr=False)
    #: How settled a transaction must be before reads, the gate check and the listener trust it.
    commitment: str = "confirmed"
    #: The gate's budget for the ownership check; beyond it the verdict is not chain-verified.
    ownership_timeout_seconds: float = 0.25
    #: Timeout of the worker's and listener's RPC calls.
    rpc_timeout_seconds: float = 5.0
    #: How often pending transactions are polled for confirmations.
    poll_seconds: float = 1.0
    #: Submissions of one chain action before it is given up as failed.
    max_attempts: int = 5
    #: Shown in ``GET /v1/chain/config``: which cluster this is (``localnet``, ``devnet``, ...).
    cluster: str = "localnet"
    #: Token metadata: the symbol of every ticket NFT and the base of its metadata URI.
    symbol: str = "GATE"
    metadata_base_url: str = "http://127.0.0.1:8000/v1/chain/metadata"
    #: Resale fee in basis points, charged off-chain on API resales (see docs/chain.md).
    resale_fee_bps: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.rpc_url)

    def websocket_url(self) -> str:
        """``ws_url``, or the RPC URL with its scheme swapped (http→ws, https→wss)."""
        if self.ws_url:
            return self.ws_url
        if not self.rpc_url:
            raise SettingsError("GATEHOUSE_SOLANA_RPC_URL is not set: the chain is off")
        if self.rpc_url.startswith("https://"):
            return "wss://" + self.rpc_url.removeprefix("https://")
        return "ws://" + self.rpc_url.removeprefix("http://")


@dataclass(frozen=True, slots=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    breakers: BreakerSettings = field(default_factory=BreakerSettings)
    amqp: AmqpSettings = field(default_factory=AmqpSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    chain: ChainSettings = field(default_factory=ChainSettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    #: Seals the per-event ticket keys at rest (AES-256-GCM). 32 bytes.
    master_key: bytes = field(default=b"", repr=False)
    environment: str = "development"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings. Raises ``SettingsError`` with the variable's name when one is bad."""
        env = os.environ if env is None else env
        environment = env.get("GATEHOUSE_ENV", "development")
        jwt_secret = env.get("GATEHOUSE_JWT_SECRET", "")
        master_text = env.get("GATEHOUSE_MASTER_KEY", "")
        if not jwt_secret or not master_text:
            if environment == "production":
                raise SettingsError(
                    "GATEHOUSE_JWT_SECRET and GATEHOUSE_MASTER_KEY must be set in production "
                    "(make each with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
            dev = _development_secrets(env)
            jwt_secret = jwt_secret or dev["jwt_secret"]
            master_text = master_text or dev["master_key"]
        _check_jwt_secret("GATEHOUSE_JWT_SECRET", jwt_secret, environment)
        defaults_db, defaults_auth, defaults_http = (
            DatabaseSettings(),
            AuthSettings(),
            HttpSettings(),
        )
        return cls(
            database=DatabaseSettings(
                url=env.get("GATEHOUSE_DATABASE_URL", defaults_db.url),
                admin_url=env.get("GATEHOUSE_DATABASE_ADMIN_URL", defaults_db.admin_url),
                app_role=env.get("GATEHOUSE_DATABASE_APP_ROLE", defaults_db.app_role),
                pool_size=_int(env, "GATEHOUSE_DATABASE_POOL_SIZE", defaults_db.pool_size),
                max_overflow=_int(env, "GATEHOUSE_DATABASE_MAX_OVERFLOW", defaults_db.max_overflow),
                relay_url=env.get("GATEHOUSE_DATABASE_RELAY_URL") or None,
            ),
            auth=AuthSettings(
                jwt_secret=jwt_secret,
                previous_secrets=_previous_secrets(env, environment),
                jwks_url=env.get("GATEHOUSE_JWKS_URL") or None,
                issuer=env.get("GATEHOUSE_JWT_ISSUER") or None,
                audience=env.get("GATEHOUSE_JWT_AUDIENCE") or None,
                token_ttl_seconds=_int(env, "GATEHOUSE_TOKEN_TTL", defaults_auth.token_ttl_seconds),
                device_token_ttl_seconds=_int(
                    env, "GATEHOUSE_DEVICE_TOKEN_TTL", defaults_auth.device_token_ttl_seconds
                ),
                device_refresh_idle_seconds=_int(
                    env,
                    "GATEHOUSE_DEVICE_REFRESH_IDLE_TTL",
                    defaults_auth.device_refresh_idle_seconds,
                ),
                enrollment_ttl_seconds=_int(
                    env, "GATEHOUSE_ENROLLMENT_TTL", defaults_auth.enrollment_ttl_seconds
                ),
            ),
            http=HttpSettings(
                host=env.get("GATEHOUSE_HOST", defaults_http.host),
                port=_int(env, "GATEHOUSE_PORT", defaults_http.port),
                workers=_int(env, "GATEHOUSE_WORKERS", defaults_http.workers),
                public_url=(env.get("GATEHOUSE_PUBLIC_URL") or "").strip().rstrip("/") or None,
            ),
            redis=_redis(env),
            rate_limits=_rate_limits(env),
            breakers=_breakers(env),
            amqp=AmqpSettings(url=env.get("GATEHOUSE_AMQP_URL") or AmqpSettings().url),
            observability=_observability(env, environment),
            chain=_chain(env),
            jobs=_jobs(env),
            master_key=decode_master_key(master_text),
            environment=environment,
        )


def _check_jwt_secret(name: str, secret: str, environment: str) -> None:
    length = len(secret.encode())
    if length < JWT_SECRET_MIN_BYTES and environment not in LENIENT_ENVIRONMENTS:
        raise SettingsError(
            f"{name} must be at least {JWT_SECRET_MIN_BYTES} bytes, not {length} (make one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )


def _previous_secrets(env: Mapping[str, str], environment: str) -> tuple[str, ...]:
    name = "GATEHOUSE_JWT_PREVIOUS_SECRETS"
    found = tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())
    for secret in found:
        _check_jwt_secret(name, secret, environment)
    return found


def decode_master_key(text: str) -> bytes:
    """The master key from its URL-safe base64 text. Raises ``SettingsError`` if not 32 bytes."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as error:
        raise SettingsError("GATEHOUSE_MASTER_KEY is not base64") from error
    if len(raw) != MASTER_KEY_BYTES:
        raise SettingsError(
            f"GATEHOUSE_MASTER_KEY must be {MASTER_KEY_BYTES} bytes in base64, not {len(raw)}"
        )
    return raw


def new_master_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode().rstrip("=")


def _observability(env: Mapping[str, str], environment: str) -> ObservabilitySettings:
    defaults = ObservabilitySettings()
    # JSON for log collectors in production; readable lines on a developer's terminal.
    log_format = env.get("GATEHOUSE_LOG_FORMAT") or (
        "json" if environment == "production" else defaults.log_format
    )
    if log_format not in LOG_FORMATS:
        raise SettingsError(f"GATEHOUSE_LOG_FORMAT must be json or console, not {log_format!r}")
    level = (env.get("GATEHOUSE_LOG_LEVEL") or defaults.log_level).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingsError(
            f"GATEHOUSE_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {level!r}"
        )
    access = (env.get("GATEHOUSE_ACCESS_LOG") or "true").lower()
    if access not in ("true", "false", "1", "0", "yes", "no"):
        raise SettingsError(f"GATEHOUSE_ACCESS_LOG must be true or false, not {access!r}")
    timeout = env.get("GATEHOUSE_READY_TIMEOUT") or str(defaults.ready_timeout_seconds)
    try:
        ready_timeout = float(timeout)
    except ValueError as error:
        raise SettingsError(f"GATEHOUSE_READY_TIMEOUT must be seconds, not {timeout!r}") from error
    if not 0 < ready_timeout <= 30:
        raise SettingsError("GATEHOUSE_READY_TIMEOUT must be between 0 and 30 seconds")
    metrics_port = _int(env, "GATEHOUSE_WORKER_METRICS_PORT", defaults.worker_metrics_port)
    if not 0 <= metrics_port <= 65535:
        raise SettingsError("GATEHOUSE_WORKER_METRICS_PORT must be a port number, or 0 for none")
    return ObservabilitySettings(
        log_format=log_format,
        log_level=level,
        access_log=access in ("true", "1", "yes"),
        ready_timeout_seconds=ready_timeout,
        worker_metrics_host=env.get("GATEHOUSE_WORKER_METRICS_HOST")
        or defaults.worker_metrics_host,
        worker_metrics_port=metrics_port,
        metrics_token=_metrics_token(env),
    )


def _metrics_token(env: Mapping[str, str]) -> str | None:
    token = env.get("GATEHOUSE_METRICS_TOKEN") or None
    if token is not None and len(token.encode()) < JWT_SECRET_MIN_BYTES:
        raise SettingsError(
            f"GATEHOUSE_METRICS_TOKEN must be at least {JWT_SECRET_MIN_BYTES} bytes (make one "
            "with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


def _redis(env: Mapping[str, str]) -> RedisSettings:
    defaults = RedisSettings()
    return RedisSettings(
        url=env.get("GATEHOUSE_REDIS_URL") or defaults.url,
        key_prefix=env.get("GATEHOUSE_REDIS_KEY_PREFIX", defaults.key_prefix),
        timeout_seconds=_seconds(env, "GATEHOUSE_REDIS_TIMEOUT", defaults.timeout_seconds, 5.0),
        ticket_cache_ttl_seconds=_int(
            env, "GATEHOUSE_TICKET_CACHE_TTL", defaults.ticket_cache_ttl_seconds
        ),
    )


_COMMITMENT_NAMES = ("processed", "confirmed", "finalized")


def _chain(env: Mapping[str, str]) -> ChainSettings:
    defaults = ChainSettings()
    rpc_url = env.get("GATEHOUSE_SOLANA_RPC_URL") or None
    issuer = _keypair_text(env, "GATEHOUSE_SOLANA_ISSUER_KEYPAIR")
    if rpc_url and not issuer:
        raise SettingsError(
            "GATEHOUSE_SOLANA_ISSUER_KEYPAIR must name the issuer's keypair file (solana-keygen "
            "JSON) when GATEHOUSE_SOLANA_RPC_URL is set"
        )
    commitment = env.get("GATEHOUSE_SOLANA_COMMITMENT") or defaults.commitment
    if commitment not in _COMMITMENT_NAMES:
        raise SettingsError(
            f"GATEHOUSE_SOLANA_COMMITMENT must be processed, confirmed or finalized, "
            f"not {commitment!r}"
        )
    fee = _int(env, "GATEHOUSE_SOLANA_RESALE_FEE_BPS", defaults.resale_fee_bps)
    if not 0 <= fee <= 10_000:
        raise SettingsError("GATEHOUSE_SOLANA_RESALE_FEE_BPS must be between 0 and 10000")
    attempts = _int(env, "GATEHOUSE_SOLANA_MAX_ATTEMPTS", defaults.max_attempts)
    if attempts < 1:
        raise SettingsError("GATEHOUSE_SOLANA_MAX_ATTEMPTS must be at least 1")
    return ChainSettings(
        rpc_url=rpc_url,
        ws_url=env.get("GATEHOUSE_SOLANA_WS_URL") or None,
        issuer_keypair=issuer,
        custody_keypair=_keypair_text(env, "GATEHOUSE_SOLANA_CUSTODY_KEYPAIR"),
        commitment=commitment,
        ownership_timeout_seconds=_seconds(
            env, "GATEHOUSE_SOLANA_OWNERSHIP_TIMEOUT", defaults.ownership_timeout_seconds, 5.0
        ),
        rpc_timeout_seconds=_seconds(
            env, "GATEHOUSE_SOLANA_RPC_TIMEOUT", defaults.rpc_timeout_seconds, 60.0
        ),
        poll_seconds=_seconds(env, "GATEHOUSE_SOLANA_POLL_SECONDS", defaults.poll_seconds, 60.0),
        max_attempts=attempts,
        cluster=env.get("GATEHOUSE_SOLANA_CLUSTER") or defaults.cluster,
        symbol=env.get("GATEHOUSE_SOLANA_SYMBOL") or defaults.symbol,
        metadata_base_url=env.get("GATEHOUSE_SOLANA_METADATA_URL") or defaults.metadata_base_url,
        resale_fee_bps=fee,
    )


def _keypair_text(env: Mapping[str, str], name: str) -> str:
    """A keypair setting: the JSON text itself (starts with ``[``) or a file holding it."""
    value = (env.get(name) or "").strip()
    if not value or value.startswith("["):
        return value
    try:
        return Path(value).expanduser().read_text().strip()
    except OSError as error:
        raise SettingsError(f"{name}: cannot read the keypair file {value!r}: {error}") from error


def _rate_limits(env: Mapping[str, str]) -> RateLimitSettings:
    defaults = RateLimitSettings()
    scans = _int(env, "GATEHOUSE_RATE_LIMIT_SCANNER_SCANS", defaults.scanner_scans)
    if 0 < scans < MAX_SCAN_BATCH:
        raise SettingsError(
            f"GATEHOUSE_RATE_LIMIT_SCANNER_SCANS must be 0 (no limit) or at least "
            f"{MAX_SCAN_BATCH} (one full upload batch), not {scans}"
        )
    return RateLimitSettings(
        scanner=_int(env, "GATEHOUSE_RATE_LIMIT_SCANNER", defaults.scanner),
        manager=_int(env, "GATEHOUSE_RATE_LIMIT_MANAGER", defaults.manager),
        service=_int(env, "GATEHOUSE_RATE_LIMIT_SERVICE", defaults.service),
        scanner_scans=scans,
        anonymous=_int(env, "GATEHOUSE_RATE_LIMIT_ANONYMOUS", defaults.anonymous),
        junk_per_minute=_int(env, "GATEHOUSE_JUNK_SCANS_PER_MINUTE", defaults.junk_per_minute),
    )


def _breakers(env: Mapping[str, str]) -> BreakerSettings:
    defaults = BreakerSettings()
    return BreakerSettings(
        failure_threshold=_int(env, "GATEHOUSE_BREAKER_FAILURES", defaults.failure_threshold),
        open_seconds=_seconds(env, "GATEHOUSE_BREAKER_OPEN_SECONDS", defaults.open_seconds, 29.0),
    )


def _jobs(env: Mapping[str, str]) -> JobSettings:
    defaults = JobSettings()
    year = 366 * 86400.0
    values = {
        name: _seconds(env, variable, getattr(defaults, name), year)
        for name, variable in (
            ("expire_every", "GATEHOUSE_JOBS_EXPIRE_EVERY"),
            ("prune_every", "GATEHOUSE_JOBS_PRUNE_EVERY"),
            ("key_rotation_every", "GATEHOUSE_JOBS_KEY_ROTATION_EVERY"),
            ("key_max_age", "GATEHOUSE_KEY_MAX_AGE"),
            ("tick", "GATEHOUSE_JOBS_TICK"),
            ("lease", "GATEHOUSE_JOBS_LEASE"),
        )
    }
    # A grace of 0 is allowed: tickets expire as soon as their event ends.
    grace = (env.get("GATEHOUSE_EXPIRY_GRACE") or "").strip()
    if grace:
        try:
            values["expiry_grace"] = float(grace)
        except ValueError as error:
            raise SettingsError(f"GATEHOUSE_EXPIRY_GRACE must be seconds, not {grace!r}") from error
        if not 0 <= values["expiry_grace"] <= year:
            raise SettingsError(
                f"GATEHOUSE_EXPIRY_GRACE must be 0 or more and at most {year:g} seconds"
            )
    else:
        values["expiry_grace"] = defaults.expiry_grace
    return JobSettings(**values)


def _seconds(env: Mapping[str, str], name: str, default: float, most: float) -> float:
    value = env.get(name)
    if value is None or value == "":
        return default
    try:
        seconds = float(value)
    except ValueError as error:
        raise SettingsError(f"{name} must be seconds, not {value!r}") from error
    if not 0 < seconds <= most:
        raise SettingsError(f"{name} must be more than 0 and at most {most:g} seconds")
    return seconds


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as error:
        raise SettingsError(f"{name} must be a whole number, not {value!r}") from error


def _development_secrets(env: Mapping[str, str]) -> dict[str, str]:
    folder = Path(env.get("GATEHOUSE_CONFIG_DIR") or platformdirs.user_config_dir("gatehouse"))
    path = folder / "dev-secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    folder.mkdir(parents=True, exist_ok=True)
    created = {"jwt_secret": secrets.token_urlsafe(32), "master_key": new_master_key()}
    # Create with owner-only permissions from the start; never world-readable, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(created, handle)
    return created
