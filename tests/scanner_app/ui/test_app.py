"""The app's entry point as a person starts it, and the verdict sounds."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

from scanner_app.ui.sounds import VerdictSounds
from scanner_app.ui.verdict_panel import Tone

BIN = Path(sys.executable).parent / "gatehouse-scanner"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )


def _ready_seconds(stdout: str) -> float:
    lines = [line for line in stdout.splitlines() if line.startswith("ready ")]
    assert len(lines) == 1, stdout
    return float(lines[0].split()[1])


def test_demo_opens_the_gate_screen(tmp_path: Path) -> None:
    result = _run("--demo", "--data-dir", str(tmp_path / "demo"), "--ready-probe")

    assert result.returncode == 0, result.stderr
    assert _ready_seconds(result.stdout) > 0
    assert (tmp_path / "demo" / "scanner.sqlite3").exists()


def test_a_scanner_not_enrolled_opens_on_enrollment(tmp_path: Path) -> None:
    result = _run("--data-dir", str(tmp_path / "fresh"), "--ready-probe")

    assert result.returncode == 0, result.stderr
    assert _ready_seconds(result.stdout) > 0


def test_the_commands_are_still_there(tmp_path: Path) -> None:
    result = _run("status", "--data-dir", str(tmp_path / "fresh"))

    assert result.returncode == 0, result.stderr
    assert "not enrolled" in result.stdout


def test_admit_and_reject_sound_different(tmp_path: Path) -> None:
    played: list[Path] = []
    sounds = VerdictSounds(tmp_path, player=played.append)

    sounds.play(Tone.ADMIT)
    sounds.play(Tone.ATTENTION)  # the guest goes in: the admit sound
    sounds.play(Tone.REJECT)
    sounds.enabled = False
    sounds.play(Tone.REJECT)

    assert [path.name for path in played] == ["admit.wav", "admit.wav", "reject.wav"]
    tones = {}
    for path in played:
        with wave.open(str(path)) as sound:
            assert sound.getnchannels() == 1
            assert sound.getnframes() > 0
            tones[path.name] = sound.readframes(sound.getnframes())
    assert tones["admit.wav"] != tones["reject.wav"]
