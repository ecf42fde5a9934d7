"""``gatehouse-server``: the sync server's command line.

Every command reads its settings from the environment (``GATEHOUSE_*``, see
``sync_server.settings``). A bad setting or an unusable database ends a command with one
sentence on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging.config
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import click
import jwt
import uvicorn
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)

from shared.clock import SystemClock
from shared.enrollment_link import EnrollmentLink
from sync_server.chain.client import ChainKeys
from sync_server.console.accounts import EmailTaken, create_user, new_password_link, normal_email
from sync_server.db.engine import Database
from sync_server.db.migrate import alembic_config, schema_problem
from sync_server.db.migrate import migrate as run_migrations
from sync_server.demo import seed_demo
from sync_server.domain.chain.minting import reconcile_tenant, retry_ticket
from sync_server.domain.events.retirement import retire_key
from sync_server.domain.events.schemas import KeyRetirement
from sync_server.domain.keys.services import KeyStore
from sync_server.domain.tenants.services import create_tenant, tenant_name
from sync_server.domain.tickets.services import expire_ended_events
from sync_server.domain.tokens.services import revoke_token
from sync_server.http.auth import MAX_TOKEN_TTL, Role, mint_token
from sync_server.http.problems import Problem
from sync_server.observability.logs import logging_config
from sync_server.observability.metrics import (
    cleanup_multiprocess_dir,
    prepare_multiprocess_dir,
    serve_worker_metrics,
)
from sync_server.observability.redaction import redact
from sync_server.redis.ticket_cache import invalidating
from sync_server.settings import Settings, SettingsError
from sync_server.worker import run_worker

APP_FACTORY = "sync_server.app:create_app"
ADMIN_URL = "GATEHOUSE_DATABASE_ADMIN_URL"
APP_URL = "GATEHOUSE_DATABASE_URL"
#: After SIGTERM, how long requests in flight may take before their connections are closed;
#: below the 30 s that systemd and docker wait before SIGKILL (packaging/).
GRACEFUL_SHUTDOWN_S = 20


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as error:
        raise click.ClickException(f"{error}.") from error


def _where(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "the configured URL"


def _why(error: BaseException) -> str:
    if isinstance(error, DBAPIError) and error.orig is not None:
        error = error.orig
    lines = str(error).strip().splitlines()
    return redact(lines[0] if lines else type(error).__name__).rstrip(".")


@contextmanager
def _database(url: str, variable: str) -> Iterator[None]:
    """Turn a database that cannot be reached or used into a one-sentence error."""
    try:
        yield
    except ArgumentError as error:  # the URL itself; not echoed, it may hold a password
        raise click.ClickException(
            f"{variable} is not a database URL like postgresql+asyncpg://user@host:5432/name."
        ) from error
    except ImportError as error:  # a driver this install lacks, e.g. postgresql:// (psycopg)
        raise click.ClickException(
            f"{variable} needs the database driver {error.name!r}, which is not installed; "
            "use postgresql+asyncpg://."
        ) from error
    except (OSError, SQLAlchemyError) as error:
        raise click.ClickException(
            f"Cannot use the database at {_where(url)} ({variable}): {_why(error)}."
        ) from error


def _tenant_named(settings: Settings, tenant_id: uuid.UUID) -> str:
    """The tenant's name; a clear error when there is no such tenant."""
    with _database(settings.database.admin_url, ADMIN_URL):
        name = asyncio.run(tenant_name(settings.database.admin_url, tenant_id))
    if name is None:
        raise click.ClickException(f"There is no tenant with the id {tenant_id}.")
    return name


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gatehouse")
def main() -> None:
    """Gatehouse sync server: tickets, check-in and offline sync for the gate scanners."""


@main.command()
def migrate() -> None:
    """Create the database if it is missing and bring its schema to the newest revision.

    Uses GATEHOUSE_DATABASE_ADMIN_URL (the owner's connection). Safe to run again.
    """
    settings = _settings()
    url, role = settings.database.admin_url, settings.database.app_role
    with _database(url, ADMIN_URL):
        try:
            created = run_migrations(url, role)
        except (CommandError, ValueError) as error:
            raise click.ClickException(f"The migrations could not run: {_why(error)}.") from error
    name = make_url(url).database
    click.echo(f"Created database {name}." if created else f"Database {name} exists.")
    head = ScriptDirectory.from_config(alembic_config(url, role)).get_current_head()
    click.echo(f"The schema is at head (revision {head}).")


