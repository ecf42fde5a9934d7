"""``gatehouse-scanner``: the scanner's command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import cv2
import numpy as np

from scanner_app.core.decoding import (
    BACKENDS,
    DEFAULT_BACKEND,
    DecoderUnavailable,
    QrDecoder,
    create_decoder,
)
from scanner_app.core.demo import run_demo


def _decoder(name: str) -> QrDecoder:
    try:
        return create_decoder(name)
    except DecoderUnavailable as error:
        raise click.ClickException(str(error)) from error


_decoder_option = click.option(
    "--decoder",
    type=click.Choice(BACKENDS),
    default=DEFAULT_BACKEND,
    show_default=True,
    help="QR decoding library.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gatehouse")
def main() -> None:
    """Gatehouse scanner: reads ticket QR codes at the gate and decides who gets in."""


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Folder for the demo's QR codes and camera frames.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed for the camera frames.")
@_decoder_option
def demo(out: Path, seed: int, decoder: str) -> None:
    """Issue demo tickets, film them with a simulated gate camera, read and check them.

    Needs no server and writes nothing outside --out.
    """
    reader = _decoder(decoder)
    click.echo(f"Gatehouse demo: fresh event and keys, decoder {reader.name}, frames 1280x720.\n")
    click.echo(f"  {'ticket':<38} {'read in':>8}  {'verdict':<9} why")
    try:
        for scan in run_demo(reader, out, seed):
            label = scan.ticket.label
            took = f"{scan.decode_ms:.1f} ms"
            if scan.verdict is None:
                click.echo(
                    f"  {label:<38} {took:>8}  {'NO CODE':<9} No QR code found in the frame."
                )
                continue
            if scan.read_text != scan.ticket.code:
                click.echo(f"  {label:<38} {took:>8}  misread: the decoder returned other text")
            colour = "green" if scan.verdict.reason is None else "red"
            word = click.style(f"{scan.verdict.result.upper():<9}", fg=colour, bold=True)
            why = scan.verdict.reason.sentence if scan.verdict.reason else ""
            click.echo(f"  {label:<38} {took:>8}  {word} {why}")
    except OSError as error:
        raise click.ClickException(f"cannot write the demo files: {error}") from error
    click.echo(f"\nQR codes (*-code.png) and camera frames (*-camera.jpg) are in {out.resolve()}/")


@main.command()
@click.argument(
    "images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@_decoder_option
def decode(images: tuple[Path, ...], decoder: str) -> None:
    """Print the text of every QR code found in IMAGES (PNG, JPEG, ...).

    Exits with status 1 when an image cannot be read or holds no QR code.
    """
    reader = _decoder(decoder)
    failed = False
    for path in images:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None or frame.dtype != np.uint8:
            click.echo(f"{path}: not an image this program can read", err=True)
            failed = True
            continue
        symbols = reader.decode(frame.astype(np.uint8, copy=False))
        if not symbols:
            click.echo(f"{path}: no QR code found", err=True)
            failed = True
        for symbol in symbols:
            click.echo(f"{path}: {symbol.text}")
    sys.exit(1 if failed else 0)
