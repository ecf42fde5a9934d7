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
from scanner_app.core.sync import lab_mode
from scanner_app.core.synthetic_frames import render_qr
from shared.domain import VerdictReason
from shared.enrollment_link import INSECURE_SERVER_SENTENCE

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


def test_enroll_refuses_a_plain_http_server_with_a_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(lab_mode.ENV_VAR, "0")
    arguments = ["enroll", "--server", "http://evil.example", "--code", "ENR-7KQ2-M9XD-4WPA"]
    result = CliRunner().invoke(main, [*arguments, "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert INSECURE_SERVER_SENTENCE in result.output
    assert "WARNING" not in result.output


def test_lab_mode_warns_on_every_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(lab_mode.ENV_VAR, "0")  # restored after the test, whatever the CLI sets
    flagged = CliRunner().invoke(
        main, ["--insecure-http-for-lab", "status", "--data-dir", str(tmp_path)]
    )
    assert flagged.exit_code == 0, flagged.output
    assert f"WARNING: {lab_mode.WARNING}" in flagged.output
    assert lab_mode.insecure_http_allowed()

    monkeypatch.setenv(lab_mode.ENV_VAR, "1")
    from_env = CliRunner().invoke(main, ["status", "--data-dir", str(tmp_path)])
    assert f"WARNING: {lab_mode.WARNING}" in from_env.output