@main.command()
@click.option("--host", help="Interface to listen on.  [default: GATEHOUSE_HOST or 127.0.0.1]")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="Port to listen on.  [default: GATEHOUSE_PORT or 8000]",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Worker processes.  [default: GATEHOUSE_WORKERS or 1]",
)
@click.option(
    "--access-log/--no-access-log",
    default=None,
    help="One log line per request.  [default: GATEHOUSE_ACCESS_LOG or on]",
)
def serve(host: str | None, port: int | None, workers: int | None, access_log: bool | None) -> None:
    """Run the HTTP API with uvicorn.

    Trusts X-Forwarded-* headers from the addresses in FORWARDED_ALLOW_IPS (uvicorn's setting,
    127.0.0.1 by default), for running behind a reverse proxy. Logs go to stderr as
    GATEHOUSE_LOG_FORMAT says (json or console). On SIGTERM it stops accepting connections and
    gives requests in flight up to 20 s to finish.
    """
    if access_log is not None:
        # The workers read their settings from the environment they inherit.
        os.environ["GATEHOUSE_ACCESS_LOG"] = "true" if access_log else "false"
    settings = _settings()  # fail here, with a sentence, rather than in every worker
    with _database(settings.database.url, APP_URL):
        problem = asyncio.run(_schema_problem(settings))
    if problem is not None:
        raise click.ClickException(problem)
    http, observability = settings.http, settings.observability
    worker_count = workers or http.workers
    # Before any worker starts: they find the metrics directory in their environment.
    metrics_dir = prepare_multiprocess_dir(worker_count)
    try:
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=host or http.host,
            port=port or http.port,
            workers=worker_count,
            proxy_headers=True,
            # Ours: uvicorn applies it in every worker; the app writes its own access log.
            log_config=logging_config(observability.log_format, observability.log_level),
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
    finally:
        cleanup_multiprocess_dir(metrics_dir)


async def _schema_problem(settings: Settings) -> str | None:
    """Why ``serve`` must not start against this database (its schema is behind), or None.
    A database that cannot be reached now does not stop it: ``/ready`` says so until it can."""
    database = Database(settings.database)
    try:
        async with database.engine.connect() as connection:
            return await schema_problem(connection)
    except (OSError, OperationalError, InterfaceError):
        return None
    finally:
        await database.close()


@main.command()
def worker() -> None:
    """Relay ticket events from the outbox to RabbitMQ and run our event consumers, until
    SIGTERM or SIGINT; then finish the work in hand and exit.

    Uses GATEHOUSE_AMQP_URL, GATEHOUSE_DATABASE_RELAY_URL (default: GATEHOUSE_DATABASE_URL as
    the gatehouse_relay role) and GATEHOUSE_DATABASE_URL. Run several for availability. While
    RabbitMQ or Postgres is away the worker waits and retries; events wait in the outbox.
    """
    settings = _settings()
    observability = settings.observability
    logging.config.dictConfig(logging_config(observability.log_format, observability.log_level))
    if observability.worker_metrics_port:
        host, port = observability.worker_metrics_host, observability.worker_metrics_port
        try:
            serve_worker_metrics(port, host)
        except OSError as error:
            raise click.ClickException(
                f"Cannot serve the worker's metrics on {host}:{port} "
                f"(GATEHOUSE_WORKER_METRICS_PORT): {error.strerror or error}."
            ) from error
    asyncio.run(run_worker(settings))


@main.group()
def tenant() -> None:
    """Tenants: the organisers whose data the server keeps apart."""


@tenant.command("create")
@click.argument("name")
def tenant_create(name: str) -> None:
    """Create a tenant called NAME and print its id."""
    if not name.strip():
        raise click.ClickException("A tenant needs a name.")
    settings = _settings()
    with _database(settings.database.admin_url, ADMIN_URL):
        tenant_id = asyncio.run(create_tenant(settings.database.admin_url, name))
    click.echo(str(tenant_id))


