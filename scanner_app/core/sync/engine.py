"""The sync engine: keeps one scanner and the server in step, whenever there is a link.

One sync (``sync_once``) does, in this order:

0. ``POST /v1/devices/token`` when the access token is past half its life (by the server's
   clock, through the measured offset): the refresh token is spent for a new pair, which goes
   to the vault before anything else happens. A request refused with ``token_expired`` (the
   gate was offline longer than the token lives) renews once and starts the sync over — the
   queue waits and nothing in it is lost. A renewal whose answer is lost sends the same refresh
   token again next time; the server answers that too (docs/sync-protocol.md);
1. ``GET /v1/devices/me`` — the device still counts; new keys and event details; the clock
   offset (server time against the midpoint of the request);
1b. asks about online questions a crash left unanswered (``pending_online``): a scan the
   server recorded is logged here too, and an admitted entry among them — its verdict was
   never shown — is undone with the reason ``NEVER_SHOWN`` (``_resolve_online``);
2. uploads queued annulments of scans the server has, then queued scans in batches of up to
   1,000, then the annulments of those. The server's answer is stored (its verdict, conflicts
   it found, earlier scans it reclassified) and the entries leave the queue in the same
   transaction;
2b. ``POST /v1/devices/me/heartbeat`` — what is still queued (so, after the upload), the
   oldest queued scan's time, the clock offset, the app version, the check-in setup version
   held, the last sync, the sync interval, lab mode: what managers see on their Devices page.
   When the queue is not empty it is also sent once before the upload (after step 1), so a
   gate back from hours offline shows at once what it brought back while the upload runs —
   sent only after, it would always read 0; nothing queued, no extra request. Also sent when
   the server stopped the upload with an answer (429, 5xx), so a gate back from hours offline
   shows what it still has to upload. Best effort: a heartbeat that fails
   (an older server without it answers 404) is logged and the sync goes on; nothing depends
   on it, and the next cycle sends a fresh one;
3. downloads the changes feed from the saved cursor, saying which check-in setup version it has
   (``setup_version``); each page is applied and its cursor saved in one transaction, with the
   event's check-in setup when the page carries one (it replaces the stored one as a whole), so
   an interrupted download resumes where it stopped and applies nothing twice.

At most one sync runs at a time — in this process (a lock) and on this data folder (a lock
file, so ``gatehouse-scanner sync`` beside a running app waits its turn or says it is busy).

``start`` repeats it in a background thread until ``stop``: every ``sync_interval_seconds``
while all is well; after a failure, after a backoff that doubles up to a minute (with jitter, so
a hall of scanners does not come back in step) or after the server's ``Retry-After``; at once
when ``wake`` is called (a scan was queued, online validation failed). ``online_check`` gives
the gate the server's verdict with a short timeout, and flips the engine offline on failure so
the gate decides offline at once for the next person instead of waiting for a timeout every
time.

Why its own thread, not a job on the app's queues (``scanner_app.ui.jobs``): the sync loop is
not a unit of work with a result but a loop that runs for the whole session with its own pacing
(interval, backoff, wake-ups) and its own stop; the command line runs it without Qt, and this
core does not import Qt. The app reads its state (``status``) in a job on its status queue.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import filelock
import msgspec
from sqlalchemy import Connection

from scanner_app.core.checkin import setup_problem
from scanner_app.core.store import LocalStore
from scanner_app.core.store.cache import AppliedChanges, apply_changes
from scanner_app.core.store.device_token import DeviceCredentials
from scanner_app.core.store.peers import (
    load_peer_credentials,
    revoked_peers,
    save_peer_credentials,
    save_revoked_peers,
)
from scanner_app.core.store.scans import (
    NEVER_SHOWN,
    QueuedScan,
    annul,
    conflict_count,
    drop_from_queue,
    end_online,
    note_failed_attempt,
    queue_length,
    queue_summary,
    queued_annulments,
    queued_scans,
    record_online_verdict,
    record_outcomes,
    refuse_queued,
    requeue_own_scans,
    unresolved_online,
)
from scanner_app.core.store.sealing import Sealer
from scanner_app.core.store.setup import load_setup, save_setup
from scanner_app.core.store.state import (
    Enrollment,
    SyncState,
    load_enrollment,
    load_event,
    load_sync_state,
    merge_keys,
    save_enrollment,
    save_event,
    save_sync_state,
)
from scanner_app.core.sync.client import (
    DeviceRejected,
    InsecureServer,
    RequestRefused,
    ServerClient,
    ServerUnavailable,
    SyncError,
)
from scanner_app.core.sync.lab_mode import insecure_http_allowed
from shared import wire
from shared.backoff import backoff_delay
from shared.clock import Clock, SystemClock
from shared.peers import Credentials, DeviceKey, read_certificate, succession_message
from shared.wire import MAX_CLOCK_OFFSET_MS, MAX_SCAN_BATCH

log = logging.getLogger(__name__)

FEED_PAGE = 10_000
#: The distribution whose version the heartbeat reports.
PACKAGE = "gatehouse"
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
LOCK_FILE = "sync.lock"
#: What the status says when the server refuses the token without saying the device was
#: revoked (its secrets changed, or it was restored from a backup and the token or the refresh
#: token is not one it knows): the gate goes on offline, and enrolling again is the way back.
TOKEN_REFUSED = (
    "The server no longer accepts this gate's token (its keys changed, or it was restored from "  # noqa: S105 - a sentence
    "a backup). Scans on this computer are kept. Enroll the gate again to continue."
)
#: ... and when it says it does not know the device at all (``device_unknown``: restored from a
#: backup taken before this gate was enrolled).
DEVICE_UNKNOWN = (
    "This gate is not known to the server any more (the server was restored from a backup or "
    "its keys changed). Scans on this computer are kept. Enroll the gate again to continue."
)
DEVICE_UNKNOWN_CODE = "device_unknown"
#: The 401 of an access token past its expiry: renewed with the refresh token, once a request.
TOKEN_EXPIRED_CODE = "token_expired"  # noqa: S105 - a problem code
#: The feed's answer to a cursor from before the server's database was restored from a backup.
FEED_RESET_CODE = "feed_reset"
#: The answers that start the feed over: ``invalid_cursor`` (a cursor the server cannot read)
#: and ``feed_reset``, which also queues this gate's scans again.
FEED_RESET_CODES = frozenset({"invalid_cursor", FEED_RESET_CODE})

ClientFactory = Callable[[str, str | None], ServerClient]
#: The field of ``EnrollRequest`` a server older than peer sync refuses.
PEER_KEY_FIELD = "peer_public_key"
#: ... and the one a server older than succession refuses.
SUCCESSION_FIELD = "succeeds"


class PeerLink(Protocol):
    """What the sync engine needs of the gate's peer node (``scanner_app.core.peers``): to
    reload whom to trust after a sync brought a certificate or revocations, and how many
    other gates it hears (for the heartbeat)."""

    def reload_trust(self) -> None: ...

    def peers_heard(self) -> int: ...


def refusal_sentence(error: DeviceRejected) -> str:
    """What the status says of a 401 that is not ``device_revoked``: never "switched off", always
    that the scans are kept and the way back (enroll again)."""
    return DEVICE_UNKNOWN if error.code == DEVICE_UNKNOWN_CODE else TOKEN_REFUSED


def _default_client(url: str, token: str | None) -> ServerClient:
    return ServerClient(url, token)


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """What the status bar shows."""

    online: bool
    #: Why the device is offline (a sentence), None when online or never tried.
    offline_reason: str | None
    queued: int
    last_sync_at: datetime | None
    last_contact_at: datetime | None
    next_retry_at: datetime | None
    clock_offset_ms: int
    conflicts: int
    revoked: bool
    syncing: bool = False


@dataclass(slots=True)
class SyncReport:
    """What one sync did."""

    uploaded: int = 0
    refused: int = 0
    #: Online verdicts a crash interrupted that the server turned out to have recorded.
    recovered: int = 0
    #: Of those, admissions undone because their verdict was never shown (``NEVER_SHOWN``).
    never_shown: int = 0
    annulments: int = 0
    new_conflicts: int = 0
    tickets: int = 0
    admissions: int = 0
    new_keys: int = 0
    pages: int = 0
    #: The version of a check-in setup this sync stored (None: none came).
    new_setup: int | None = None
    #: Times the server answered that the feed starts over (a restored database).
    feed_resets: int = 0
    #: Scans made here queued again because the server was restored from a backup.
    requeued: int = 0
    #: The heartbeat went through (False: it failed, or the sync stopped before it).
    heartbeat_sent: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def apply_page(
    conn: Connection, sealer: Sealer, page: wire.ChangesPage, *, event_id: uuid.UUID, now: datetime
) -> tuple[AppliedChanges, wire.CheckinSetup | None]:
    """Apply one page of the feed in the caller's transaction: its changes and, when it carries
    one, the event's check-in setup, which replaces the stored one as a whole. Returns what was
    applied and the setup stored (None: none came, or it could not be this device's — for
    another event, or with no usable time zone: the old one stays, and the status says the
    lists may be out of date since its version is not the server's)."""
    applied = apply_changes(conn, sealer, page.changes, now)
    setup = page.checkin_setup
    if setup is None:
        return applied, None
    problem = setup_problem(setup, event_id)
    if problem is not None:
        log.warning("check-in setup %s not stored: %s", setup.version, problem)
        return applied, None
    save_setup(conn, setup, now)
    return applied, setup


class SyncBusy(SyncError):
    """Another sync of this data folder is running."""


class NotEnrolledForSync(SyncError):
    """The device has no server to sync with (not enrolled, or a standalone demo device)."""


def enroll(
    store: LocalStore,
    server_url: str,
    code: str,
    device_name: str,
    *,
    clock: Clock | None = None,
    client_factory: ClientFactory = _default_client,
) -> Enrollment:
    """Redeem an enrollment code and make this store that device.

    Raises ``RequestRefused`` for a code the server does not accept (its ``detail`` says why),
    ``ServerUnavailable`` when the server cannot be reached, ``InsecureServer`` (before any
    connection) for a plain-http server off this computer.
    """
    clock = clock or SystemClock()
    server_url = server_url.strip().rstrip("/")
    code = code.strip()
    # The device's own key for its peers: only the public half leaves the device.
    peer_key = DeviceKey.generate()
    with store.read() as conn:
        previous = load_enrollment(conn)
        succession = _succession(
            previous, load_peer_credentials(conn, store.sealer), peer_key.public_key, code
        )
    with client_factory(server_url, None) as client:
        enrolled, sent = _redeem(
            client,
            clock,
            code=code,
            device_name=device_name,
            peer_key=peer_key,
            succession=succession,
        )
        received = clock.now()
    enrollment = Enrollment(
        device_id=enrolled.device_id,
        name=device_name,
        server_url=server_url,
        tenant_id=enrolled.tenant_id,
        event_id=enrolled.event_id,
        gate=enrolled.gate,
        enrolled_at=received,
    )
    # The tokens go to the vault, never into the database; first, so that a vault that cannot
    # take them (a locked keyring, a read-only folder) fails the enrollment before anything else
    # is written.
    credentials = DeviceCredentials.issued(
        enrolled.device_token,
        enrolled.refresh_token,
        enrolled.device_token_expires_at,
        enrolled.server_time,
    )
    store.vault.save(credentials.encode())
    with store.write() as conn:
        save_enrollment(conn, enrollment)
        save_event(conn, enrolled.event)
        merge_keys(conn, enrolled.keys, received)
        if enrolled.peer is not None:
            save_peer_credentials(
                conn,
                store.sealer,
                _credentials(peer_key, enrolled.peer),
                enrolled.peer.expires_at,
            )
        save_sync_state(
            conn,
            SyncState(
                last_contact_at=received,
                clock_offset_ms=_offset_ms(enrolled.server_time, sent, received),
            ),
        )
        if previous is not None and enrolled.succeeds == previous.device_id:
            # The server took the new device as this computer's earlier one: everything made
            # here goes up again under it — what a restored server lacks is recorded, what it
            # has is answered as a repeat, and undos it lost are made again.
            requeued = requeue_own_scans(conn, previous.device_id, received)
            log.info(
                "enrolled again as the same gate: %d scans made here queued to go up again",
                requeued,
            )
    return enrollment


def _succession(
    previous: Enrollment | None,
    credentials: Credentials | None,
    peer_public_key: bytes,
    code: str,
) -> wire.Succession | None:
    """The claim that the new enrollment is the device this computer was (``wire.Succession``),
    signed with that device's peer key; None without an earlier enrollment or its key (enrolled
    before peer sync, or the key no longer opens)."""
    if previous is None or credentials is None:
        return None
    certificate = read_certificate(credentials.certificate)
    if certificate is None or certificate.device_id != previous.device_id:
        return None
    message = succession_message(previous.device_id, peer_public_key, code)
    return wire.Succession(
        device_id=previous.device_id, signature=credentials.device_key.sign(message)
    )


def _redeem(
    client: ServerClient,
    clock: Clock,
    *,
    code: str,
    device_name: str,
    peer_key: DeviceKey,
    succession: wire.Succession | None,
) -> tuple[wire.EnrolledDevice, datetime]:
    """Enroll, falling back for older servers: one that refuses ``succeeds`` is asked again
    without it (the gate starts as a new device), one that refuses ``peer_public_key`` (older
    than peer sync; it has not spent the code) without a peer key. Returns the answer and when
    its request was sent."""
    sent = clock.now()
    try:
        return client.enroll(code, device_name, peer_key.public_key, succession), sent
    except RequestRefused as error:
        if succession is not None and error.names_field(SUCCESSION_FIELD):
            log.info("the server does not know succession: enrolling as a new gate")
            return _redeem(
                client,
                clock,
                code=code,
                device_name=device_name,
                peer_key=peer_key,
                succession=None,
            )
        if not error.names_field(PEER_KEY_FIELD):
            raise
    log.info("the server does not know peer sync: enrolling without a peer key")
    sent = clock.now()
    return client.enroll(code, device_name), sent


def _credentials(key: DeviceKey, peer: wire.PeerCredentials) -> Credentials:
    return Credentials(
        device_key=key,
        certificate=peer.certificate,
        issuer_public_key=peer.issuer_public_key,
        event_key=peer.event_key,
    )


@functools.cache
def app_version() -> str | None:
    """This scanner's version, from its package's metadata (None when not installed as one)."""
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    # The wire takes one line of at most 64 characters (a local build's may be longer).
    return "".join(c for c in version if c.isprintable())[: wire.APP_VERSION_MAX] or None


def _device_time(when: datetime | None) -> datetime | None:
    """``when`` if the wire takes it (a clock that lost its setting may read anything)."""
    if when is None or not wire.DEVICE_TIME_FROM <= when < wire.DEVICE_TIME_UNTIL:
        return None
    return when


def _offset_ms(server_time: datetime, sent: datetime, received: datetime) -> int:
    midpoint = sent + (received - sent) / 2
    return round((server_time - midpoint).total_seconds() * 1000)


class SyncEngine:
    """Syncs one store with its server. Share one instance; all methods are thread-safe."""

    def __init__(
        self,
        store: LocalStore,
        *,
        clock: Clock | None = None,
        client_factory: ClientFactory = _default_client,
        on_status: Callable[[SyncStatus], None] | None = None,
        on_data_changed: Callable[[], None] | None = None,
        interval_seconds: float = 5.0,
        online_timeout_seconds: float = 0.8,
        lock_timeout_seconds: float = 0.0,
    ) -> None:
        self._store = store
        self._clock = clock or SystemClock()
        self._client_factory = client_factory
        self._on_status = on_status
        self._on_data_changed = on_data_changed
        self.interval_seconds = interval_seconds
        self.online_timeout_seconds = online_timeout_seconds
        self._lock_timeout = lock_timeout_seconds
        self._sync_lock = threading.Lock()
        self._file_lock = filelock.FileLock(str(Path(store.path).parent / LOCK_FILE))
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._validate_client: ServerClient | None = None
        self._validate_lock = threading.Lock()
        self._syncing = False
        self._started_at = self._clock.now()
        with store.read() as conn:
            self._enrollment = load_enrollment(conn)
            self._state = load_sync_state(conn)
        self._credentials = (
            DeviceCredentials.decode(store.vault.load()) if self._enrollment is not None else None
        )
        #: Validation clients made with an access token since renewed: closed at the next
        #: renewal or at ``stop`` (an online check may still be using the last one).
        self._retired_clients: list[ServerClient] = []
        self._peer_link: PeerLink | None = None

    def set_peer_link(self, link: PeerLink | None) -> None:
        """The gate's peer node: told to reload its trust after each check-in that brought a
        certificate or revocations; asked how many gates it hears for the heartbeat."""
        self._peer_link = link

    def set_data_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after a sync brought new keys, tickets, admissions or event
        details (the gate reloads what it keeps in memory)."""
        self._on_data_changed = listener

    # --- status -----------------------------------------------------------------------------

    @property
    def enrollment(self) -> Enrollment | None:
        return self._enrollment

    def status(self) -> SyncStatus:
        with self._store.read() as conn:
            queued = queue_length(conn)
            conflict_total = conflict_count(conn)
        state = self._state
        return SyncStatus(
            online=self.is_online(),
            offline_reason=state.offline_reason,
            queued=queued,
            last_sync_at=state.last_sync_at,
            last_contact_at=state.last_contact_at,
            next_retry_at=state.next_retry_at,
            clock_offset_ms=state.clock_offset_ms,
            conflicts=conflict_total,
            revoked=state.revoked,
            syncing=self._syncing,
        )

    def is_online(self) -> bool:
        """True when the last request reached the server and nothing has failed since."""
        state = self._state
        return (
            self._has_server()
            and not state.revoked
            and state.offline_reason is None
            and state.last_contact_at is not None
        )

    def _has_server(self) -> bool:
        return self._enrollment is not None and bool(self._enrollment.server_url)

    def _emit(self) -> None:
        if self._on_status is not None:
            try:
                self._on_status(self.status())
            except Exception:  # a listener's bug must not stop syncing
                log.exception("status listener failed")

    def _save_state(self, state: SyncState) -> None:
        with self._store.write() as conn:
            save_sync_state(conn, state)
        self._state = state

    # --- online validation ---------------------------------------------------------------------

    def online_check(self, request: wire.ValidateRequest) -> wire.Verdict | None:
        """The server's verdict, or None when it cannot give one in time (the gate then
        decides offline). A failure marks the engine offline and wakes the sync loop, which
        finds out when the server is back."""
        if not self.is_online() or self._enrollment is None:
            return None
        try:
            client = self._validation_client()
            return client.validate(request, timeout=self.online_timeout_seconds)
        except InsecureServer as error:
            self._went_offline(str(error), None)
        except ServerUnavailable as error:
            self._went_offline(error.reason, error.retry_after)
        except DeviceRejected as error:
            if self._renewable(error):  # the sync loop renews it, woken now
                self._went_offline("The scanner's token has expired; renewing it.", None)
            else:
                self._rejected(error)
        except RequestRefused as error:
            log.warning("online validation refused: %s", error)
        return None

    # --- the device's tokens ----------------------------------------------------------------------

    def _access_token(self) -> str | None:
        return self._credentials.access if self._credentials is not None else None

    def _renewal_due(self) -> bool:
        """The access token is past half its life, by the server's clock."""
        credentials = self._credentials
        if credentials is None or credentials.refresh is None or credentials.renew_at is None:
            return False
        server_now = self._clock.now() + timedelta(milliseconds=self._state.clock_offset_ms)
        return server_now >= credentials.renew_at

    def _renewable(self, error: DeviceRejected) -> bool:
        """A 401 that a renewal answers: the access token expired and there is a refresh token."""
        return (
            error.code == TOKEN_EXPIRED_CODE
            and self._credentials is not None
            and self._credentials.refresh is not None
        )

    def _renew(self, client: ServerClient) -> ServerClient:
        """Spend the refresh token; keep the new pair in the vault (before using it: a crash
        after this leaves the vault with tokens the server knows); answer a client with the new
        access token (``client`` is closed). Raises the client's errors: a refusal of the
        refresh token is a ``DeviceRejected`` like any 401."""
        assert self._credentials is not None
        assert self._credentials.refresh is not None
        assert self._enrollment is not None
        tokens = client.renew(self._credentials.refresh)
        credentials = DeviceCredentials.issued(
            tokens.device_token,
            tokens.refresh_token,
            tokens.device_token_expires_at,
            tokens.server_time,
        )
        self._store.vault.save(credentials.encode())
        self._credentials = credentials
        with self._validate_lock:
            for retired in self._retired_clients:
                retired.close()
            self._retired_clients = [self._validate_client] if self._validate_client else []
            self._validate_client = None
        log.info("the device's tokens were renewed")
        client.close()
        return self._client_factory(self._enrollment.server_url, credentials.access)

    def _renew_early(self, client: ServerClient) -> ServerClient:
        """Renew a token past half its life. A refusal that is not ``device_revoked`` (a server
        restored from a backup does not know the refresh token) leaves the sync to go on with
        the access token while it lasts: the server then says what it knows (``feed_reset``:
        this gate's scans go up again before it has to be enrolled again; ``device_unknown``)."""
        try:
            return self._renew(client)
        except DeviceRejected as error:
            if error.revoked:
                raise
            log.warning("renewal refused (%s); going on with the access token", error.code)
            return client

    def _validation_client(self) -> ServerClient:
        with self._validate_lock:
            if self._validate_client is None:
                assert self._enrollment is not None
                self._validate_client = self._client_factory(
                    self._enrollment.server_url, self._access_token()
                )
            return self._validate_client

    # --- one sync ---------------------------------------------------------------------------------

    def sync_once(self) -> SyncReport:
        """Upload, then download, once. Raises ``SyncBusy`` when a sync is already running,
        ``NotEnrolledForSync`` when there is no server. Network failures do not raise: they are
        in the report and the status."""
        if not self._has_server():
            raise NotEnrolledForSync(
                "This scanner has no server to sync with. Enroll it with a code first."
            )
        if not self._sync_lock.acquire(blocking=False):
            raise SyncBusy("A sync is already running.")
        try:
            try:
                self._file_lock.acquire(timeout=self._lock_timeout)
            except filelock.Timeout as error:
                raise SyncBusy(
                    "Another program is syncing this scanner's data right now."
                ) from error
            try:
                self._syncing = True
                self._emit()
                return self._sync()
            finally:
                self._syncing = False
                self._file_lock.release()
        finally:
            self._sync_lock.release()
            self._emit()

    def _sync(self) -> SyncReport:
        assert self._enrollment is not None
        report = SyncReport()
        try:
            client = self._client_factory(self._enrollment.server_url, self._access_token())
        except InsecureServer as error:
            # Enrolled at a plain-http address (before this rule, or in a lab): nothing is
            # sent; the gate goes on offline and the queue waits for an https server.
            report.errors.append(str(error))
            self._went_offline(str(error), None)
            return report
        try:
            if self._renewal_due():
                client = self._renew_early(client)
            try:
                self._exchange(client, report)
            except DeviceRejected as error:
                if not self._renewable(error):
                    raise
                # Offline for longer than the token lives: renew once, then start over (every
                # step is safe to repeat: uploads by scan id, the feed from the saved cursor).
                client = self._renew(client)
                self._exchange(client, report)
        except ServerUnavailable as error:
            report.errors.append(error.reason)
            self._went_offline(error.reason, error.retry_after)
            return report
        except DeviceRejected as error:
            report.errors.append(str(error) if error.revoked else refusal_sentence(error))
            self._rejected(error)
            return report
        except RequestRefused as error:
            # The server refuses a request it should accept (a 403 after a role change, a
            # proxy in the way): nothing this device can fix by itself; keep trying slowly.
            report.errors.append(str(error))
            self._went_offline(f"The server refused the sync: {error}", None)
            return report
        finally:
            client.close()
        now = self._clock.now()
        self._save_state(
            msgspec.structs.replace(
                self._state,
                last_sync_at=now,
                last_contact_at=now,
                offline_reason=None,
                next_retry_at=None,
                failures=0,
                revoked=False,
            )
        )
        if report.new_keys or report.tickets or report.admissions or report.new_setup is not None:
            self._data_changed()
        return report

    def _exchange(self, client: ServerClient, report: SyncReport) -> None:
        self._check_in(client, report)
        self._resolve_online(client, report)
        # Back with a queue: say so before the upload drains it (the Devices page's count).
        self._heartbeat(client, report, only_if_queued=True)
        try:
            self._upload(client, report)
        except ServerUnavailable as error:
            # The server took part of the queue and then said "later" (429 past the device's
            # scans a minute, a 5xx): what is left is what managers need to see. Not after a
            # lost connection: the heartbeat would only wait for the same timeout again.
            if error.answered:
                self._heartbeat(client, report)
            raise
        self._heartbeat(client, report)
        self._download(client, report)

    def heartbeat(self) -> wire.DeviceHeartbeat:
        """What this device tells the server about itself now (``docs/scanner.md``)."""
        state = self._state
        offset = max(-MAX_CLOCK_OFFSET_MS, min(MAX_CLOCK_OFFSET_MS, state.clock_offset_ms))
        with self._store.read() as conn:
            queued = queue_summary(conn)
            setup = load_setup(conn)
        last_sync = (
            state.last_sync_at + timedelta(milliseconds=offset)
            if state.last_sync_at is not None
            else None
        )
        return wire.DeviceHeartbeat(
            queued_scans=queued.scans,
            queued_annulments=queued.annulments,
            oldest_queued_at=_device_time(queued.oldest_scan_at),
            clock_offset_ms=offset,
            app_version=app_version(),
            setup_version=setup.version if setup is not None else None,
            last_sync_at=_device_time(last_sync),
            sync_interval_seconds=max(1, min(3600, round(self.interval_seconds))),
            lab_mode=insecure_http_allowed(),
            peers_heard=self._peers_heard(),
        )

    def _peers_heard(self) -> int | None:
        link = self._peer_link
        if link is None:
            return None  # peer sync is off on this device
        try:
            return max(0, link.peers_heard())
        except Exception:  # a report about the device must never cost the sync
            log.exception("peer count not read")
            return None

    def _heartbeat(
        self, client: ServerClient, report: SyncReport, *, only_if_queued: bool = False
    ) -> None:
        """Send the heartbeat (with ``only_if_queued``, only when something waits to be
        uploaded); a failure is noted and the sync goes on."""
        try:
            beat = self.heartbeat()
        except Exception:  # a report about the device must never cost the sync
            log.exception("heartbeat not made")
            return
        if only_if_queued and not (beat.queued_scans or beat.queued_annulments):
            return
        try:
            client.heartbeat(beat)
        except SyncError as error:
            log.info("heartbeat not sent: %s", error)
            return
        report.heartbeat_sent = True

    def _check_in(self, client: ServerClient, report: SyncReport) -> None:
        sent = self._clock.now()
        me = client.me()
        received = self._clock.now()
        offset = _offset_ms(me.server_time, sent, received)
        with self._store.write() as conn:
            new_keys = merge_keys(conn, me.keys, received)
            event_changed = load_event(conn, me.event.event_id) != me.event
            if event_changed:
                save_event(conn, me.event)
            state = msgspec.structs.replace(
                load_sync_state(conn), clock_offset_ms=offset, last_contact_at=received
            )
            save_sync_state(conn, state)
            peers_changed = self._save_peer_trust(conn, me)
        self._state = state
        report.new_keys += new_keys
        link = self._peer_link
        if peers_changed and link is not None:
            link.reload_trust()
        if new_keys or event_changed:
            self._data_changed()

    def _save_peer_trust(self, conn: Connection, me: wire.DeviceSelf) -> bool:
        """Keep the certificate and revoked devices /me names (in the check-in's transaction):
        a fresh certificate replaces the stored one (same device key); True when either
        changed what the peer node trusts."""
        changed = False
        if me.peer is not None:
            stored = load_peer_credentials(conn, self._store.sealer)
            # A device enrolled before peer sync (or by a server without it) has no key of its
            # own: the server cannot have certified one, so there is nothing to renew.
            if stored is not None and (
                stored.certificate != me.peer.certificate
                or stored.issuer_public_key != me.peer.issuer_public_key
                or stored.event_key != me.peer.event_key
            ):
                save_peer_credentials(
                    conn,
                    self._store.sealer,
                    _credentials(stored.device_key, me.peer),
                    me.peer.expires_at,
                )
                changed = True
        if me.revoked_peers is not None:
            revoked = set(me.revoked_peers)
            if revoked != set(revoked_peers(conn)):
                save_revoked_peers(conn, sorted(revoked))
                changed = True
        return changed

    def _resolve_online(self, client: ServerClient, report: SyncReport) -> None:
        """Online verdicts a crash left unanswered: if the server recorded the scan, log it
        here too; if not, forget it. Either way device and server hold the same scans.

        A question still pending was never answered here, so its verdict was never shown (the
        gate records a verdict, clearing the question in the same transaction, before it shows
        it): an admitted entry the server recorded for it let nobody in. It is logged and
        undone at once (``annul``, with ``NEVER_SHOWN`` as the reason the server keeps), so the
        ticket is free here again, and an admission shown since — this gate's, offline, which
        did not know of it — is the one that stands. A refusal or an exit is logged and stands:
        a refusal let nobody in, and an exit holds nobody in (the person has likely left
        anyway, and the server undoes only entries).

        A question asked since this engine started, and less than ten seconds old, may still
        be in flight (an online check and its offline fallback take about a second): it is
        left for the next sync."""
        assert self._enrollment is not None
        now = self._clock.now()
        cutoff = max(now - timedelta(seconds=10), min(self._started_at, now - timedelta(seconds=2)))
        with self._store.read() as conn:
            pending = unresolved_online(conn, cutoff)
        for item in pending:
            answer = client.recorded(item.scan_id)
            with self._store.write() as conn:
                if answer is None:
                    end_online(conn, item.scan_id)
                    continue
                record_online_verdict(
                    conn,
                    self._store.sealer,
                    self._enrollment,
                    scan_id=item.scan_id,
                    answer=answer,
                    code=item.code,
                    direction=item.direction,
                    device_time=item.device_time,
                )
                if annul(conn, item.scan_id, now, NEVER_SHOWN):
                    report.never_shown += 1
            report.recovered += 1

    def _upload(self, client: ServerClient, report: SyncReport) -> None:
        # Annulments of scans the server has first: a scan queued after one (the same ticket
        # admitted again once the first was undone) is then judged without it, not as its
        # conflict.
        self._upload_annulments(client, report)
        while True:
            with self._store.read() as conn:
                batch = queued_scans(conn, MAX_SCAN_BATCH)
            if not batch:
                break
            try:
                outcome = client.upload([item.upload for item in batch])
            except RequestRefused as error:
                if len(batch) == 1:
                    # This one scan will never be accepted as sent: keep it in the log with
                    # the server's reason and let the rest of the queue go.
                    with self._store.write() as conn:
                        refuse_queued(conn, batch[0].seq, error.detail or error.code)
                    report.refused += 1
                    continue
                self._upload_one_by_one(client, batch, report)
                continue
            except ServerUnavailable as error:
                with self._store.write() as conn:
                    note_failed_attempt(conn, [item.seq for item in batch], error.reason)
                raise
            with self._store.write() as conn:
                report.new_conflicts += record_outcomes(conn, outcome)
            answered = {o.scan_id for o in outcome.outcomes}
            if not answered & {item.upload.scan_id for item in batch}:
                # A server that answers none of what was sent would have us send it forever.
                raise ServerUnavailable("The server's answer to an upload named none of its scans.")
            report.uploaded += len(outcome.outcomes)
            self._emit()
        self._upload_annulments(client, report)

    def _upload_one_by_one(
        self, client: ServerClient, batch: list[QueuedScan], report: SyncReport
    ) -> None:
        """A refused batch: find the scans the server will never take, send the rest."""
        for item in batch:
            try:
                outcome = client.upload([item.upload])
            except RequestRefused as error:
                with self._store.write() as conn:
                    refuse_queued(conn, item.seq, error.detail or error.code)
                report.refused += 1
                continue
            with self._store.write() as conn:
                report.new_conflicts += record_outcomes(conn, outcome)
            report.uploaded += 1

    def _upload_annulments(self, client: ServerClient, report: SyncReport) -> None:
        with self._store.read() as conn:
            pending = queued_annulments(conn, 1000)
        for item in pending:
            try:
                client.annul(item.scan_id, item.reason)
            except RequestRefused as error:
                # Already annulled, or no longer annullable: either way nothing to retry.
                log.info("annulment of %s refused: %s", item.scan_id, error)
            with self._store.write() as conn:
                drop_from_queue(conn, item.seq)
            report.annulments += 1

    def _download(self, client: ServerClient, report: SyncReport) -> None:
        assert self._enrollment is not None
        with self._store.read() as conn:
            stored = load_setup(conn)
        have = stored.version if stored is not None else None
        while True:
            try:
                page = client.changes(self._state.cursor, FEED_PAGE, have)
            except RequestRefused as error:
                if error.code not in FEED_RESET_CODES or self._state.cursor is None:
                    raise
                self._feed_reset(report, restored=error.code == FEED_RESET_CODE)
                # The scans queued again go up before the feed is read from the start.
                self._upload(client, report)
                continue
            now = self._clock.now()
            with self._store.write() as conn:
                applied, setup = apply_page(
                    conn, self._store.sealer, page, event_id=self._enrollment.event_id, now=now
                )
                state = msgspec.structs.replace(
                    load_sync_state(conn),
                    cursor=page.next_cursor,
                    last_contact_at=now,
                    server_setup_version=page.checkin_setup_version,
                )
                save_sync_state(conn, state)
            if setup is not None:
                have = setup.version
                report.new_setup = setup.version
            self._state = state
            report.pages += 1
            report.tickets += applied.tickets
            report.admissions += applied.admissions
            report.new_keys += applied.new_keys
            if not page.has_more:
                return

    def _feed_reset(self, report: SyncReport, *, restored: bool) -> None:
        """The server does not know our cursor: start the feed over (applying everything again
        is safe; every change says how things now are). When it says it was restored from a
        backup (``feed_reset``), what it had from this gate since that backup is gone too:
        every scan made here is queued again (the server takes each once, by id)."""
        assert self._enrollment is not None
        now = self._clock.now()
        device_id = self._enrollment.device_id
        with self._store.write() as conn:
            requeued = requeue_own_scans(conn, device_id, now) if restored else 0
            state = msgspec.structs.replace(load_sync_state(conn), cursor=None)
            save_sync_state(conn, state)
        self._state = state
        report.feed_resets += 1
        report.requeued += requeued
        log.warning(
            "the server no longer knows our feed cursor%s; downloading everything again "
            "and uploading %d scans made here again",
            " (it was restored from a backup)" if restored else "",
            requeued,
        )

    # --- failure bookkeeping ----------------------------------------------------------------------

    def _went_offline(self, reason: str, retry_after: float | None) -> None:
        state = self._state
        failures = state.failures + 1
        # Doubling from a second up to a minute; jitter keeps a hall of scanners out of step.
        delay = backoff_delay(failures - 1, BACKOFF_FIRST_SECONDS, BACKOFF_MAX_SECONDS)
        if retry_after is not None:
            delay = max(delay, retry_after)
        self._save_state(
            msgspec.structs.replace(
                state,
                offline_reason=reason,
                failures=failures,
                next_retry_at=self._clock.now() + timedelta(seconds=delay),
            )
        )
        log.info("offline: %s (retry in %.1f s)", reason, delay)
        self._emit()
        self._wake.set()

    def _rejected(self, error: DeviceRejected) -> None:
        """A 401. Only the server's explicit ``device_revoked`` switches the gate off; any other
        refusal of the token (unknown to a server restored from a backup or with a new secret,
        or a server that is not ours) must not let whoever answers shut a gate down: the device
        goes on offline, keeps its queue, tries again after the backoff, and says how to get
        back (enroll again). A server that does not know the device (``device_unknown``) has
        none of its scans: they are queued again for after the new enrollment."""
        if error.revoked:
            self._revoked(str(error))
            return
        log.warning("the server refused this device's token (%s)", error.code)
        if error.code == DEVICE_UNKNOWN_CODE and self._enrollment is not None:
            # It has none of this device's scans: they wait in the queue for the next
            # enrollment of this gate, which uploads them (``requeue_own_scans``).
            with self._store.write() as conn:
                requeue_own_scans(conn, self._enrollment.device_id, self._clock.now())
        self._went_offline(refusal_sentence(error), None)

    def _revoked(self, reason: str) -> None:
        self._save_state(
            msgspec.structs.replace(
                self._state, revoked=True, offline_reason=reason, next_retry_at=None
            )
        )
        self._emit()

    def _data_changed(self) -> None:
        if self._on_data_changed is not None:
            try:
                self._on_data_changed()
            except Exception:
                log.exception("data-changed listener failed")

    # --- the background loop --------------------------------------------------------------------

    def start(self) -> None:
        """Run ``sync_once`` in a background thread until ``stop``."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gatehouse-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._validate_lock:
            for retired in self._retired_clients:
                retired.close()
            self._retired_clients = []
            if self._validate_client is not None:
                self._validate_client.close()
                self._validate_client = None

    def wake(self) -> None:
        """Sync soon (e.g. a scan was just queued), without waiting for the interval. During a
        backoff, the backoff still applies."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            delay = self._next_delay()
            if delay > 0:
                self._wake.wait(delay)
                self._wake.clear()
                if self._stop.is_set():
                    return
                if self._next_delay() > 0 and not self.is_online():
                    continue  # woken during a backoff: wait for its end
            try:
                self.sync_once()
            except SyncBusy:
                # Another program is syncing this data folder: try again in a second. (Not
                # ``_wake.wait``: a pending wake would return at once, every time, and spin.)
                self._stop.wait(1.0)
            except NotEnrolledForSync:
                return
            except Exception:  # keep the gate's sync alive whatever happens
                log.exception("sync failed unexpectedly")
                self._went_offline("The scanner hit an internal error while syncing.", None)

    def _next_delay(self) -> float:
        state = self._state
        if state.revoked:
            return 3600.0
        if state.next_retry_at is not None and state.offline_reason is not None:
            return max(0.0, (state.next_retry_at - self._clock.now()).total_seconds())
        if state.last_sync_at is None:
            return 0.0
        since = (self._clock.now() - state.last_sync_at).total_seconds()
        return max(0.0, self.interval_seconds - since)


__all__ = [
    "DEVICE_UNKNOWN",
    "FEED_PAGE",
    "TOKEN_REFUSED",
    "NotEnrolledForSync",
    "SyncBusy",
    "SyncEngine",
    "SyncReport",
    "SyncStatus",
    "apply_page",
    "enroll",
    "refusal_sentence",
]
