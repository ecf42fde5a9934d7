"""The scanner's SQLite file: opening, migrating, and transactions that survive a power cut.

Durability: WAL with ``synchronous=FULL`` — every commit is on disk (the WAL is fsynced) before
``write()`` returns, so a verdict shown after its scan was committed survives a crash, a kill or
a power cut. ``NORMAL`` would be faster and still safe against a crashed *process*, but may lose
the last commits when the power goes, which is exactly the case a gate must survive.

Concurrency: the camera, a handheld scanner and the sync engine write from different threads,
and a command-line ``sync`` may run beside the app. Writes take SQLite's write lock at the start
(``BEGIN IMMEDIATE``), so a transaction that read something never finds it changed under it
when it comes to write; within one process a lock also keeps threads from spinning on
``SQLITE_BUSY``. Readers use WAL snapshots and never wait for writers.

Secrets: the data folder is 0700 and the database files 0600 (set on every open); the device
token is not in the database but in the token vault (``device_token``), which opens with it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import QueuePool

from scanner_app.core.store import schema
from scanner_app.core.store.device_token import (
    TokenVault,
    open_vault,
    secure_file,
    secure_folder,
)
from scanner_app.core.store.sealing import Sealer

DATABASE_FILE = "scanner.sqlite3"
#: How long a writer waits for another process's write lock before giving up.
BUSY_TIMEOUT_MS = 10_000


class StoreError(RuntimeError):
    """The scanner's data file cannot be used; the message says why and what to do."""


class LocalStore:
    """One scanner's SQLite file, and the vault of its device token. Thread-safe: share one
    instance between threads."""

    def __init__(self, engine: Engine, path: Path, vault: TokenVault) -> None:
        self.engine = engine
        self.path = path
        self.vault = vault
        self._write_lock = threading.Lock()
        self._sealer: Sealer | None = None

    @classmethod
    def open(cls, data_dir: Path) -> LocalStore:
        """Open (creating and migrating when needed) the store in ``data_dir``.

        Raises ``StoreError`` when the folder cannot be created, the file is not a SQLite
        database, or it was written by a newer version of the program.
        """
        try:
            secure_folder(data_dir)
            vault = open_vault(data_dir)
        except OSError as error:
            raise StoreError(f"Cannot create the data folder {data_dir}: {error}") from error
        path = data_dir / DATABASE_FILE
        engine = create_engine(
            f"sqlite+pysqlite:///{path}",
            poolclass=QueuePool,
            # Readers and the writer of the gate, the sync thread and the UI; more are opened
            # when needed and closed when returned.
            pool_size=2,
            max_overflow=6,
            connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine, "connect", _configure_connection)
        event.listen(engine, "begin", _begin)
        store = cls(engine, path, vault)
        try:
            store._migrate()
            for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
                secure_file(path.with_name(name))
        except StoreError:
            engine.dispose()  # a refused file is closed again: the user may move it aside
            raise
        except DBAPIError as error:
            engine.dispose()
            raise StoreError(
                f"{path} is not a scanner data file this program can read ({error.orig})."
            ) from error
        return store

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed and on disk when the block ends, rolled back when it
        raises."""
        with self._write_lock, self.engine.connect() as plain:
            conn = plain.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A consistent read-only snapshot."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @property
    def sealer(self) -> Sealer:
        if self._sealer is None:
            with self.read() as conn:
                salt = conn.scalar(
                    select(schema.state.c.value).where(schema.state.c.name == "cache_salt")
                )
            if salt is None:
                raise StoreError(f"{self.path} has lost its cache salt; re-create the store.")
            self._sealer = Sealer(bytes.fromhex(salt))
        return self._sealer

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file (at shutdown, after a bulk load)."""
        raw = self.engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())

    def _migrate(self) -> None:
        with self.write() as conn:
            version = int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())
            if version > schema.SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} was written by a newer Gatehouse scanner (data version "
                    f"{version}; this program knows up to {schema.SCHEMA_VERSION}). Install "
                    "that version or newer."
                )
            steps = range(version, schema.SCHEMA_VERSION)
            rewrite = version > 0 and not schema.REWRITE_AFTER.isdisjoint(steps)
            for step in range(version, schema.SCHEMA_VERSION):
                if step == schema.TOKEN_LEAVES_STEP:
                    self._move_token_to_vault(conn)
                schema.MIGRATIONS[step](conn)
                if step == 0:
                    conn.execute(
                        schema.state.insert().values(
                            name="cache_salt", value=Sealer.new_salt().hex()
                        )
                    )
            if version != schema.SCHEMA_VERSION:
                # PRAGMA takes no parameters; the value is our own integer.
                conn.exec_driver_sql(f"PRAGMA user_version = {schema.SCHEMA_VERSION}")
        if rewrite:
            self._rewrite_file()

    def _move_token_to_vault(self, conn: Connection) -> None:
        """Version 1 kept the device token in the file: put it in the vault first (a crash
        before the migration commits leaves it in both, and the next open does this again)."""
        token = conn.exec_driver_sql("SELECT token FROM device").scalar()
        if token:
            self.vault.save(str(token))

    def _rewrite_file(self) -> None:
        """Rebuild the file without the pages and the log that held what a migration removed
        (the old token column, names sealed on the device), so a copy of the data folder does
        not give it away."""
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("VACUUM")
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()


def _wal(cursor: sqlite3.Cursor) -> None:
    """Switch to the write-ahead log. Switching takes an exclusive lock for which SQLite does not
    always wait (it answers "database is locked" at once when another connection is opening or
    migrating a new file — the app and ``gatehouse-scanner sync`` starting together, or an
    enrollment running while the window opens the store), so retry for up to the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _configure_connection(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event decide when transactions start (the driver's own
    # implicit BEGIN would start them late, after the first read).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    _wal(cursor)
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # Each pooled connection has its own page cache, so keep it small (8 MB): lookups of a
    # million-ticket cache touch pages all over the file, and 64 MB per connection measured
    # 530 MB of RSS. The operating system's file cache keeps the file's pages anyway.
    cursor.execute("PRAGMA cache_size = -8192")
    cursor.close()


def _begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")