@main.group()
def user() -> None:
    """Manager accounts for the console (/console, docs/console.md)."""


def _console_url(settings: Settings, url: str | None) -> str:
    """Where managers reach the console: ``--url``, else ``GATEHOUSE_PUBLIC_URL``, else the
    address the server listens on."""
    fallback = settings.http.public_url or f"http://{settings.http.host}:{settings.http.port}"
    return (url or fallback).rstrip("/")


def _password_link(base: str, token: str) -> str:
    return f"{base}/console/set-password?token={token}"


@user.command("create")
@click.option("--tenant", "tenant_id", type=click.UUID, required=True, help="The tenant's id.")
@click.option("--email", required=True, help="The manager's email: what they sign in with.")
@click.option(
    "--url",
    help="Where managers reach the server.  [default: GATEHOUSE_PUBLIC_URL, else "
    "http://GATEHOUSE_HOST:GATEHOUSE_PORT]",
)
def user_create(tenant_id: uuid.UUID, email: str, url: str | None) -> None:
    """Create a manager account and print a one-time link that sets its password.

    The link works once, for 24 hours; the database keeps only its hash. Hand it to the
    manager over a channel you trust; `gatehouse-server user link` makes a new one.
    """
    settings = _settings()
    name = _tenant_named(settings, tenant_id)

    async def create() -> str:
        database = Database(settings.database)
        try:
            return (await create_user(database, tenant_id, email, SystemClock().now()))[1]
        finally:
            await database.close()

    with _database(settings.database.url, APP_URL):
        try:
            token = asyncio.run(create())
        except ValueError as error:
            raise click.ClickException(f"{error}.") from error
        except EmailTaken as error:
            raise click.ClickException(f"An account with the email {error} exists.") from error
    click.echo(f"Created the manager {normal_email(email)} of {name}.")
    click.echo("One-time link to set the password (valid 24 hours):")
    click.echo(_password_link(_console_url(settings, url), token))


@user.command("link")
@click.option("--email", required=True, help="The manager's email.")
@click.option(
    "--url",
    help="Where managers reach the server.  [default: GATEHOUSE_PUBLIC_URL, else "
    "http://GATEHOUSE_HOST:GATEHOUSE_PORT]",
)
def user_link(email: str, url: str | None) -> None:
    """Print a new one-time link that sets the manager's password (a forgotten password; the
    earlier link stops working)."""
    settings = _settings()

    async def renew() -> str | None:
        database = Database(settings.database)
        try:
            return await new_password_link(database, email, SystemClock().now())
        finally:
            await database.close()

    with _database(settings.database.url, APP_URL):
        token = asyncio.run(renew())
    if token is None:
        raise click.ClickException(f"There is no manager account with the email {email!r}.")
    click.echo(_password_link(_console_url(settings, url), token))


