"""Distinct sounds for admit and reject, so staff hear a verdict without looking.

The tones are generated at run time as small WAV files in the cache folder (no binary assets
to ship): admit is two short rising beeps, reject a low triple buzz — different in pitch and in
rhythm, so they are told apart in a noisy hall and by people who hear pitch poorly.

Playback, in order of preference:

1. ``QSoundEffect`` from QtMultimedia, when the installed PySide6 has it (the full ``PySide6``
   package; ``PySide6-Essentials``, which this project needs, does not);
2. the platform's own player: ``winsound`` on Windows, ``afplay`` on macOS, ``pw-play`` /
   ``paplay`` / ``aplay`` on Linux, started without waiting;
3. otherwise ``QApplication.beep()`` for a rejection only (a system beep for "admit" would be
   the same beep, which is worse than silence: staff would learn to ignore it).
"""

from __future__ import annotations

import importlib
import logging
import math
import shutil
import struct
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QStandardPaths, QUrl
from PySide6.QtWidgets import QApplication

from scanner_app.ui.verdict_panel import Tone

log = logging.getLogger(__name__)

SAMPLE_RATE = 22_050
#: (frequency in Hz, seconds) pairs; frequency 0 is silence.
ADMIT_TONES: tuple[tuple[float, float], ...] = ((880.0, 0.09), (0.0, 0.04), (1320.0, 0.14))
REJECT_TONES: tuple[tuple[float, float], ...] = (
    (220.0, 0.12),
    (0.0, 0.05),
    (220.0, 0.12),
    (0.0, 0.05),
    (220.0, 0.2),
)
_LINUX_PLAYERS = ("pw-play", "paplay", "aplay")

Player = Callable[[Path], None]


def write_tone(path: Path, tones: tuple[tuple[float, float], ...]) -> Path:
    """Write ``tones`` as a mono 16-bit WAV at ``path`` (soft edges, so no clicks)."""
    frames = bytearray()
    for frequency, seconds in tones:
        count = int(SAMPLE_RATE * seconds)
        ramp = max(1, int(SAMPLE_RATE * 0.005))
        for i in range(count):
            edge = min(1.0, i / ramp, (count - 1 - i) / ramp)
            value = 0.0
            if frequency > 0:
                # A square-ish wave (sine plus a third harmonic) cuts through crowd noise.
                phase = 2 * math.pi * frequency * i / SAMPLE_RATE
                value = 0.75 * math.sin(phase) + 0.25 * math.sin(3 * phase)
            frames += struct.pack("<h", int(value * edge * 0.6 * 32767))
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(bytes(frames))
    return path


def sound_folder() -> Path:
    location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.CacheLocation)
    return Path(location or Path.home() / ".cache" / "gatehouse-scanner") / "sounds"


class VerdictSounds:
    """Plays the admit or reject sound. ``enabled`` follows the gate's ``sounds`` setting.

    ``backend`` says which playback was found (``qtmultimedia``, ``winsound``, a player's
    name, or ``beep``). Never raises: a gate without sound still scans.
    """

    def __init__(self, folder: Path | None = None, *, player: Player | None = None) -> None:
        self.enabled = True
        self._files: dict[Tone, Path] = {}
        self._effects: dict[Tone, Any] = {}
        folder = folder or sound_folder()
        try:
            self._files = {
                Tone.ADMIT: write_tone(folder / "admit.wav", ADMIT_TONES),
                Tone.REJECT: write_tone(folder / "reject.wav", REJECT_TONES),
            }
        except OSError as error:
            log.warning("cannot write the verdict sounds: %s", error)
        self.backend, self._player = ("custom", player) if player else self._find_backend()

    def _find_backend(self) -> tuple[str, Player | None]:
        if self._files:
            try:
                multimedia = importlib.import_module("PySide6.QtMultimedia")
            except ImportError:
                multimedia = None
            if multimedia is not None:
                for tone, path in self._files.items():
                    effect = multimedia.QSoundEffect()
                    effect.setSource(QUrl.fromLocalFile(str(path)))
                    self._effects[tone] = effect
                return "qtmultimedia", None
            if sys.platform == "win32":
                return "winsound", _play_winsound
            command = "afplay" if sys.platform == "darwin" else None
            candidates = (command,) if command else _LINUX_PLAYERS
            for name in candidates:
                found = shutil.which(name)
                if found:
                    return name, _external_player(found)
        return "beep", None

    def play(self, tone: Tone) -> None:
        if not self.enabled or tone is Tone.IDLE:
            return
        # Amber means the guest goes in: it sounds like an admission.
        wanted = Tone.ADMIT if tone is Tone.ATTENTION else tone
        try:
            if wanted in self._effects:
                self._effects[wanted].play()
            elif self._player is not None and wanted in self._files:
                self._player(self._files[wanted])
            elif wanted is Tone.REJECT:
                QApplication.beep()
        except Exception:  # a sound problem must never stop the gate
            log.exception("playing the %s sound failed", wanted)


def _play_winsound(path: Path) -> None:
    winsound = importlib.import_module("winsound")
    winsound.PlaySound(str(path), winsound.SND_FILENAME | winsound.SND_ASYNC)


def _external_player(executable: str) -> Player:
    running: list[subprocess.Popen[bytes]] = []

    def play(path: Path) -> None:
        # Reap finished players (no zombies over a long shift) without ever waiting.
        running[:] = [child for child in running if child.poll() is None]
        running.append(
            subprocess.Popen(  # noqa: S603 - a fixed player binary and our own file
                [executable, str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    return play
