"""Scanner test fixtures: the live sync server and its back office (see live_server.py).

The scanner keeps its device token in the OS keyring when there is one: the tests must not write
into a developer's keyring, so they run with keyring's own "no keyring" backend and the token
goes to its file, as on a headless gate (tests/scanner_app/core/test_device_token.py swaps in an
in-memory backend to test choosing the keyring).
"""

import os
import socket

import pytest

from tests.scanner_app.live_server import (
    back_office,
    live_database,
    live_server,
    shared_live_server,
)

# Read by keyring when it first picks a backend (on the first store opened).
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"

__all__ = ["back_office", "live_database", "live_server", "shared_live_server"]


@pytest.fixture
def connection_attempts(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every name look-up or connection this process tries from now on (each one fails)."""
    attempts: list[object] = []

    def refuse(what: object) -> None:
        attempts.append(what)
        raise OSError("this test allows no connection")

    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **_: refuse(args))
    monkeypatch.setattr(socket.socket, "connect", lambda _self, address: refuse(address))
    return attempts
