"""What a benchmark ran on, for the header of its section."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def versions(*packages: str) -> str:
    found = []
    for name in packages:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def header(command: str, *packages: str) -> str:
    """Lines saying how to reproduce a result and where it was measured."""
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    return (
        f"Command: `{command}` · measured {when} on {os.cpu_count()} × {cpu_model()}, "
        f"Python {platform.python_version()}, {versions(*packages)}."
    )
