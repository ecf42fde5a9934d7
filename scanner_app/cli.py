"""``gatehouse-scanner``: the scanner's command line, and with no command, the desktop app.

Start-up time matters for the app (a gate screen in under 2 s), so this module imports only
click and the paths at first; each command imports what it needs (OpenCV, the sync engine...)
when it runs.
"""

from __future__ import annotations

import time

# Taken first, before any import: the app's ``--ready-probe`` measures from here.
STARTED_AT = time.perf_counter()

import socket  # noqa: E402 - after the start time on purpose
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

import click  # noqa: E402

from scanner_app.core import paths  # noqa: E402
from scanner_app.core.paths import ENV_VAR  # noqa: E402
from scanner_app.core.sync import lab_mode  # noqa: E402
from shared.domain import Direction  # noqa: E402

if TYPE_CHECKING:
    from scanner_app.core.decoding import QrDecoder
    from scanner_app.core.gate import GateVerdict
    from scanner_app.core.session import ScanSession, VerdictPrinter
    from scanner_app.core.sighting import CodeSighting
    from scanner_app.core.store import LocalStore


def _decoder(name: str) -> QrDecoder:
    from scanner_app.core.decoding import DecoderUnavailable, create_decoder  # noqa: PLC0415

    try:
        return create_decoder(name)
    except DecoderUnavailable as error:
        raise click.ClickException(str(error)) from error


class _DecoderChoice(click.ParamType[str]):
    """``click.Choice`` over the decoding backends, loaded only when a command parses or shows
    help (the decoding module brings OpenCV in)."""

    name = "decoder"

    @staticmethod
    def _choice() -> click.Choice[str]:
        from scanner_app.core.decoding import BACKENDS  # noqa: PLC0415 - see the class

        return click.Choice(BACKENDS)

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str | None:
        return self._choice().get_metavar(param, ctx)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        return str(self._choice().convert(value, param, ctx))


class _ResolvedDefaultOption(click.Option):
    """Shows a callable default's value in the help (click would print "(dynamic)")."""

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        return super().get_default(ctx, call=True)


def _default_backend() -> str:
    from scanner_app.core.decoding import DEFAULT_BACKEND  # noqa: PLC0415 - see _DecoderChoice

    return DEFAULT_BACKEND


_decoder_option = click.option(
    "--decoder",
    cls=_ResolvedDefaultOption,
    type=_DecoderChoice(),
    default=_default_backend,
    show_default=True,
    help="QR decoding library.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.version_option(package_name="gatehouse")
@click.option(
    "--demo",
    "demo_mode",
    is_flag=True,
    help="Open the app on a fresh demo event with demo tickets (no server needed).",
)
@click.option(
    "--data-dir",
    "app_data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the app's data, when no command is given (with --demo: the demo's folder).",
)
@click.option("--ready-probe", is_flag=True, hidden=True)
@click.option(
    "--insecure-http-for-lab",
    "insecure_http",
    is_flag=True,
    help=f"LAB ONLY: accept plain http:// servers on the network (or set {lab_mode.ENV_VAR}=1). "
    "Codes and the device token then cross the network in clear.",
)
@click.option(
    "--self-test",
    is_flag=True,
    help="Check this installation without a screen or a server; exit 1 on a failure.",
)
@click.pass_context
def main(  # noqa: PLR0917 - click passes one argument per option
    ctx: click.Context,
    demo_mode: bool,
    app_data_dir: Path | None,
    ready_probe: bool,
    insecure_http: bool,
    self_test: bool,
) -> None:
    """Gatehouse scanner: reads ticket QR codes at the gate and decides who gets in.

    Without a command, opens the gate app on this scanner's data (--demo: on a demo event).
    """
    if insecure_http:
        lab_mode.allow_insecure_http()
    if lab_mode.insecure_http_allowed():
        click.secho(f"WARNING: {lab_mode.WARNING}", fg="red", bold=True, err=True)
    if ctx.invoked_subcommand is not None:
        return
    if self_test:
        from scanner_app.ui.selftest import run_self_test  # noqa: PLC0415 - only when asked

        ctx.exit(run_self_test())
    from scanner_app.ui.app import main as run_app  # noqa: PLC0415 - Qt only for the app

    argv = []
    if demo_mode:
        argv.append("--demo")
    if ready_probe:
        argv.append("--ready-probe")
    if app_data_dir is not None:
        argv += ["--data-dir", str(app_data_dir)]
    ctx.exit(run_app(argv, started_at=STARTED_AT))


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
    from scanner_app.core.demo import run_demo  # noqa: PLC0415 - commands import what they use

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
    from scanner_app.core.capture import CaptureError, codes_in_image  # noqa: PLC0415

    reader = _decoder(decoder)
    failed = False
    for path in images:
        try:
            texts = codes_in_image(path, reader)
        except CaptureError:
            click.echo(f"{path}: not an image this program can read", err=True)
            failed = True
            continue
        if not texts:
            click.echo(f"{path}: no QR code found", err=True)
            failed = True
        for text in texts:
            click.echo(f"{path}: {text}")
    sys.exit(1 if failed else 0)


# --- the device: enroll, sync, scan, status ----------------------------------------------------

_data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Folder of the scanner's data (default: the user data folder, or ${ENV_VAR}).",
)


