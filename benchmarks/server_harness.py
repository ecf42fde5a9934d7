"""What the server benchmarks share: a throw-away database, a real server process, seeding in
bulk, and a tiny HTTP client for set-up calls.

* ``fresh_database()`` creates a database with a random name through the migrations (as the
  tests do), and drops it afterwards whatever happens.
* ``Server`` runs ``gatehouse-server serve --workers N`` (or any other ASGI command) on a free
  port of 127.0.0.1 with fresh secrets, waits for ``/health`` and always stops it. It can be
  stopped and started again on the same port with the same environment (the scanner's
  integration tests restart it under a running sync engine: tests/scanner_app/live_server.py).
* ``Seeder`` makes a tenant, an event, its ticket type and enrolled devices through the API,
  then inserts tickets by the ten thousand with COPY as the owner and mints their codes locally
  with the event's own keys, on every core.

Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import multiprocessing
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from shared.ids import new_id
from shared.keys import EncryptionKey, IssuerKeyRing, SigningKey
from shared.ticket_code import issue_code
from sync_server.db.engine import Database
from sync_server.db.migrate import migrate
from sync_server.domain.keys.services import KeyStore
from sync_server.domain.tenants.services import create_tenant
from sync_server.http.auth import Role, mint_token
from sync_server.settings import DatabaseSettings

PG_HOST = os.environ.get("GATEHOUSE_BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")
APP_ROLE = "gatehouse_app"
HOST = "127.0.0.1"
VENV_BIN = Path(sys.executable).parent
SERVER_WORKERS = 2
HEALTH_TIMEOUT_S = 60.0


# --- database ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BenchDatabase:
    name: str
    admin_url: str  # SQLAlchemy URL of the owner (postgres)
    app_url: str  # SQLAlchemy URL of the application role (row-level security applies)

    @property
    def owner_dsn(self) -> str:
        """The owner's URL for asyncpg itself."""
        return self.admin_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    def settings(self, pool_size: int = 5) -> DatabaseSettings:
        return DatabaseSettings(
            url=self.app_url, admin_url=self.admin_url, app_role=APP_ROLE, pool_size=pool_size
        )


