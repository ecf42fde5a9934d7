"""Scanner test fixtures: the live sync server and its back office (see live_server.py)."""

from tests.scanner_app.live_server import (
    back_office,
    live_database,
    live_server,
    shared_live_server,
)

__all__ = ["back_office", "live_database", "live_server", "shared_live_server"]