def _open_store(data_dir: Path | None) -> LocalStore:
    from scanner_app.core.store import LocalStore, StoreError  # noqa: PLC0415

    try:
        return LocalStore.open(paths.data_dir(data_dir))
    except StoreError as error:
        raise click.ClickException(str(error)) from error


@main.command()
@click.option("--server", "server_url", required=True, help="The sync server's URL.")
@click.option("--code", required=True, help="The one-time enrollment code from a manager.")
@click.option(
    "--name", "device_name", default=socket.gethostname(), show_default=True, help="Device name."
)
@_data_dir_option
def enroll(server_url: str, code: str, device_name: str, data_dir: Path | None) -> None:
    """Enroll this scanner for a gate with a code from a manager, then fetch its tickets."""
    from scanner_app.core.sync import engine as sync_engine  # noqa: PLC0415
    from scanner_app.core.sync.client import RequestRefused, SyncError  # noqa: PLC0415

    store = _open_store(data_dir)
    try:
        enrollment = sync_engine.enroll(store, server_url, code, device_name)
    except RequestRefused as error:
        raise click.ClickException(error.detail or str(error)) from error
    except SyncError as error:
        raise click.ClickException(str(error)) from error
    click.echo(
        f"Enrolled as {enrollment.name!r} at gate {enrollment.gate} "
        f"(device {enrollment.device_id})."
    )
    _sync_now(store)


def _sync_now(store: LocalStore) -> bool:
    from scanner_app.core.sync.engine import NotEnrolledForSync, SyncBusy, SyncEngine  # noqa: PLC0415

    engine = SyncEngine(store, lock_timeout_seconds=30.0)
    try:
        report = engine.sync_once()
    except (SyncBusy, NotEnrolledForSync) as error:
        raise click.ClickException(str(error)) from error
    status = engine.status()
    click.echo(
        f"Sync: {report.uploaded} scans uploaded, {report.tickets} ticket changes and "
        f"{report.admissions} admissions at other gates received, {report.new_conflicts} new "
        f"conflicts; {status.queued} scans still queued."
    )
    for problem in report.errors:
        click.echo(f"Sync stopped: {problem}", err=True)
    return report.ok


@main.command()
@_data_dir_option
def sync(data_dir: Path | None) -> None:
    """Upload queued scans and download what changed, once. Exits 1 when the server could not
    be reached (queued scans stay queued)."""
    store = _open_store(data_dir)
    sys.exit(0 if _sync_now(store) else 1)


@main.command()
@_data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(data_dir: Path | None, as_json: bool) -> None:
    """Show the device, its event, the link to the server and what is waiting to be sent."""
    import msgspec  # noqa: PLC0415

    from scanner_app.core.session import device_status  # noqa: PLC0415

    store = _open_store(data_dir)
    report = device_status(store)
    if as_json:
        click.echo(msgspec.json.encode(report).decode())
        return
    for label, value in report.lines():
        click.echo(f"{label:>16}: {value}")


@main.command()
@click.option(
    "--source",
    required=True,
    help="Camera number or device, video file, image or folder of images; '-' reads code "
    "texts from standard input, one per line (as a handheld scanner types them).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON verdict per line.")