async def _drop_database(name: str) -> None:
    engine = create_async_engine(f"{PG_HOST}/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


@contextmanager
def fresh_database(label: str, prefix: str = "gatehouse_bench") -> Iterator[BenchDatabase]:
    """A migrated database named ``PREFIX_LABEL_<random>``, dropped on the way out."""
    name = f"{prefix}_{label}_{secrets.token_hex(4)}"
    admin_url = f"{PG_HOST}/{name}"
    app_url = make_url(admin_url).set(username=APP_ROLE).render_as_string(hide_password=False)
    try:
        migrate(admin_url, APP_ROLE)
        yield BenchDatabase(name=name, admin_url=admin_url, app_url=app_url)
    finally:
        asyncio.run(_drop_database(name))


# --- secrets and the server process -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Secrets:
    """Fresh per run: nothing from the developer's own secrets file is used or touched."""

    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    master_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @property
    def master_key_text(self) -> str:
        return base64.urlsafe_b64encode(self.master_key).decode().rstrip("=")


def server_env(db: BenchDatabase, keys: Secrets, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
    env.update(
        GATEHOUSE_ENV="benchmark",
        GATEHOUSE_DATABASE_URL=db.app_url,
        GATEHOUSE_DATABASE_ADMIN_URL=db.admin_url,
        GATEHOUSE_DATABASE_APP_ROLE=APP_ROLE,
        GATEHOUSE_JWT_SECRET=keys.jwt_secret,
        GATEHOUSE_MASTER_KEY=keys.master_key_text,
        GATEHOUSE_CONFIG_DIR=tempfile.gettempdir(),  # never used: both secrets are set
        # One scanner token carries a whole benchmark's load: keep the limiter (its Redis
        # round trip is part of what is measured) but out of the way.
        GATEHOUSE_RATE_LIMIT_SCANNER="100000000",
        GATEHOUSE_RATE_LIMIT_MANAGER="100000000",
        GATEHOUSE_RATE_LIMIT_SERVICE="100000000",
        GATEHOUSE_RATE_LIMIT_SCANNER_SCANS="100000000",
        GATEHOUSE_RATE_LIMIT_ANONYMOUS="0",
    )
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _ephemeral_range() -> range:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)  # Linux's default


def restartable_port(attempts: int = 200) -> int:
    """A free port of 127.0.0.1 outside the kernel's ephemeral range, for a server that will be
    stopped and started again on it: while it is down, no outgoing connection of this machine
    (to Postgres, say) can be given the port and make the restart fail."""
    ephemeral = _ephemeral_range()
    candidates = [p for p in range(20_000, 32_768) if p not in ephemeral]
    for port in random.SystemRandom().sample(candidates, min(attempts, len(candidates))):
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    return free_port()


def gatehouse_serve_command(port: int, workers: int = SERVER_WORKERS) -> list[str]:
    return [
        str(VENV_BIN / "gatehouse-server"),
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def uvicorn_command(app_factory: str, port: int, workers: int = SERVER_WORKERS) -> list[str]:
    """uvicorn with the settings ``gatehouse-server serve`` uses (factory, proxy headers, no
    access log; uvloop and httptools by default)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app_factory,
        "--factory",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--proxy-headers",
        "--no-access-log",
    ]


# Run in front of the server command on Linux: the server gets SIGTERM when the process that
# started it dies, even by SIGKILL (a test run killed by a timeout), so none outlives its run.
# Then exec, so the server keeps this pid (and its process group).
_ORPHAN_GUARD = """\
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    os._exit(1)  # the parent died before the guard was set
os.execv(sys.argv[2], sys.argv[2:])
"""


def _guarded(command: Sequence[str]) -> list[str]:
    # The death signal follows the *thread* that forks: only the main thread lives as long as
    # the process, so a server started from another thread goes without the guard.
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return list(command)
    return [sys.executable, "-c", _ORPHAN_GUARD, str(os.getpid()), *command]


class Server:
    """A server subprocess in its own process group, with its output in a log file.

    As a context manager it starts once and cleans up on the way out. ``stop()`` and
    ``start()`` may also alternate: a restart keeps the port, the environment (so the same
    secrets) and the log. ``command[0]`` must be an absolute path.
    """

    def __init__(
        self,
        command: Sequence[str],
        port: int,
        env: Mapping[str, str],
        *,
        stop_timeout_s: float = 15.0,
    ) -> None:
        self.command = list(command)
        self.port = port
        self.env = dict(env)
        self.base = f"http://{HOST}:{port}"
        self.stop_timeout_s = stop_timeout_s
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in close()
            mode="ab", prefix="gatehouse-server-", suffix=".log", delete=False
        )
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server and wait until it answers ``/health``. Raises ``RuntimeError``
        (with the log's tail) when it exits or stays silent, e.g. because the port is taken."""
        if self.running:
            raise RuntimeError(f"the server on port {self.port} is already running")
        if self._log.tell():
            self._log.write(b"\n--- started again ---\n")
            self._log.flush()
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and console script
            _guarded(self.command),
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited at start-up:\n{self.log_tail()}")
            try:
                status, _ = request(self.port, "GET", "/health", timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the server did not answer /health in {HEALTH_TIMEOUT_S:.0f} s")

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (children of the supervisor)."""
        if self.process is None:
            return []
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def log_tail(self, lines: int = 30) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            text_ = Path(self._log.name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text_.splitlines()[-lines:])

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the server: SIGTERM, then SIGKILL to its whole process group after
        ``timeout_s`` (``stop_timeout_s`` by default). Returns once the server process has
        exited: with one worker (no supervisor), nothing listens on the port any more. Does
        nothing when it is not running."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            # uvicorn stops its workers on SIGTERM (and waits for requests in flight); the
            # group kill is the backstop for a hung shutdown or workers left behind (the group
            # is this server's own, made at start).
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout_s if timeout_s is None else timeout_s)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL to its process group, no shutdown), as a crash
        would. Does nothing when it is not running."""
        process, self.process = self.process, None
        if process is not None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def close(self) -> None:
        """Stop the server and delete its log."""
        self.stop()
        if not self._log.closed:
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)


# --- a small HTTP client for set-up calls -----------------------------------------------------


def request(
    port: int,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def call_json(port: int, method: str, path: str, payload: object, token: str | None = None) -> Any:
    """A JSON API call that must succeed (2xx); returns the decoded body."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    status, body = request(port, method, path, body=json.dumps(payload).encode(), headers=headers)
    if not 200 <= status < 300:
        raise RuntimeError(f"{method} {path} answered {status}: {body[:500]!r}")
    return json.loads(body) if body else None


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- seeding ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventHandle:
    tenant_id: uuid.UUID
    event_id: uuid.UUID
    ticket_type_id: uuid.UUID
    ticket_type_name: str


@dataclass(frozen=True, slots=True)
class DeviceHandle:
    device_id: uuid.UUID
    token: str = field(repr=False)
    gate: str = "A"


@dataclass(slots=True)
class Seeder:
    """Seeds one tenant of a benchmark database (the server must be running for the API calls;
    tickets and codes need only the database)."""

    db: BenchDatabase
    keys: Secrets
    tenant_id: uuid.UUID | None = None

    def create_tenant(self, name: str = "Benchmark venue") -> uuid.UUID:
        self.tenant_id = asyncio.run(create_tenant(self.db.admin_url, name))
        return self.tenant_id

    def manager_token(self) -> str:
        assert self.tenant_id is not None
        return mint_token(
            self.keys.jwt_secret,
            tenant_id=self.tenant_id,
            role=Role.MANAGER,
            subject="benchmark",
            ttl_seconds=6 * 3600,
        )

    def create_event(self, port: int, name: str, capacity: int = 5_000_000) -> EventHandle:
        """An event running now (opened an hour ago, ends tomorrow) with one ticket type."""
        assert self.tenant_id is not None
        now = datetime.now(UTC)
        token = self.manager_token()
        event = call_json(
            port,
            "POST",
            "/v1/events",
            {
                "name": name,
                "venue": "Bench Hall",
                "starts_at": (now - timedelta(hours=1)).isoformat(),
                "ends_at": (now + timedelta(days=1)).isoformat(),
                "admission_opens_at": (now - timedelta(hours=2)).isoformat(),
            },
            token,
        )
        ticket_type = call_json(
            port,
            "POST",
            f"/v1/events/{event['id']}/ticket-types",
            {"name": "General admission", "capacity": capacity},
            token,
        )
        return EventHandle(
            tenant_id=self.tenant_id,
            event_id=uuid.UUID(event["id"]),
            ticket_type_id=uuid.UUID(ticket_type["id"]),
            ticket_type_name=ticket_type["name"],
        )

    def enroll_device(self, port: int, event: EventHandle, gate: str, name: str) -> DeviceHandle:
        """Enroll a scanner for ``gate`` of ``event``."""
        enrollment = call_json(
            port,
            "POST",
            "/v1/devices/enrollments",
            {"event_id": str(event.event_id), "gate": gate},
            self.manager_token(),
        )
        enrolled = call_json(
            port, "POST", "/v1/devices/enroll", {"code": enrollment["code"], "device_name": name}
        )
        return DeviceHandle(
            device_id=uuid.UUID(enrolled["device_id"]), token=enrolled["device_token"], gate=gate
        )

    def insert_tickets(self, event: EventHandle, count: int) -> list[uuid.UUID]:
        """``count`` active tickets of ``event`` written with COPY as the owner."""
        return asyncio.run(insert_tickets(self.db.owner_dsn, event, count))

    def mint_codes(self, event: EventHandle, ticket_ids: Sequence[uuid.UUID]) -> list[str]:
        """The codes of ``ticket_ids`` (secret version 0), signed with the event's own keys."""
        ring = asyncio.run(issuer_ring(self.db, self.keys, event))
        return mint_codes(ring, event.event_id, ticket_ids)

    def sequence_changes(self) -> int:
        """Number every pending change for the feed now (as the sequencer would have long
        before a scanner asks for tickets sold days ago). Returns how many were numbered."""
        return asyncio.run(sequence_all_changes(self.db.owner_dsn))


# Holder names drawn from these (seeded), so feed pages compress like real ones rather than
# like "Holder 1", "Holder 2"...
_FIRST_NAMES = (
    "Ada Amira Ben Camille Chen Dara Elif Emil Farah Finn Grace Hana Ines Ivan Jonas Kai Lena "
    "Leila Lucas Maya Mateo Nia Noah Olga Omar Priya Quinn Rosa Sami Sofia Tariq Uma Vera Wei "
    "Yara Yusuf Zoe Aino Bjorn Chidi"
)
_LAST_NAMES = (
    "Abebe Andersen Bauer Costa Dubois Eriksen Fischer Garcia Haddad Ito Jensen Kowalski Kim "
    "Larsen Moreau Nakamura Novak Okafor Oliveira Petrov Quispe Rossi Santos Schmidt Silva "
    "Tanaka Torres Umarov Varga Weber Xu Yamamoto Yilmaz Zhang Nguyen Murphy Singh Haas Lund"
)


def holder_names(count: int, seed: int = 2026) -> list[str]:
    rng = random.Random(seed)
    first, last = _FIRST_NAMES.split(), _LAST_NAMES.split()
    return [f"{rng.choice(first)} {rng.choice(last)}" for _ in range(count)]


TICKET_COLUMNS = (
    "id",
    "tenant_id",
    "event_id",
    "ticket_type_id",
    "purchase_id",
    "user_id",
    "holder_name",
    "status",
    "secret_version",
)


def spread_ids(count: int, days: int = 30) -> list[uuid.UUID]:
    """UUIDv7 ids as tickets sold over ``days`` would have: random times (ascending) and random
    bits. ``new_id()`` in a loop gives ids of one millisecond that differ only in a counter,
    which would make feed pages compress far better than real ones."""
    now_ms = int(time.time() * 1000)
    start = now_ms - days * 86_400_000
    stamps = sorted(random.randrange(start, now_ms) for _ in range(count))
    ids = []
    for ms in stamps:
        bits = secrets.randbits(74)
        rand_a, rand_b = bits >> 62, bits & ((1 << 62) - 1)
        ids.append(uuid.UUID(int=(ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b))
    return ids


async def insert_tickets(dsn: str, event: EventHandle, count: int) -> list[uuid.UUID]:
    ids = spread_ids(count)
    purchase_id = new_id()
    records = [
        (
            ticket_id,
            event.tenant_id,
            event.event_id,
            event.ticket_type_id,
            purchase_id,
            f"user-{uuid.uuid4().hex[:12]}",
            name,
            "active",
            0,
        )
        for ticket_id, name in zip(ids, holder_names(count), strict=True)
    ]
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await connection.copy_records_to_table(
                "tickets", records=records, columns=list(TICKET_COLUMNS)
            )
            await connection.execute(
                "UPDATE ticket_types SET sold = sold + $1 WHERE id = $2",
                count,
                event.ticket_type_id,
            )
        await connection.execute("ANALYZE tickets")
    finally:
        await connection.close()
    return ids


async def sequence_all_changes(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        numbered: int = await connection.fetchval("SELECT gatehouse_sequence_changes(2000000000)")
        await connection.execute("ANALYZE")
        return numbered
    finally:
        await connection.close()


async def issuer_ring(db: BenchDatabase, keys: Secrets, event: EventHandle) -> IssuerKeyRing:
    database = Database(db.settings(pool_size=1))
    try:
        async with database.tenant(event.tenant_id) as session:
            return await KeyStore(keys.master_key).issuer_ring(
                session, event.event_id, tenant_id=event.tenant_id
            )
    finally:
        await database.close()


# Minting runs in worker processes: a ring holds OpenSSL key objects that don't pickle, so the
# workers get the raw active keys and rebuild a ring of their own.
_RawRing = tuple[int, bytes, int, bytes]


def _mint_chunk(raw: _RawRing, event_id: uuid.UUID, ticket_ids: list[uuid.UUID]) -> list[str]:
    signing_id, seed, encryption_id, secret = raw
    ring = IssuerKeyRing(
        [SigningKey.from_seed(signing_id, seed)],
        [EncryptionKey(encryption_id, secret)],
        active_signing_id=signing_id,
        active_encryption_id=encryption_id,
    )
    issued = datetime.now(UTC)
    return [
        issue_code(ring, ticket_id=t, event_id=event_id, secret_version=0, issued_at=issued)
        for t in ticket_ids
    ]


def mint_codes(
    ring: IssuerKeyRing, event_id: uuid.UUID, ticket_ids: Sequence[uuid.UUID]
) -> list[str]:
    raw: _RawRing = (
        ring.active_signing_key.key_id,
        ring.active_signing_key.seed(),
        ring.active_encryption_key.key_id,
        ring.active_encryption_key.secret,
    )
    ids = list(ticket_ids)
    workers = os.cpu_count() or 1
    if len(ids) < 2000 or workers == 1:
        return _mint_chunk(raw, event_id, ids)
    step = -(-len(ids) // (workers * 4))
    chunks = [ids[i : i + step] for i in range(0, len(ids), step)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        parts = pool.map(_mint_chunk, [raw] * len(chunks), [event_id] * len(chunks), chunks)
        return [code for part in parts for code in part]


# --- reporting helpers ------------------------------------------------------------------------


def machine_note(workers: int = SERVER_WORKERS) -> str:
    cores = os.cpu_count()
    return (
        f"Everything on one machine with {cores} cores shared by the server "
        f"({workers} uvicorn workers), PostgreSQL and the load generator; over 127.0.0.1."
    )


def target_verdict(measured: float, target: float, unit: str, *, higher_is_better: bool) -> str:
    """``met`` or ``missed by X`` against a target of docs/benchmarks.md."""
    if higher_is_better:
        if measured >= target:
            return f"met ({measured:,.0f} {unit})"
        return f"missed by {target - measured:,.0f} {unit} ({measured:,.0f} of {target:,.0f})"
    if measured <= target:
        return f"met ({measured:,.2f} {unit})"
    gap = measured - target
    by = f"{gap:,.2f}" if gap >= 0.01 else "< 0.01"
    return f"missed by {by} {unit} ({measured:,.2f}, target {target:,.2f})"


# --- a quiet machine --------------------------------------------------------------------------


def cpu_busy(seconds: float = 1.0) -> float:
    """Fraction of all cores busy over ``seconds`` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    spent = total1 - total0
    return 1.0 - (idle1 - idle0) / spent if spent else 0.0


def wait_for_quiet(max_wait_s: float = 180.0, threshold: float = 0.15) -> float:
    """Wait until other work leaves the cores idle (busy < ``threshold``), at most
    ``max_wait_s``; returns the last busy fraction so a report can say the box was not quiet."""
    deadline = time.monotonic() + max_wait_s
    busy = cpu_busy()
    while busy >= threshold and time.monotonic() < deadline:
        print(
            f"    the machine is {busy:.0%} busy with other work; waiting for it to settle",
            file=sys.stderr,
            flush=True,
        )
        busy = cpu_busy(5.0)
    return busy


def quiet_note(busy: float, threshold: float = 0.15) -> str:
    if busy < threshold:
        return ""
    return (
        f" **Other work kept the machine {busy:.0%} busy when this run started; these numbers "
        "are pessimistic.**"
    )


# --- where the CPU went -----------------------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime


def _machine_ticks() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)


def postgres_backends(db: BenchDatabase) -> list[int]:
    """The pids of the Postgres backends connected to ``db`` (the server's pool)."""

    async def query() -> list[int]:
        connection = await asyncpg.connect(db.owner_dsn)
        try:
            rows = await connection.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                db.name,
            )
            return [int(r["pid"]) for r in rows]
        finally:
            await connection.close()

    return asyncio.run(query())


@dataclass(slots=True)
class CpuUse:
    seconds: dict[str, float]  # CPU seconds per group of processes
    machine_busy: float  # fraction of all cores busy (anything on the machine)
    wall_s: float


class CpuMeter:
    """CPU seconds spent by groups of processes (server workers, Postgres backends...) and by
    the whole machine between ``start()`` and ``stop()``, from /proc."""

    def __init__(self, groups: Mapping[str, Any]) -> None:
        self._groups = dict(groups)  # name -> callable returning the pids of the group
        self._before: dict[str, dict[int, int]] = {}
        self._machine = (0, 0)
        self._started = 0.0

    def _snapshot(self, pids: Sequence[int]) -> dict[int, int]:
        found = {}
        for pid in pids:
            ticks = _cpu_ticks(pid)
            if ticks is not None:
                found[pid] = ticks
        return found

    def start(self) -> None:
        self._before = {name: self._snapshot(list(f())) for name, f in self._groups.items()}
        self._machine = _machine_ticks()
        self._started = time.perf_counter()

    def stop(self) -> CpuUse:
        wall = time.perf_counter() - self._started
        total1, idle1 = _machine_ticks()
        seconds = {}
        for name, f in self._groups.items():
            before = self._before.get(name, {})
            after = self._snapshot(sorted(set(f()) | set(before)))
            spent = sum(ticks - before.get(pid, 0) for pid, ticks in after.items())
            seconds[name] = spent / _CLOCK_TICKS
        total0, idle0 = self._machine
        spent_all = total1 - total0
        busy = 1.0 - (idle1 - idle0) / spent_all if spent_all else 0.0
        return CpuUse(seconds=seconds, machine_busy=busy, wall_s=wall)
