"""The local Redis for fault tests: stop it, and always start it again (with the command `./dev`
uses, see ensure_services in ./dev)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from redis.asyncio import Redis

from sync_server.settings import RedisSettings

HOST, PORT = "127.0.0.1", 6379
# The start command ./dev uses (ensure_services), word for word.
START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    str(PORT),
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]


def answers() -> bool:
    """Does Redis answer PING on 127.0.0.1:6379?"""
    try:
        done = subprocess.run(
            ["redis-cli", "-h", HOST, "-p", str(PORT), "ping"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.stdout.strip() == "PONG"


def _wait(until_answers: bool, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while answers() != until_answers:
        if time.monotonic() > deadline:
            state = "answer" if until_answers else "stop"
            raise RuntimeError(f"Redis did not {state} within {seconds:g} s")
        time.sleep(0.05)


def start() -> None:
    """Start Redis unless it answers already, and wait until it does."""
    if answers():
        return
    for folder in ("/var/lib/redis", "/var/log/redis"):
        Path(folder).mkdir(parents=True, exist_ok=True)
    subprocess.run(START, check=True, capture_output=True, timeout=30)
    _wait(True, 30)


def stop() -> None:
    """Stop Redis without saving (it keeps nothing on disk anyway) and wait until it is gone."""
    subprocess.run(
        ["redis-cli", "-h", HOST, "-p", str(PORT), "shutdown", "nosave"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    _wait(False, 10)


@contextmanager
def stopped() -> Iterator[None]:
    """Redis is stopped inside the block and running again after it, whatever happens."""
    stop()
    try:
        yield
    finally:
        start()


@asynccontextmanager
async def client(settings: RedisSettings) -> AsyncIterator[Redis]:
    """A plain client for looking at the keys the server wrote (``settings.key_prefix``
    included in the names asked for)."""
    redis = Redis.from_url(settings.url, decode_responses=True)
    try:
        yield redis
    finally:
        await redis.aclose()


async def text(redis: Redis, key: str) -> str | None:
    """The string at ``key`` (the client decodes responses), typed as such."""
    value = await redis.get(key)
    return value.decode() if isinstance(value, bytes) else value
