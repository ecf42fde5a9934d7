# keyring's backend classes carry no type hints.
# mypy: disable-error-code="no-untyped-call"
"""The device token at rest (issue 14): in the OS keyring when there is a usable one, else in a
0600 file in the 0700 data folder — never in the SQLite file, and moved out of a file an older
version wrote it into.

This machine has no keyring backend (as a headless gate): the file is what runs for real here,
with its modes checked by ``os.stat``. Choosing the keyring is tested with an in-memory backend
installed through keyring's own ``set_keyring``.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail
from sqlalchemy import create_engine

from scanner_app.core.store import LocalStore, schema
from scanner_app.core.store.database import DATABASE_FILE
from scanner_app.core.store.device_token import (
    SERVICE,
    TOKEN_FILE,
    FileVault,
    KeyringVault,
)
from scanner_app.core.store.sealing import Sealer
from scanner_app.core.store.state import load_enrollment

ENROLLED_AT = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _token() -> str:
    return f"device-token-{uuid.uuid4().hex}"


def _data_files(data_dir: Path) -> bytes:
    """Every byte of the database, its log and its shared memory, as a thief would copy them."""
    return b"".join(
        (data_dir / name).read_bytes()
        for name in (DATABASE_FILE, f"{DATABASE_FILE}-wal", f"{DATABASE_FILE}-shm")
        if (data_dir / name).exists()
    )


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual default umask, under which plain file creation gives 0644 and 0755."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


class MemoryKeyring(KeyringBackend):
    """A keyring that keeps passwords in a dict: stands in for the OS's in selection tests."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[service, username] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.passwords[service, username]


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    memory = MemoryKeyring()
    keyring.set_keyring(memory)
    yield memory
    keyring.set_keyring(previous)


def _version_1_store(data_dir: Path, token: str) -> None:
    """A data folder as version 1 left it: the token in the device table, the files 0644 in a
    0755 folder."""
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)  # noqa: S103 - what an older version left
    engine = create_engine(f"sqlite+pysqlite:///{data_dir / DATABASE_FILE}")
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode = WAL")
        schema.MIGRATIONS[0](conn)
        conn.execute(schema.state.insert().values(name="cache_salt", value=Sealer.new_salt().hex()))
        conn.exec_driver_sql(
            "INSERT INTO device (id, device_id, name, server_url, tenant_id, event_id, gate, "
            "token, enrolled_at) VALUES (1, ?, 'North scanner', 'https://gates.example.org', "
            "?, ?, 'North 1', ?, ?)",
            (
                uuid.uuid4().bytes,
                uuid.uuid4().bytes,
                uuid.uuid4().bytes,
                token,
                int(ENROLLED_AT.timestamp() * 1_000_000),
            ),
        )
        conn.exec_driver_sql("PRAGMA user_version = 1")
    engine.dispose()
    os.chmod(data_dir / DATABASE_FILE, 0o644)


# --- the file, for real -----------------------------------------------------------------------


def test_a_new_data_folder_is_0700_and_the_token_file_0600(tmp_path: Path, umask_022: None) -> None:
    data_dir = tmp_path / "new" / "scanner"
    store = LocalStore.open(data_dir)
    token = _token()
    store.vault.save(token)
    store.close()

    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / TOKEN_FILE) == 0o600
    assert _mode(data_dir / DATABASE_FILE) == 0o600
    assert (data_dir / TOKEN_FILE).read_text() == token
    assert isinstance(LocalStore.open(data_dir).vault, FileVault)


def test_opening_a_store_fixes_the_modes_an_older_version_left(
    tmp_path: Path, umask_022: None
) -> None:
    data_dir = tmp_path / "scanner"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)  # noqa: S103 - what an older version left
    (data_dir / TOKEN_FILE).write_text(_token())
    os.chmod(data_dir / TOKEN_FILE, 0o644)

    LocalStore.open(data_dir).close()

    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / TOKEN_FILE) == 0o600
    assert _mode(data_dir / DATABASE_FILE) == 0o600


def test_a_version_1_store_gives_up_its_token_on_first_open(
    tmp_path: Path, umask_022: None
) -> None:
    data_dir = tmp_path / "scanner"
    token = _token()
    _version_1_store(data_dir, token)
    assert token.encode() in _data_files(data_dir)  # the leak this fixes

    store = LocalStore.open(data_dir)
    try:
        assert store.schema_version() == schema.SCHEMA_VERSION
        assert store.vault.load() == token
        with store.read() as conn:
            enrollment = load_enrollment(conn)
            columns = {row[1] for row in conn.exec_driver_sql("PRAGMA table_info(device)")}
        assert enrollment is not None
        assert enrollment.gate == "North 1"  # the identity stays
        assert "token" not in columns
    finally:
        store.close()

    assert token.encode() not in _data_files(data_dir)
    assert (data_dir / TOKEN_FILE).read_text() == token
    assert _mode(data_dir / TOKEN_FILE) == 0o600
    assert _mode(data_dir) == 0o700


# --- choosing the keyring ---------------------------------------------------------------------


def test_a_usable_keyring_holds_the_token_and_no_file_does(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    data_dir = tmp_path / "scanner"
    store = LocalStore.open(data_dir)
    token = _token()
    store.vault.save(token)
    store.close()

    assert isinstance(store.vault, KeyringVault)
    assert memory_keyring.passwords == {(SERVICE, str(data_dir.resolve())): token}
    assert not (data_dir / TOKEN_FILE).exists()
    assert LocalStore.open(data_dir).vault.load() == token


def test_a_token_written_while_no_keyring_was_usable_moves_into_one(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    data_dir = tmp_path / "scanner"
    token = _token()
    keyring.set_keyring(fail.Keyring())
    LocalStore.open(data_dir).vault.save(token)
    assert (data_dir / TOKEN_FILE).exists()
    keyring.set_keyring(memory_keyring)

    store = LocalStore.open(data_dir)
    store.close()

    assert store.vault.load() == token
    assert not (data_dir / TOKEN_FILE).exists()


def test_a_version_1_store_moves_its_token_into_a_usable_keyring(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    data_dir = tmp_path / "scanner"
    token = _token()
    _version_1_store(data_dir, token)

    LocalStore.open(data_dir).close()

    assert memory_keyring.passwords == {(SERVICE, str(data_dir.resolve())): token}
    assert not (data_dir / TOKEN_FILE).exists()
    assert token.encode() not in _data_files(data_dir)
