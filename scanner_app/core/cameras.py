"""Which cameras this computer has, found without opening them.

Opening a camera to see whether it exists takes from tens of milliseconds to several seconds
per index (drivers time out on missing ones) and can grab a camera another program is using.
A settings screen wants the list at once, so on Linux this reads what the kernel already
publishes in ``/sys/class/video4linux`` (names, and which device nodes are capture streams
rather than the metadata nodes UVC cameras add). Elsewhere there is no such cheap list: the
first few camera numbers are offered, unverified, and the gate finds out when it opens one.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CameraChoice", "available_cameras"]

SYSFS_VIDEO = Path("/sys/class/video4linux")
#: Camera numbers offered where nothing can be listed cheaply (Windows, macOS).
UNLISTED_INDICES = 4


@dataclass(frozen=True, slots=True)
class CameraChoice:
    """A camera as settings offer it: ``spec`` is what ``capture.open_source`` takes."""

    spec: str
    label: str
    #: False when the camera was not seen, only guessed (no cheap list on this platform).
    verified: bool


def available_cameras(
    sysfs: Path = SYSFS_VIDEO, platform: str = sys.platform
) -> list[CameraChoice]:
    """The cameras to offer, by number, cheapest way this platform allows (never opens one)."""
    if platform.startswith("linux"):
        return _linux_cameras(sysfs)
    return [
        CameraChoice(str(index), f"Camera {index}", verified=False)
        for index in range(UNLISTED_INDICES)
    ]


def _linux_cameras(sysfs: Path) -> list[CameraChoice]:
    found: list[tuple[int, CameraChoice]] = []
    try:
        entries = list(sysfs.iterdir())
    except OSError:
        return []
    for entry in entries:
        number = entry.name.removeprefix("video")
        if not number.isdigit():
            continue
        # ``index`` 0 is a device's capture stream; UVC cameras add a metadata node (index 1)
        # that OpenCV cannot read frames from.
        if _read(entry / "index") not in (None, "0"):
            continue
        name = _read(entry / "name") or "camera"
        index = int(number)
        found.append((index, CameraChoice(str(index), f"Camera {index}: {name}", verified=True)))
    return [choice for _, choice in sorted(found, key=lambda item: item[0])]


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