@click.option(
    "--direction",
    type=click.Choice([d.value for d in Direction]),
    default=None,
    help="Entry or exit (default: the gate's setting).",
)
@click.option("--offline", is_flag=True, help="Decide on this device only; don't ask the server.")
@click.option("--no-sync", is_flag=True, help="Don't sync in the background while scanning.")
@click.option("--paced", is_flag=True, help="Play files at their frame rate, like a camera.")
@click.option(
    "--no-peers", is_flag=True, help="Don't tell the other gates (peer sync off for this run)."
)
@click.option(
    "--peer-port",
    type=click.IntRange(1, 65_535),
    default=None,
    help="The port peer sync listens on (default: the gate's setting).",
)
@click.option(
    "--peer-host",
    default="0.0.0.0",  # noqa: S104 - the venue network's gates must reach it
    show_default=True,
    help="The address peer sync listens on.",
)
@click.option(
    "--peer",
    "static_peers",
    multiple=True,
    metavar="HOST:PORT",
    help="Another gate to talk to without discovery (repeat for more).",
)
@click.option(
    "--no-discover", is_flag=True, help="Don't look for other gates by mDNS (use --peer)."
)
@click.option("--peer-status-every", type=float, default=None, hidden=True)
@_decoder_option
@_data_dir_option
def scan(  # noqa: PLR0917 - click passes one argument per option
    source: str,
    as_json: bool,
    direction: str | None,
    offline: bool,
    no_sync: bool,
    paced: bool,
    no_peers: bool,
    peer_port: int | None,
    peer_host: str,
    static_peers: tuple[str, ...],
    no_discover: bool,
    peer_status_every: float | None,
    decoder: str,
    data_dir: Path | None,
) -> None:
    """Scan codes from SOURCE and print a verdict for each. Every verdict is recorded (and
    queued for the server) before it is printed. Stops at the end of a file, or on Ctrl-C.

    While scanning, the gate tells the other gates of its event each admission and exit over
    the local network, and hears theirs (peer sync, when the server certified this device)."""
    from scanner_app.core.capture import CaptureError  # noqa: PLC0415
    from scanner_app.core.session import PeerOptions, ScanSession  # noqa: PLC0415
    from scanner_app.core.store import StoreError  # noqa: PLC0415
    from scanner_app.core.store.state import parse_peer_address  # noqa: PLC0415

    for text in static_peers:
        if parse_peer_address(text) is None:
            raise click.BadParameter(f"{text!r} is not HOST:PORT", param_hint="--peer")
    store = _open_store(data_dir)
    try:
        session = ScanSession.open(
            store,
            online=not offline,
            background_sync=not no_sync,
            direction=Direction(direction) if direction else None,
            peers=PeerOptions(
                enabled=False if no_peers else None,
                port=peer_port,
                static_peers=static_peers or None,
                discover=False if no_discover else None,
                listen_host=peer_host,
            ),
        )
    except StoreError as error:
        raise click.ClickException(str(error)) from error
    printer = _verdict_printer(as_json)
    reporter = _PeerReporter(session, peer_status_every) if peer_status_every is not None else None
    try:
        if source == "-":
            session.scan_lines(sys.stdin, printer)
        else:
            session.scan_source(source, _decoder(decoder), printer, paced=paced)
    except CaptureError as error:
        raise click.ClickException(str(error)) from error
    except KeyboardInterrupt:
        pass
    finally:
        if reporter is not None:
            reporter.stop()
        session.close()


class _PeerReporter:
    """``--peer-status-every``: a JSON line ``{"peers": ...}`` on stdout every few seconds
    with how many gates the node hears and what it refused (for tests and monitoring)."""

    def __init__(self, session: ScanSession, every: float) -> None:
        import threading  # noqa: PLC0415

        self._session = session
        self._every = max(0.05, every)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peer-status", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import msgspec  # noqa: PLC0415

        while not self._stop.wait(self._every):
            node = self._session.node
            line = {
                "peers": {
                    "heard": self._session.peers_heard(),
                    "stored": node.records_stored if node is not None else 0,
                    "refusals": dict(node.refusals()) if node is not None else {},
                }
            }
            click.echo(msgspec.json.encode(line).decode())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def _verdict_printer(as_json: bool) -> VerdictPrinter:
    from scanner_app.core.session import verdict_json  # noqa: PLC0415

    def show(verdict: GateVerdict, sighting: CodeSighting | None) -> None:
        if as_json:
            click.echo(verdict_json(verdict, sighting))
            return
        colour = "green" if verdict.admitted else "red"
        if verdict.admitted and (verdict.on_signature or verdict.reentry):
            colour = "yellow"
        word = click.style(f"{verdict.verdict.result.upper():<9}", fg=colour, bold=True)
        extra = " (repeat)" if verdict.repeat else ""
        click.echo(f"{word} {verdict.sentence}{extra}")

    return show
