"""Where the device's tokens live: the OS keyring when there is a usable one, else a file only
this user can read. Never in the SQLite file.

The vault holds one text: ``DeviceCredentials`` as JSON — the access token (the bearer
credential: whoever holds it uploads scans and reads the changes feed as this gate; it lives an
hour), the refresh token that renews it (``POST /v1/devices/token``; spent on each renewal, and
a spent one presented again revokes the device) and when to renew. A vault written before
renewals holds the bare 30-day token: it is read as credentials without a refresh token, used
until it expires, and then the gate is enrolled again. A thief of the gate laptop, or of a
backup of its data folder, must not find them next to the data:

* **keyring** (``keyring``: Windows Credential Manager, the macOS Keychain, the Secret Service
  on a Linux desktop): service ``gatehouse-scanner``, one entry per data folder (its absolute
  path), so a demo folder and the real one do not share a token;
* **file**, where no keyring backend is usable (a headless Linux gate, a minimal session):
  ``device-token`` in the data folder, mode 0600, in a folder of mode 0700. Both modes are set
  when they are created and corrected every time the store is opened.

A token written to the file while no keyring was usable moves into the keyring the first time
one is. A device whose token cannot be found (a keyring that went away) sends none; the server
refuses it and the status says to enroll again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

import msgspec

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

log = logging.getLogger(__name__)

SERVICE: Final = "gatehouse-scanner"
TOKEN_FILE: Final = "device-token"  # noqa: S105 - a file name
FOLDER_MODE: Final = 0o700
FILE_MODE: Final = 0o600


class DeviceCredentials(msgspec.Struct, kw_only=True, frozen=True):
    """What the vault holds: the device's tokens, and when to renew them (server time)."""

    #: The bearer token every request carries.
    access: str
    #: What renews ``access`` (once: each renewal answers the next one); None for a device
    #: enrolled at a server older than renewals — its token lived 30 days.
    refresh: str | None = None
    #: When ``access`` expires, and when to renew it (half its life), by the server's clock.
    expires_at: datetime | None = None
    renew_at: datetime | None = None

    @classmethod
    def issued(
        cls, access: str, refresh: str | None, expires_at: datetime | None, server_time: datetime
    ) -> DeviceCredentials:
        """Tokens as the server answered them at ``server_time``: renewed at half their life."""
        renew_at = server_time + (expires_at - server_time) / 2 if expires_at else None
        return cls(access=access, refresh=refresh, expires_at=expires_at, renew_at=renew_at)

    def encode(self) -> str:
        return msgspec.json.encode(self).decode()

    @classmethod
    def decode(cls, text: str | None) -> DeviceCredentials | None:
        """The credentials in a vault's text; a bare token (a vault written before renewals)
        is an access token without a refresh token. None for nothing stored."""
        if not text:
            return None
        if text.startswith("{"):
            try:
                return msgspec.json.decode(text, type=cls)
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.warning("the device's tokens in the vault could not be read")
                return None
        return cls(access=text)


class TokenVault(Protocol):
    """Holds this device's token."""

    #: Where, in words ("the system keyring (...)", "the file ...").
    where: str

    def load(self) -> str | None: ...

    def save(self, token: str) -> None: ...

    def forget(self) -> None: ...


def secure_folder(path: Path) -> None:
    """Create ``path`` (and its parents) if needed; make it ``FOLDER_MODE`` whatever the umask or
    an earlier version left. Raises ``OSError``."""
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    _chmod(path, FOLDER_MODE)


def secure_file(path: Path) -> None:
    """Make an existing file ``FILE_MODE``; nothing when it does not exist."""
    if path.exists():
        _chmod(path, FILE_MODE)


def _chmod(path: Path, mode: int) -> None:
    if stat.S_IMODE(path.stat().st_mode) != mode:
        path.chmod(mode)


class FileVault:
    """The token in a file of mode 0600, written whole or not at all."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = f"the file {path} (readable only by this user)"

    def load(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def save(self, token: str) -> None:
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        # Created 0600 from the start (the umask can only remove bits), never readable by others.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            os.fchmod(descriptor, FILE_MODE)  # a leftover temporary file keeps its old mode
            os.write(descriptor, token.encode("utf-8"))
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, self.path)
        _fsync_folder(self.path.parent)

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)
        _fsync_folder(self.path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename or unlink in ``folder`` durable (POSIX; Windows has no folder handles)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class KeyringVault:
    """The token in the OS keyring, under ``SERVICE`` and the data folder's path."""

    def __init__(self, backend: KeyringBackend, account: str) -> None:
        self._backend = backend
        self._account = account
        self.where = f"the system keyring ({type(backend).__module__}), entry {SERVICE}"

    def load(self) -> str | None:
        from keyring.errors import KeyringError  # noqa: PLC0415 - keyring loads on first use

        try:
            return self._backend.get_password(SERVICE, self._account)
        except KeyringError as error:  # a locked or broken keyring: the server will say 401
            log.warning("the device token could not be read from the keyring: %s", error)
            return None

    def save(self, token: str) -> None:
        self._backend.set_password(SERVICE, self._account, token)

    def forget(self) -> None:
        from keyring.errors import PasswordDeleteError  # noqa: PLC0415 - see load

        with contextlib.suppress(PasswordDeleteError):  # nothing stored
            self._backend.delete_password(SERVICE, self._account)


def usable_keyring() -> KeyringBackend | None:
    """The keyring backend ``keyring`` would use, or None when it has none that stores anything
    (its ``fail`` or ``null`` backend, or nothing found: priority 0 or less)."""
    import keyring  # noqa: PLC0415 - looks for backends (D-Bus...) only when a store opens

    backend = keyring.get_keyring()
    return backend if backend.priority > 0 else None


def open_vault(data_dir: Path) -> TokenVault:
    """The vault for the store in ``data_dir`` (which ``secure_folder`` has made): the keyring
    when one is usable, else the file; a token stranded in the file moves into the keyring."""
    file_vault = FileVault(data_dir / TOKEN_FILE)
    secure_file(file_vault.path)
    backend = usable_keyring()
    if backend is None:
        return file_vault
    vault = KeyringVault(backend, str(data_dir.resolve()))
    stranded = file_vault.load()
    if stranded is not None:
        vault.save(stranded)
        file_vault.forget()
    return vault