@main.group(invoke_without_command=True)
@click.option("--tenant", "tenant_id", type=click.UUID, help="The tenant's id.  [required]")
@click.option(
    "--role", type=click.Choice([r.value for r in Role]), help="What it may do.  [required]"
)
@click.option("--subject", help="Who the token is for.  [default: cli-ROLE]")
@click.option(
    "--ttl",
    type=click.IntRange(min=1),
    help="Lifetime in seconds, at most 12 hours for a manager and 30 days for a service.  "
    "[default: GATEHOUSE_TOKEN_TTL or 3600]",
)
@click.pass_context
def token(
    context: click.Context,
    tenant_id: uuid.UUID | None,
    role: str | None,
    subject: str | None,
    ttl: int | None,
) -> None:
    """Print a bearer token for a manager or a service of a tenant (--tenant, --role), or
    revoke one (token revoke).

    Scanner tokens come only from enrolling a device.
    """
    if context.invoked_subcommand is not None:
        return
    if tenant_id is None or role is None:
        raise click.UsageError("Name the token's --tenant and --role.")
    if Role(role) is Role.SCANNER:
        raise click.ClickException(
            "Scanner tokens come only from enrolling a device: create a code with "
            "POST /v1/devices/enrollments and redeem it on the scanner."
        )
    settings = _settings()
    auth = settings.auth
    if auth.jwks_url:
        raise click.ClickException(
            "This server accepts manager and service tokens only from the keys at "
            "GATEHOUSE_JWKS_URL, so it cannot mint them itself; ask that token issuer instead."
        )
    ttl_seconds = ttl or auth.token_ttl_seconds
    longest = MAX_TOKEN_TTL[Role(role)]
    if ttl_seconds > longest.total_seconds():
        raise click.ClickException(
            f"A {role} token may live at most {int(longest.total_seconds())} seconds, not "
            f"{ttl_seconds}: a leaked token must not outlive the day (manager) or the month "
            "(service); make a new one when it expires."
        )
    name = _tenant_named(settings, tenant_id)
    minted = mint_token(
        auth.jwt_secret,
        tenant_id=tenant_id,
        role=Role(role),
        subject=subject or f"cli-{role}",
        ttl_seconds=ttl_seconds,
        issuer=auth.issuer,
        audience=auth.audience,
    )
    click.echo(minted)
    jti = jwt.decode(minted, options={"verify_signature": False})["jti"]
    click.echo(
        f"{role} token for {name!r}, valid for {ttl_seconds} s; revoke it with: "
        f"gatehouse-server token revoke --tenant {tenant_id} {jti}",
        err=True,
    )


@token.command("revoke")
@click.option("--tenant", "tenant_id", type=click.UUID, required=True, help="The tenant's id.")
@click.option(
    "--expires-at",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]),
    help="When the token expires (its exp, UTC unless an offset is given); the revocation is "
    "kept until then.  [default: 30 days from now]",
)
@click.argument("jti")
def token_revoke(tenant_id: uuid.UUID, expires_at: datetime | None, jti: str) -> None:
    """Revoke the token whose id is JTI (its jti claim, printed when it was made): every
    instance of the server refuses it from the next request on."""
    if not jti.strip() or len(jti) > 200:
        raise click.ClickException("JTI is a token's id: 1 to 200 characters.")
    settings = _settings()
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)

    async def run() -> datetime:
        database = Database(settings.database)
        try:
            async with database.tenant(tenant_id) as session:
                revoked = await revoke_token(
                    session,
                    tenant_id,
                    jti.strip(),
                    expires_at=expires_at,
                    actor="cli",
                    now=datetime.now(UTC),
                )
                return revoked.expires_at
        finally:
            await database.close()

    _tenant_named(settings, tenant_id)
    with _database(settings.database.url, APP_URL):
        until = asyncio.run(run())
    click.echo(f"Revoked token {jti.strip()}; the revocation is kept until {until.isoformat()}.")


@main.command()
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds after an event's end before its tickets expire; default "
    "GATEHOUSE_EXPIRY_GRACE (what the worker's expire job uses; 6 hours unless set).",
)
def expire(grace: float | None) -> None:
    """Expire the tickets of events that have ended (more than the grace period ago), in every
    tenant, and say how many. The worker does this by itself (its ``expire`` job); this is for
    running it by hand."""
    settings = _settings()
    after = timedelta(seconds=settings.jobs.expiry_grace if grace is None else grace)

    async def run() -> int:
        database = Database(settings.database)
        try:
            # Expired tickets must leave the API's ticket cache too.
            async with invalidating(database, settings.redis):
                return await expire_ended_events(database, datetime.now(UTC), grace=after)
        finally:
            await database.close()

    with _database(settings.database.url, APP_URL):
        count = asyncio.run(run())
    click.echo(f"Expired {count} ticket{'' if count == 1 else 's'}.")


@main.group()
def chain() -> None:
    """Tickets on Solana (docs/chain.md)."""


