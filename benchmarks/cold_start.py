"""Cold start of the scanner app: from launching ``gatehouse-scanner --demo`` to a gate screen
that is shown and idle, ready for the first scan.

    ./dev bench cold_start      (or: python -m benchmarks.cold_start [--quick])

Each run is a new process on a new demo folder, with Qt's offscreen platform (no display on the
benchmark machine): ``gatehouse-scanner --demo --ready-probe --data-dir <fresh folder>``. The app
makes its demo store, opens the gate screen, and with ``--ready-probe`` prints
``ready <seconds>`` once the screen is shown and idle — seconds since the program's first line
ran — and quits. Three times per run:

* **to ready line**: launch to the ``ready`` line read here — what a person waits, interpreter
  start-up included;
* **in-process ready**: the program's own figure (from its first line to the idle screen);
* **process wall**: launch to exit (teardown included; a person does not wait for that).

The first run is reported on its own too: it pays for reading the program's files from disk
when they are not in the operating system's cache yet. When ``dist/gatehouse-scanner`` exists
(``./dev package``), the packaged build is measured the same way.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.environment import header

TARGET_SECONDS = 2.0
FULL_RUNS, QUICK_RUNS = 10, 3
RUN_TIMEOUT_SECONDS = 60.0
ROOT = Path(__file__).resolve().parent.parent
PACKAGED = ROOT / "dist" / "gatehouse-scanner" / "gatehouse-scanner"


class ProbeFailed(RuntimeError):
    """A run did not print its ready line (crashed, refused to start, or hung)."""


@dataclass(frozen=True, slots=True)
class ColdStart:
    to_ready_line: float  # launch → "ready" line read here, seconds
    in_process: float  # the program's own "ready <seconds>"
    wall: float  # launch → exit


def installed_program() -> Path:
    """The ``gatehouse-scanner`` next to this interpreter (the venv's console script)."""
    found = Path(sys.executable).parent / "gatehouse-scanner"
    if found.exists():
        return found
    which = shutil.which("gatehouse-scanner")
    if which is None:
        raise ProbeFailed("gatehouse-scanner is not installed in this environment")
    return Path(which)


def cold_start(program: Path, data_dir: Path) -> ColdStart:
    """Launch ``program`` once on ``data_dir`` and time it. Raises ``ProbeFailed`` when it
    exits without a ready line, or takes longer than ``RUN_TIMEOUT_SECONDS``."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    command = [str(program), "--demo", "--ready-probe", "--data-dir", str(data_dir)]
    started = time.perf_counter()
    with subprocess.Popen(  # noqa: S603 - our own program, arguments we built
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        assert process.stdout is not None
        to_line = in_process = None
        for line in process.stdout:
            if line.startswith("ready "):
                to_line = time.perf_counter() - started
                in_process = float(line.split()[1])
                break
        try:
            _, errors = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            raise ProbeFailed(f"{program.name} did not exit after its ready line") from None
        wall = time.perf_counter() - started
    if to_line is None or in_process is None:
        raise ProbeFailed(
            f"{program.name} exited with status {process.returncode} without a ready line: "
            + (errors.strip().splitlines() or ["(no output)"])[-1]
        )
    return ColdStart(to_line, in_process, wall)


def measure(program: Path, runs: int) -> list[ColdStart]:
    with tempfile.TemporaryDirectory(prefix="gatehouse-bench-cold-") as folder:
        results = []
        for index in range(runs):
            results.append(cold_start(program, Path(folder) / f"run-{index}"))
            _progress(f"{program.name} run {index + 1}/{runs}: {results[-1].to_ready_line:.2f} s")
        return results


def _row(name: str, values: list[float]) -> str:
    return (
        f"| {name} | {min(values):.2f} | {statistics.median(values):.2f} | {max(values):.2f} |"
        f" {values[0]:.2f} |"
    )


def _table(title: str, results: list[ColdStart]) -> list[str]:
    return [
        f"**{title}** ({len(results)} runs, seconds)",
        "",
        "| time | min | median | max | first run |",
        "|---|---:|---:|---:|---:|",
        _row("launch → ready line", [r.to_ready_line for r in results]),
        _row("in-process ready", [r.in_process for r in results]),
        _row("process wall (to exit)", [r.wall for r in results]),
        "",
    ]


def run(quick: bool = False) -> str:
    """Measure the installed program (and the packaged build, if built); return the section."""
    runs = QUICK_RUNS if quick else FULL_RUNS
    installed = measure(installed_program(), runs)
    median = statistics.median(r.to_ready_line for r in installed)
    met = "met" if median <= TARGET_SECONDS else "NOT met"
    lines = [
        "## Cold start (scanner app)",
        "",
        header("./dev bench cold_start", "PySide6-Essentials", "opencv-python-headless"),
        "",
        "`gatehouse-scanner --demo --ready-probe --data-dir <new folder>`, Qt offscreen, a new "
        "process and a new demo store each run (the demo store — 50 tickets, keys, codes — is "
        "made during the start). The ready line is printed once the gate screen is shown and "
        f"idle. Target: a ready gate screen in ≤ {TARGET_SECONDS:.0f} s: {met} (median "
        f"{median:.2f} s from launch).",
        "",
        *_table("pip-installed (`.venv/bin/gatehouse-scanner`)", installed),
    ]
    if PACKAGED.exists():
        title = "packaged build (`dist/gatehouse-scanner/`)"
        try:
            lines += _table(title, measure(PACKAGED, runs))
        except ProbeFailed as error:  # an old build; the installed program's numbers still count
            lines += [f"**{title}**: not measured — {error} (rebuild with `./dev package`).", ""]
    return "\n".join(lines).rstrip() + "\n"


def _progress(message: str) -> None:
    print(f"   {message}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS} runs instead")
    print(run(quick=parser.parse_args().quick))


if __name__ == "__main__":
    main()
