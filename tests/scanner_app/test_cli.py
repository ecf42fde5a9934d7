"""The scanner's command line, as a person runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from scanner_app.cli import main
from scanner_app.core.synthetic_frames import render_qr
from shared.domain import VerdictReason

BIN = Path(sys.executable).parent


def test_demo_admits_the_valid_tickets_and_rejects_each_bad_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = {
        line.split("  ")[1].strip(): line for line in result.output.splitlines() if "ms " in line
    }
    expected = {
        "valid ticket": "ADMITTED",
        "another valid ticket": "ADMITTED",
        "forged with a stolen scanner's keys": VerdictReason.INVALID_CODE.sentence,
        "one character altered": VerdictReason.INVALID_CODE.sentence,
        "ticket for another event": VerdictReason.WRONG_EVENT.sentence,
        "issued under keys this gate lacks": VerdictReason.UNKNOWN_KEY.sentence,
    }
    assert set(lines) == set(expected)
    for label, shown in expected.items():
        assert shown in lines[label], lines[label]
        if shown != "ADMITTED":
            assert "REJECTED" in lines[label]
    assert len(list(tmp_path.glob("*-code.png"))) == 6
    assert len(list(tmp_path.glob("*-camera.jpg"))) == 6


def test_decode_prints_the_code_in_an_image(tmp_path: Path) -> None:
    text = "GH1" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" * 7
    image = tmp_path / "ticket.png"
    cv2.imwrite(str(image), render_qr(text, module_px=5))
    for decoder in ("zxing", "pyzbar", "opencv"):
        result = CliRunner().invoke(main, ["decode", "--decoder", decoder, str(image)])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == f"{image}: {text}"


def test_decode_says_when_there_is_nothing_to_read(tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200), 255, np.uint8))
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")
    result = CliRunner().invoke(main, ["decode", str(blank), str(not_image)])
    assert result.exit_code == 1
    assert f"{blank}: no QR code found" in result.output
    assert f"{not_image}: not an image this program can read" in result.output


@pytest.mark.parametrize("script", ["gatehouse-scanner", "gatehouse-server"])
def test_console_scripts_are_installed(script: str) -> None:
    done = subprocess.run(
        [str(BIN / script), "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Gatehouse" in done.stdout