@chain.command("reconcile")
@click.option("--tenant", "tenant_id", type=click.UUID, required=True, help="The tenant's id.")
@click.argument("ticket_ids", nargs=-1, type=click.UUID)
def chain_reconcile(tenant_id: uuid.UUID, ticket_ids: tuple[uuid.UUID, ...]) -> None:
    """Queue the chain actions tickets are missing: the named TICKET_IDS, or every live ticket
    of the tenant without an NFT or with a failed action. The worker carries them out."""
    settings = _settings()
    if not settings.chain.enabled:
        raise click.ClickException("The chain is off: set GATEHOUSE_SOLANA_RPC_URL first.")
    try:
        keys = ChainKeys.from_settings(settings.chain)
    except SettingsError as error:
        raise click.ClickException(f"{error}.") from error

    async def run() -> int:
        database = Database(settings.database)
        now = datetime.now(UTC)
        try:
            async with invalidating(database, settings.redis):
                if not ticket_ids:
                    return await reconcile_tenant(database, tenant_id, keys, now)
                queued = 0
                for ticket_id in ticket_ids:
                    if await retry_ticket(database, tenant_id, ticket_id, keys, now) is not None:
                        queued += 1
                return queued
        except LookupError as error:
            raise click.ClickException(f"{error}.") from error
        finally:
            await database.close()

    with _database(settings.database.url, APP_URL):
        count = asyncio.run(run())
    click.echo(f"Queued {count} chain action{'' if count == 1 else 's'}; the worker sends them.")


@main.group()
def keys() -> None:
    """Ticket-code keys of an event (docs/security.md: after a lost scanner)."""


@keys.command("retire")
@click.option("--tenant", "tenant_id", type=click.UUID, required=True, help="The tenant's id.")
@click.option("--event", "event_id", type=click.UUID, required=True, help="The event's id.")
@click.argument("key_id", type=click.IntRange(0, 2**32 - 1))
def keys_retire(tenant_id: uuid.UUID, event_id: uuid.UUID, key_id: int) -> None:
    """Retire the event's key KEY_ID (signing or encryption; an active one is replaced first):
    codes made with it are refused, scanners drop it at their next sync, and every live ticket
    of the event gets a new code and a ticket.reissued event. Safe to run again: it finishes
    what an interrupted run left."""
    settings = _settings()

    async def run() -> KeyRetirement:
        database = Database(settings.database)
        try:
            # The tickets given new codes must leave the API's ticket cache too.
            async with invalidating(database, settings.redis):
                return await retire_key(
                    lambda: database.tenant(tenant_id),
                    KeyStore(settings.master_key),
                    SystemClock(),
                    tenant_id=tenant_id,
                    event_id=event_id,
                    key_id=key_id,
                    actor="cli",
                )
        except Problem as error:
            raise click.ClickException(error.detail) from error
        finally:
            await database.close()

    _tenant_named(settings, tenant_id)
    with _database(settings.database.url, APP_URL):
        done = asyncio.run(run())
    count = done.tickets_reissued
    click.echo(
        f"Retired key {key_id} of event {event_id} (at {done.retired_at.isoformat()}); new codes "
        f"are issued with signing key {done.signing_key_id} and encryption key "
        f"{done.encryption_key_id}. {count} ticket{'' if count == 1 else 's'} got a new code."
    )


@main.command()
def demo() -> None:
    """Seed a demo tenant: an event tonight, tickets (one transferred, one revoked), a token."""
    settings = _settings()
    with _database(settings.database.admin_url, ADMIN_URL):
        seed = asyncio.run(seed_demo(settings, datetime.now(UTC)))
    click.echo(f"Demo tenant {seed.tenant_id}, event {seed.event_id}.")
    click.echo("\nManager token (valid 12 h):")
    click.echo(seed.manager_token)
    click.echo("\nTicket codes:")
    for ticket in seed.tickets:
        click.echo(f"  {ticket.label}\n    {ticket.code}")
    click.echo("\nScanner enrollment codes (one device each, valid 12 h):")
    server = f"http://{settings.http.host}:{settings.http.port}"
    for gate, code in seed.enrollment_codes.items():
        click.echo(f"  {gate}: gatehouse-scanner enroll --server {server} --code {code}")
        # The same as an enrollment QR code's text (the app's "Scan an enrollment QR").
        click.echo(f"    QR text: {EnrollmentLink(server, code).text()}")
    click.echo(
        "\nTry: curl -s -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' "
        f'-d \'{{"code": "<a code>"}}\' http://{settings.http.host}:{settings.http.port}'
        "/v1/codes/check"
    )
