"""The scanner's local store: one SQLite file holding the ticket cache, the scan log, the upload
queue, keys, identity and sync state. See ``database`` for durability and concurrency."""

from scanner_app.core.store.database import LocalStore, StoreError

__all__ = ["LocalStore", "StoreError"]
