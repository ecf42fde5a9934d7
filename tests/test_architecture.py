"""The architecture as a test: the import contracts in pyproject.toml ([tool.importlinter]) and
what the installable wheel may hold. docs/architecture.md draws the same picture."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import grimp
import pytest

from sync_server.console.assets import VENDOR_FILES

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("shared", "scanner_app", "sync_server")
#: Where a program starts: the two console scripts, the server's ASGI factory (uvicorn loads it
#: by name), and the scanner's self-test (``python -m``, used by ./dev demo without a display).
ENTRY_POINTS = ("scanner_app.cli", "sync_server.cli", "sync_server.app", "scanner_app.ui.selftest")


def test_import_contracts_hold() -> None:
    """Every contract in pyproject.toml is kept (no cycles between the server's or the
    scanner's packages, shared imports neither program, the two programs never import each
    other, no Qt in scanner_app/core, the domain does not reach into the HTTP edge's internals,
    the product never imports the test kit)."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    found = subprocess.run(
        [str(lint_imports), str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 0, found.stdout + found.stderr


def test_every_product_module_is_reachable_from_an_entry_point() -> None:
    """A module that no program reaches is dead code or a test helper hiding in the product;
    either way it does not belong in the wheel."""
    graph = grimp.build_graph(*PRODUCT, cache_dir=None)
    reached: set[str] = set()
    for entry in ENTRY_POINTS:
        reached.add(entry)
        reached |= graph.find_upstream_modules(entry)
    # A package's __init__ runs whenever one of its modules is imported.
    for module in list(reached):
        parts = module.split(".")
        reached |= {".".join(parts[:n]) for n in range(1, len(parts))}
    unreached = sorted(m for m in graph.modules if m not in reached)
    assert unreached == []


@pytest.mark.slow
def test_the_wheel_holds_the_product_and_nothing_for_tests(tmp_path: Path) -> None:
    """``pip wheel . --no-deps`` builds the three packages and the migrations; no local Solana
    node, no test kit, no tests, no benchmarks."""
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("gatehouse-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.startswith("gatehouse-")}
    assert tops == set(PRODUCT)
    assert any(name.startswith("sync_server/_migrations/versions/") for name in names)
    assert not [name for name in names if "localnode" in name or "localledger" in name]
    assert not [name for name in names if "/tests/" in name or "conftest" in name]
    # The console: its templates and styles, and the npm assets ./dev setup installed (the
    # test environment is set up), but not npm's own folder.
    assert "sync_server/console/templates/base.html" in names
    assert "sync_server/console/static/console.css" in names
    assert "sync_server/console/static/vendor/htmx.min.js" in names
    assert not [name for name in names if "node_modules" in name]


def test_the_container_image_installs_every_console_asset_the_pages_name() -> None:
    """The image's Node stage copies the files the console serves (``VENDOR_FILES``): an asset
    added to the pages but not to the Dockerfile would leave the image's console without it."""
    dockerfile = (ROOT / "packaging" / "server" / "Dockerfile").read_text()
    stage = dockerfile.split("AS console", 1)[1].split("FROM ", 1)[0]
    copied = {word.rsplit("/", 1)[-1] for word in stage.split() if word.startswith("node_modules/")}
    assert copied == set(VENDOR_FILES)
