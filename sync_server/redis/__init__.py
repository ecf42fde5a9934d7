"""What lives in Redis: the shared link (``link``: connects on first use, fails soft while
Redis is down), per-caller rate limits, circuit breakers shared by all processes, and the
read-through ticket cache. Nothing here is the only copy of anything: every value is either a
counter that may be lost or a cache of what Postgres holds."""
