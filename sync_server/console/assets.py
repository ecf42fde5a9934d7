"""The console's browser assets: htmx (and uPlot, for the dashboard's charts), installed from
npm by ``./dev setup`` (``npm ci`` in ``sync_server/console``, then copied into
``static/vendor``, which git ignores). Nothing of theirs is committed, and nothing is loaded
from the internet: the console serves them itself under ``/console/static/vendor``. A wheel
built after ``./dev setup`` carries them (pyproject's hatch ``artifacts``)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

STATIC_DIR: Final = Path(__file__).parent / "static"
TEMPLATES_DIR: Final = Path(__file__).parent / "templates"
VENDOR_DIR: Final = STATIC_DIR / "vendor"
#: What ``./dev setup`` copies from ``node_modules`` (package.json pins the versions).
VENDOR_FILES: Final = ("htmx.min.js", "uPlot.iife.min.js", "uPlot.min.css")


def missing_assets(folder: Path | None = None) -> list[str]:
    """The vendor files the console's pages name that are not installed (in ``VENDOR_DIR``
    unless ``folder`` is given)."""
    where = folder or VENDOR_DIR
    return [name for name in VENDOR_FILES if not (where / name).is_file()]
