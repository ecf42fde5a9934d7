"""The gate's peer node: tells the other gates of its event what it admitted, and stores what
they admitted (issue 18, docs/peer-sync.md).

One thread runs one asyncio loop: a TCP listener, one dialing task per known peer address
(static ones from the configuration, others found by mDNS), one task per connection. The gate's
thread calls ``announce`` after it committed a scan; the sync loop calls ``reload_trust`` after
a sync changed the credentials or the revoked set. Nothing here blocks the gate: a peer that
cannot keep up is hung up on and catches up by anti-entropy when it reconnects.

Every envelope received goes through ``shared.peers.Trust.open`` before the store sees it; a
connection's peer is believed to be a device only after its certificate checked out and it
signed this connection's nonces with that certificate's key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Final

from scanner_app.core.peers import protocol
from scanner_app.core.peers.discovery import Discovery
from scanner_app.core.store import LocalStore
from scanner_app.core.store.peers import (
    load_peer_credentials,
    peer_digest,
    peer_records_after,
    revoked_peers,
    store_peer_record,
)
from scanner_app.core.store.state import DEFAULT_PEER_PORT, parse_peer_address
from shared.backoff import Backoff
from shared.clock import Clock, SystemClock
from shared.keys import VerifyKey
from shared.peers import (
    PROTOCOL,
    Certificate,
    Credentials,
    Opened,
    Refusal,
    Trust,
    read_certificate,
)

log = logging.getLogger(__name__)

DEFAULT_PORT: Final = DEFAULT_PEER_PORT
#: A peer counts as heard for this long after its last frame.
HEARD_FOR_S: Final = 60.0
PING_EVERY_S: Final = 15.0
#: A connection that says nothing for this long is dead (four missed pings).
IDLE_TIMEOUT_S: Final = 60.0
HANDSHAKE_TIMEOUT_S: Final = 5.0
CONNECT_TIMEOUT_S: Final = 3.0
#: A digest exchange this often on every connection: records relayed by a third gate arrive.
DIGEST_EVERY_S: Final = 30.0
#: Envelopes served for one DIGEST (the rest after the next one).
ANSWER_LIMIT: Final = 2000
#: Frames a connection may send: a burst, then this many per second.
FRAME_RATE: Final = 200.0
FRAME_BURST: Final = 400.0
#: Connections at once: from one address (ten gates on one test machine share 127.0.0.1) and
#: in all.
PER_ADDRESS: Final = 16
MAX_CONNECTIONS: Final = 128
#: Frames waiting to be written to one connection before it counts as stuck.
MAX_QUEUED: Final = 4096
#: Junk reasons counted beside ``Refusal``s.
JUNK: Final = "junk"
FLOOD: Final = "flood"
HANDSHAKE: Final = "handshake"
STUCK: Final = "stuck"


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """Where this gate listens and whom it asks. ``port`` 0 takes any free port;
    ``static_peers`` are ``host:port`` texts (for networks that drop multicast)."""

    port: int = DEFAULT_PORT
    listen_host: str = "0.0.0.0"  # noqa: S104 - the venue's network is the point
    static_peers: tuple[str, ...] = ()
    discover: bool = True


@dataclass(slots=True)
class _TokenBucket:
    rate: float
    burst: float
    tokens: float = 0.0
    at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class _Dropped(Exception):
    """The connection is to end; ``reason`` is counted (None: an ordinary end)."""

    def __init__(self, reason: str | None) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False, slots=True)
class _Session:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    dialed: bool
    device_id: uuid.UUID | None = None
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(MAX_QUEUED))

    def send(self, data: bytes) -> bool:
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            return False
        return True


@dataclass(frozen=True, slots=True)
class _Identity:
    credentials: Credentials
    certificate: Certificate
    trust: Trust
    tag: bytes


class PeerNode:
    """This gate's node. ``start`` and ``stop`` from the app; ``announce`` from the gate's thread
    (after its commit); ``reload_trust`` after a sync; the rest from anywhere."""

    def __init__(
        self, store: LocalStore, config: PeerConfig, *, clock: Clock | None = None
    ) -> None:
        self.store = store
        self.config = config
        self.clock: Clock = clock or SystemClock()
        #: Called (on the node's thread) after records from peers were stored.
        self.on_change: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._heard: dict[uuid.UUID, float] = {}
        self._refusals: Counter[str] = Counter()
        self._bytes_sent = 0
        self._stored = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._identity: _Identity | None = None
        self._sessions: dict[uuid.UUID, _Session] = {}
        self._all: set[_Session] = set()
        self._per_address: Counter[str] = Counter()
        self._dialing: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._self_addresses: set[tuple[str, int]] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._discovery: Discovery | None = None
        self._port: int | None = None
        #: The network is up: dialers keep dialing.
        self._open = False

    # --- the app's side (any thread) ------------------------------------------------------------

    def start(self) -> None:
        """Start the node's thread; returns once it listens (or found no credentials yet)."""
        if self._thread is not None:
            return
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name="gatehouse-peers", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        stopping = self._stopping
        if stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=30)
        self._thread = None

    def announce(self, envelope: bytes) -> None:
        """Push one of this gate's own envelopes to every connected peer now."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing: anti-entropy has it
            loop.call_soon_threadsafe(self._push, envelope)

    def reload_trust(self) -> None:
        """Read the credentials and the revoked set again (a sync changed them)."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self._apply_trust(), loop)

    def peers_heard(self) -> int:
        """Distinct certified peers heard from in the last minute."""
        horizon = time.monotonic() - HEARD_FOR_S
        with self._lock:
            return sum(1 for at in self._heard.values() if at >= horizon)

    def refusals(self) -> dict[str, int]:
        """What was refused or dropped, by reason (``Refusal`` values, and junk, flood,
        handshake, stuck)."""
        with self._lock:
            return dict(self._refusals)

    @property
    def port(self) -> int | None:
        """The port listened on (after ``start``; None without credentials)."""
        return self._port

    @property
    def bytes_sent(self) -> int:
        with self._lock:
            return self._bytes_sent

    @property
    def records_stored(self) -> int:
        """Records from peers stored since start (new ones only)."""
        with self._lock:
            return self._stored

    # --- the node's thread ----------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except Exception:
            log.exception("the peer node stopped on an error")
        finally:
            self._ready.set()
            self._loop = None
            loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        try:
            await self._apply_trust()
        finally:
            self._ready.set()
        await self._stopping.wait()
        await self._shut_network()
        self._identity = None  # a later start() reads the store afresh

    def _count(self, reason: str) -> None:
        with self._lock:
            self._refusals[reason] += 1

    def _spawn(self, coroutine: Coroutine[object, object, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _apply_trust(self) -> None:
        with self.store.read() as conn:
            credentials = load_peer_credentials(conn, self.store.sealer)
            revoked = revoked_peers(conn)
        certificate = read_certificate(credentials.certificate) if credentials else None
        old = self._identity
        if credentials is None or certificate is None:
            if old is not None:
                await self._shut_network()
            self._identity = None
            return
        same_event = (
            old is not None
            and old.certificate.event_id == certificate.event_id
            and old.certificate.device_id == certificate.device_id
        )
        if same_event and old is not None:
            old.trust.revoked = revoked
            self._identity = _Identity(credentials, certificate, old.trust, old.tag)
            for device_id in revoked & self._sessions.keys():
                self._close(self._sessions[device_id])
            return
        if old is not None:
            await self._shut_network()
        trust = Trust(
            tenant_id=certificate.tenant_id,
            event_id=certificate.event_id,
            issuer_public_key=credentials.issuer_public_key,
            event_key=credentials.event_key,
            revoked=revoked,
        )
        self._identity = _Identity(
            credentials, certificate, trust, protocol.event_tag(certificate.event_id)
        )
        await self._open_network()

    async def _open_network(self) -> None:
        identity = self._identity
        assert identity is not None
        self._open = True
        try:
            self._server = await asyncio.start_server(
                self._accepted, self.config.listen_host, self.config.port
            )
        except OSError as error:  # the port is taken: this gate still dials its peers
            log.error("the peer node cannot listen on port %s: %s", self.config.port, error)
        else:
            self._port = self._server.sockets[0].getsockname()[1]
        for text in self.config.static_peers:
            address = parse_peer_address(text)
            if address is None:
                log.warning("peer address %r is not host:port; ignored", text)
                continue
            self.dial(address)
        if self.config.discover and self._port is not None:
            discovery = Discovery(
                port=self._port,  # checked above
                listen_host=self.config.listen_host,
                device_id=identity.certificate.device_id,
                tag=identity.tag,
                found=self.dial,
            )
            try:
                await discovery.start()
                self._discovery = discovery
            except OSError as error:  # no multicast here: static peers still work
                log.warning("peer discovery is not available: %s", error)

    async def _shut_network(self) -> None:
        self._open = False
        if self._discovery is not None:
            await self._discovery.stop()
            self._discovery = None
        if self._server is not None:
            self._server.close()
            self._server = None
        for session in list(self._all):
            self._close(session)
        while self._tasks:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._dialing.clear()
        self._port = None

    def dial(self, address: tuple[str, int]) -> None:
        """Keep a connection to ``address`` (on the node's loop): reconnect with backoff."""
        if address in self._dialing or address in self._self_addresses:
            return
        self._dialing[address] = self._spawn(self._keep_dialing(address))

    async def _keep_dialing(self, address: tuple[str, int]) -> None:
        backoff = Backoff(initial=0.2, maximum=10.0)
        known: uuid.UUID | None = None
        while self._open:
            if known is not None and known in self._sessions:
                await asyncio.sleep(1.0)  # connected the other way round: wait until it ends
                continue
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    reader, writer = await asyncio.open_connection(*address)
            except (OSError, TimeoutError):
                await asyncio.sleep(backoff.next_delay())
                continue
            session = _Session(reader, writer, dialed=True)
            await self._serve(session, address[0])
            if session.device_id == (self._identity and self._identity.certificate.device_id):
                self._self_addresses.add(address)  # our own address in the static list
                self._dialing.pop(address, None)
                return
            known = session.device_id or known
            if session.device_id is not None:
                backoff.reset()
            await asyncio.sleep(backoff.next_delay())

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:  # cancelled with the others when the node stops
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        peer = writer.get_extra_info("peername")
        host = str(peer[0]) if peer else "?"
        # Cancelled when the node stops: end quietly (asyncio's server reports a cancelled
        # handler as an error).
        with contextlib.suppress(asyncio.CancelledError):
            await self._serve(_Session(reader, writer, dialed=False), host)

    # --- one connection -------------------------------------------------------------------------

    async def _serve(self, session: _Session, host: str) -> None:
        if len(self._all) >= MAX_CONNECTIONS or self._per_address[host] >= PER_ADDRESS:
            self._count(FLOOD)
            session.writer.close()
            return
        self._all.add(session)
        self._per_address[host] += 1
        writer_task = self._spawn(self._write_loop(session))
        try:
            await self._converse(session)
        except _Dropped as dropped:
            if dropped.reason is not None:
                self._count(dropped.reason)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the peer went away; its dialer (or ours) reconnects
        finally:
            writer_task.cancel()
            self._all.discard(session)
            self._per_address[host] -= 1
            if session.device_id is not None and self._sessions.get(session.device_id) is session:
                del self._sessions[session.device_id]
            session.writer.close()

    def _close(self, session: _Session) -> None:
        session.writer.close()
        session.reader.feed_eof()

    async def _write_loop(self, session: _Session) -> None:
        try:
            while True:
                data = await session.queue.get()
                session.writer.write(data)
                with self._lock:
                    self._bytes_sent += len(data)
                # Returns at once below the transport's high-water mark; a slow reader makes
                # frames wait in the bounded queue, not in an unbounded socket buffer.
                await session.writer.drain()
        except (OSError, ConnectionError):
            self._close(session)

    def _send(self, session: _Session, message: protocol.Message) -> None:
        if not session.send(protocol.frame(message)):
            self._count(STUCK)
            self._close(session)

    async def _read(self, session: _Session, bucket: _TokenBucket, timeout: float) -> object:
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
        async with asyncio.timeout(timeout):
            header = await session.reader.readexactly(4)
            length = int.from_bytes(header, "big")
            if length > protocol.MAX_FRAME_BYTES:
                raise _Dropped(JUNK)
            body = await session.reader.readexactly(length)
        if not bucket.take():
            raise _Dropped(FLOOD)
        message = protocol.decode(body)
        if message is None:
            raise _Dropped(JUNK)
        return message

    async def _converse(self, session: _Session) -> None:
        identity = self._identity
        if identity is None:
            return
        bucket = _TokenBucket(FRAME_RATE, FRAME_BURST)
        nonce = os.urandom(protocol.NONCE_BYTES)
        self._send(
            session,
            protocol.Hello(
                protocol=PROTOCOL,
                event_tag=identity.tag,
                certificate=identity.credentials.certificate,
                nonce=nonce,
            ),
        )
        try:
            hello = await self._read(session, bucket, HANDSHAKE_TIMEOUT_S)
        except _Dropped:
            raise _Dropped(HANDSHAKE) from None
        if not isinstance(hello, protocol.Hello):
            raise _Dropped(HANDSHAKE)
        if hello.event_tag != identity.tag:  # another event's gate: hang up early
            raise _Dropped(Refusal.OTHER_EVENT.value)
        certificate = identity.trust.certificate(hello.certificate, self.clock.now())
        if isinstance(certificate, Refusal):
            raise _Dropped(certificate.value)
        if certificate.device_id == identity.certificate.device_id:
            session.device_id = certificate.device_id  # ourselves: the dialer stops
            raise _Dropped(None)
        self._send(
            session,
            protocol.Proof(
                identity.credentials.device_key.sign(
                    protocol.proof_message(identity.tag, hello.nonce, nonce)
                )
            ),
        )
        proof = await self._read(session, bucket, HANDSHAKE_TIMEOUT_S)
        key = VerifyKey.from_bytes(0, certificate.public_key)
        if not isinstance(proof, protocol.Proof) or not key.verifies(
            proof.signature, protocol.proof_message(identity.tag, nonce, hello.nonce)
        ):
            raise _Dropped(HANDSHAKE)
        session.device_id = certificate.device_id
        self._keep_one(session, identity.certificate.device_id)
        self._heard_from(certificate.device_id)
        self._send_digest(session)
        pinger = self._spawn(self._keep_alive(session))
        try:
            while True:
                message = await self._read(session, bucket, IDLE_TIMEOUT_S)
                self._heard_from(certificate.device_id)
                self._handle(session, message)
        finally:
            pinger.cancel()

    def _keep_one(self, session: _Session, own: uuid.UUID) -> None:
        """One connection per peer device: when both gates dialed each other (static and
        discovered, or both discovered), both keep the one dialed by the smaller device id; a
        new connection made the same way as the old one replaces it (the old one is stale)."""
        assert session.device_id is not None
        existing = self._sessions.get(session.device_id)
        if existing is not None and existing is not session:
            dialer_of_new = own if session.dialed else session.device_id
            dialer_of_old = own if existing.dialed else session.device_id
            if dialer_of_new != dialer_of_old and dialer_of_old < dialer_of_new:
                raise _Dropped(None)
            self._close(existing)
        self._sessions[session.device_id] = session

    def _heard_from(self, device_id: uuid.UUID) -> None:
        with self._lock:
            self._heard[device_id] = time.monotonic()

    async def _keep_alive(self, session: _Session) -> None:
        last_digest = time.monotonic()
        while True:
            await asyncio.sleep(PING_EVERY_S)
            if time.monotonic() - last_digest >= DIGEST_EVERY_S:
                self._send_digest(session)
                last_digest = time.monotonic()
            else:
                self._send(session, protocol.Ping())

    def _send_digest(self, session: _Session) -> None:
        with self.store.read() as conn:
            digest = peer_digest(conn)
        self._send(session, protocol.digest_frame(digest))

    def _handle(self, session: _Session, message: object) -> None:
        if isinstance(message, protocol.Digest):
            self._answer(session, protocol.digest_of(message))
        elif isinstance(message, protocol.Records):
            self._receive(message.envelopes)
            if message.last and message.full:
                self._send_digest(session)
        elif isinstance(message, protocol.Push):
            self._receive([message.envelope])
        elif not isinstance(message, protocol.Ping):
            raise _Dropped(JUNK)  # a second HELLO or PROOF

    def _answer(self, session: _Session, digest: dict[uuid.UUID, int]) -> None:
        with self.store.read() as conn:
            envelopes = peer_records_after(conn, digest, ANSWER_LIMIT)
        full = len(envelopes) >= ANSWER_LIMIT
        step = protocol.RECORDS_PER_FRAME
        chunks = [envelopes[i : i + step] for i in range(0, len(envelopes), step)] or [[]]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            self._send(session, protocol.Records(envelopes=chunk, last=last, full=full and last))

    def _receive(self, envelopes: list[bytes]) -> None:
        identity = self._identity
        if identity is None or not envelopes:
            return
        now = self.clock.now()
        opened: list[Opened] = []
        for envelope in envelopes:
            result = identity.trust.open(envelope, now)
            if isinstance(result, Refusal):
                self._count(result.value)
            else:
                opened.append(result)
        if not opened:
            return
        with self.store.write() as conn:
            new = sum(store_peer_record(conn, self.store.sealer, one, now) for one in opened)
        if new:
            with self._lock:
                self._stored += new
            if self.on_change is not None:
                try:
                    self.on_change()
                except Exception:
                    log.exception("the peer node's change callback failed")

    def _push(self, envelope: bytes) -> None:
        if len(envelope) > protocol.MAX_FRAME_BYTES:
            return
        data = protocol.frame(protocol.Push(envelope))
        for session in list(self._sessions.values()):
            if not session.send(data):
                self._count(STUCK)
                self._close(session)
