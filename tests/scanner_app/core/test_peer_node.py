"""The peer node over real sockets on 127.0.0.1: records announced at one gate are stored at
the others, a gate that was away catches up (through a third gate, too), and a device of
another event, a revoked device, a tampered or replayed envelope and junk bytes change nothing.
Every wait is for a condition, with a generous timeout; nothing is timed."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scanner_app.core.peers import PeerConfig, PeerNode, protocol
from scanner_app.core.store import LocalStore
from scanner_app.core.store.cache import admissions_of
from scanner_app.core.store.peers import (
    append_own_record,
    peer_digest,
    save_peer_credentials,
    save_revoked_peers,
)
from shared.peers import PROTOCOL, Credentials, RecordKind, read_certificate
from testkit.peers import TestEvent

WAIT_S = 60.0


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {WAIT_S} s for {what}")
        time.sleep(0.02)


class Gate:
    """One scanner: its store, credentials and node."""

    def __init__(self, folder: Path, event: TestEvent, name: str) -> None:
        self.store = LocalStore.open(folder)
        self.device_id, self.credentials = event.device(datetime.now(UTC), gate=name)
        self.name = name
        with self.store.write() as conn:
            save_peer_credentials(
                conn, self.store.sealer, self.credentials, datetime.now(UTC) + timedelta(days=1)
            )
        self.node: PeerNode | None = None

    def start(self, *peers: Gate, discover: bool = False) -> PeerNode:
        static = tuple(f"127.0.0.1:{p.port}" for p in peers)
        self.node = PeerNode(
            self.store,
            PeerConfig(port=0, listen_host="127.0.0.1", static_peers=static, discover=discover),
        )
        self.node.start()
        return self.node

    @property
    def port(self) -> int:
        assert self.node is not None
        assert self.node.port is not None
        return self.node.port

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
            self.node = None

    def admit(self, ticket_id: uuid.UUID, kind: RecordKind = RecordKind.ADMISSION) -> bytes:
        with self.store.write() as conn:
            envelope = append_own_record(
                conn,
                self.credentials,
                kind=kind,
                scan_id=uuid.uuid4(),
                ticket_id=ticket_id,
                at=datetime.now(UTC),
                gate=self.name,
                checkin_list_id=None,
                zone=None,
            )
        if self.node is not None:
            self.node.announce(envelope)
        return envelope

    def knows(self, ticket_id: uuid.UUID) -> bool:
        with self.store.read() as conn:
            return bool(admissions_of(conn, self.store.sealer.lookup(ticket_id)))

    def held(self) -> int:
        with self.store.read() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM peer_records").scalar_one())

    def scans(self) -> int:
        with self.store.read() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM scans").scalar_one())

    def heard(self) -> int:
        return 0 if self.node is None else self.node.peers_heard()

    def refused(self, reason: str) -> int:
        assert self.node is not None
        return self.node.refusals().get(reason, 0)


@pytest.fixture
def event() -> TestEvent:
    return TestEvent()


@pytest.fixture
def gates(tmp_path: Path, event: TestEvent) -> Iterator[list[Gate]]:
    made = [Gate(tmp_path / f"gate-{i}", event, f"Gate {'ABC'[i]}") for i in range(3)]
    yield made
    for gate in made:
        gate.stop()
        gate.store.close()


def mesh(gates: list[Gate]) -> None:
    """Start each gate with the earlier ones as static peers (every pair gets connected)."""
    for index, gate in enumerate(gates):
        gate.start(*gates[:index])
    for gate in gates:
        wait_until(lambda gate=gate: gate.heard() == len(gates) - 1, "every peer heard")  # type: ignore[misc]


# --- a raw peer, speaking the protocol by hand --------------------------------------------------


class RawPeer:
    """A client that does the handshake with ``credentials`` and then sends what a test says."""

    def __init__(self, port: int, credentials: Credentials, event: TestEvent) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
        self.credentials = credentials
        self.tag = protocol.event_tag(event.event_id)

    def read(self) -> protocol.Message | None:
        header = self._exactly(4)
        if header is None:
            return None
        body = self._exactly(int.from_bytes(header, "big"))
        return None if body is None else protocol.decode(body)

    def _exactly(self, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def send(self, message: protocol.Message) -> None:
        self.sock.sendall(protocol.frame(message))

    def handshake(self) -> protocol.Message | None:
        """HELLO and PROOF; the node's next frame after its HELLO (PROOF, or None: hung up)."""
        nonce = os.urandom(protocol.NONCE_BYTES)
        self.send(protocol.Hello(PROTOCOL, self.tag, self.credentials.certificate, nonce))
        hello = self.read()
        assert isinstance(hello, protocol.Hello)
        answer = self.read()
        if isinstance(answer, protocol.Proof):
            self.send(
                protocol.Proof(
                    self.credentials.device_key.sign(
                        protocol.proof_message(self.tag, hello.nonce, nonce)
                    )
                )
            )
        return answer

    def close(self) -> None:
        self.sock.close()


# --- propagation --------------------------------------------------------------------------------


def test_an_admission_announced_at_one_gate_is_stored_at_the_others(gates: list[Gate]) -> None:
    mesh(gates)
    ticket_id = uuid.uuid4()
    gates[0].admit(ticket_id)
    wait_until(lambda: gates[1].knows(ticket_id) and gates[2].knows(ticket_id), "propagation")
    assert not gates[0].knows(ticket_id)  # its own record is not a peer scan there
    exit_ticket = uuid.uuid4()
    gates[2].admit(exit_ticket, RecordKind.EXIT)
    wait_until(lambda: gates[0].knows(exit_ticket) and gates[1].knows(exit_ticket), "the exit")
    for gate in gates:
        assert gate.node is not None
        assert gate.node.refusals() == {}


def test_a_gate_that_was_away_catches_up_through_another_gate(gates: list[Gate]) -> None:
    first, second, third = gates
    mesh(gates)
    third.stop()
    tickets = [uuid.uuid4() for _ in range(30)]
    for ticket_id in tickets:
        first.admit(ticket_id)
    wait_until(lambda: all(second.knows(t) for t in tickets), "the second gate to hear")
    # Back, knowing only the second gate's address: the first gate's records come through it.
    third.start(second)
    wait_until(lambda: all(third.knows(t) for t in tickets), "catching up by anti-entropy")
    with first.store.read() as conn:
        origin_digest = peer_digest(conn)
    with third.store.read() as conn:
        assert peer_digest(conn)[first.device_id] == origin_digest[first.device_id] == 30


def test_on_change_is_called_after_records_are_stored(gates: list[Gate]) -> None:
    mesh(gates[:2])
    called: list[int] = []
    node = gates[1].node
    assert node is not None
    node.on_change = lambda: called.append(gates[1].held())
    gates[0].admit(uuid.uuid4())
    wait_until(lambda: bool(called), "the callback")
    assert called[0] == 1  # the record was stored before the callback ran


# --- what must change nothing -------------------------------------------------------------------


def test_a_device_of_another_event_is_hung_up_on(gates: list[Gate], event: TestEvent) -> None:
    mesh(gates[:1])
    target = gates[0]
    stranger = TestEvent()
    _, credentials = stranger.device(datetime.now(UTC))
    raw = RawPeer(target.port, credentials, stranger)
    assert raw.handshake() is None
    raw.close()
    wait_until(lambda: target.refused("other_event") == 1, "the refusal")
    # Same event tag, another issuer's certificate (a forged certificate): refused too.
    forged = TestEvent(tenant_id=event.tenant_id, event_id=event.event_id)
    _, forged_credentials = forged.device(datetime.now(UTC))
    raw = RawPeer(target.port, forged_credentials, forged)
    assert raw.handshake() is None
    raw.close()
    wait_until(lambda: target.refused("not_issued_here") == 1, "the forged certificate")
    assert target.node is not None
    assert target.node.peers_heard() == 0


def test_a_revoked_device_is_hung_up_on_and_its_relayed_records_refused(
    gates: list[Gate], event: TestEvent
) -> None:
    mesh(gates[:2])
    target = gates[0]
    revoked_id, revoked = event.device(datetime.now(UTC), gate="Gate X")
    with target.store.write() as conn:
        save_revoked_peers(conn, [revoked_id])
    assert target.node is not None
    target.node.reload_trust()
    envelope = _sealed(revoked, "Gate X")
    wait_until(lambda: _refused_at_hello(target, revoked, event), "the revoked device refused")
    # Its envelope relayed by a certified gate is refused as well.
    raw = RawPeer(target.port, friend_credentials(event), event)
    assert isinstance(raw.handshake(), protocol.Proof)
    raw.send(protocol.Push(envelope))
    wait_until(lambda: target.refused("revoked") >= 2, "the relayed record refused")
    raw.close()
    assert target.scans() == 0
    assert target.held() == 0


def _refused_at_hello(target: Gate, credentials: Credentials, event: TestEvent) -> bool:
    raw = RawPeer(target.port, credentials, event)
    try:
        return raw.handshake() is None and target.refused("revoked") >= 1
    finally:
        raw.close()


def _sealed(credentials: Credentials, gate: str, seq: int = 1) -> bytes:
    from shared.peers import Record  # noqa: PLC0415 - only these tests build records by hand

    certificate = read_certificate(credentials.certificate)
    assert certificate is not None
    return credentials.seal(
        Record(
            origin=certificate.device_id,
            seq=seq,
            kind=RecordKind.ADMISSION,
            scan_id=uuid.uuid4(),
            ticket_id=uuid.uuid4(),
            at_ms=int(time.time() * 1000),
            gate=gate,
        )
    )


_FRIENDS: dict[uuid.UUID, Credentials] = {}


def friend_credentials(event: TestEvent) -> Credentials:
    """A certified device of ``event`` that is not one of the gates."""
    if event.event_id not in _FRIENDS:
        _FRIENDS[event.event_id] = event.device(datetime.now(UTC), gate="Gate F")[1]
    return _FRIENDS[event.event_id]


def test_tampered_and_replayed_envelopes_change_nothing(
    gates: list[Gate], event: TestEvent
) -> None:
    mesh(gates[:2])
    target, origin = gates[:2]
    ticket_id = uuid.uuid4()
    genuine = origin.admit(ticket_id)
    wait_until(lambda: target.knows(ticket_id), "the genuine record")
    held, scans = target.held(), target.scans()
    assert target.node is not None
    stored = target.node.records_stored
    raw = RawPeer(target.port, friend_credentials(event), event)
    assert isinstance(raw.handshake(), protocol.Proof)
    # One flipped byte in the sealed record, then in the signature.
    middle = bytearray(genuine)
    middle[len(middle) // 2] ^= 0x01
    last = bytearray(genuine)
    last[-1] ^= 0x01
    raw.send(protocol.Push(bytes(middle)))
    raw.send(protocol.Push(bytes(last)))
    raw.send(protocol.Push(genuine))  # a replay
    raw.send(protocol.Records(envelopes=[genuine, genuine]))
    node = target.node
    wait_until(
        lambda: sum(node.refusals().values()) >= 2 and _answered_ping(raw),
        "the tampered envelopes refused and the rest processed",
    )
    raw.close()
    assert (target.held(), target.scans(), node.records_stored) == (held, scans, stored)
    assert set(node.refusals()) <= {"bad_signature", "malformed", "unreadable", "not_issued_here"}


def _answered_ping(raw: RawPeer) -> bool:
    """The node processes one connection's frames in order: once it answers a DIGEST sent after
    them, it has handled them all."""
    raw.send(protocol.Digest(entries=[]))
    while True:
        message = raw.read()
        if message is None:
            return False
        if isinstance(message, protocol.Records) and message.last:
            return True


def test_junk_on_the_socket_is_dropped_and_the_node_keeps_working(gates: list[Gate]) -> None:
    mesh(gates[:2])
    target = gates[0]
    for junk in (
        os.urandom(3000),
        (10**9).to_bytes(4, "big"),  # a frame length beyond the bound
        (5).to_bytes(4, "big") + b"\xc1\xc1\xc1\xc1\xc1",  # not msgpack
        b"\x00\x00",  # half a header, then gone
    ):
        with socket.create_connection(("127.0.0.1", target.port), timeout=WAIT_S) as sock:
            sock.sendall(junk)
    wait_until(lambda: target.refused("handshake") >= 3, "the junk counted")
    ticket_id = uuid.uuid4()
    gates[1].admit(ticket_id)
    wait_until(lambda: target.knows(ticket_id), "the node still working")


# --- discovery ----------------------------------------------------------------------------------


def test_two_gates_find_each_other_by_mdns(gates: list[Gate]) -> None:
    """Runs where multicast works on this machine's interfaces (it did where this was written:
    eth0 and lo of a container); no static peers at all."""
    first, second = gates[:2]
    first.start(discover=True)
    second.start(discover=True)
    ticket_id = uuid.uuid4()
    wait_until(
        lambda: first.node is not None and first.node.peers_heard() == 1, "discovery by mDNS"
    )
    first.admit(ticket_id)
    wait_until(lambda: second.knows(ticket_id), "a record over the discovered connection")


def test_a_node_started_before_enrollment_joins_once_it_has_credentials(
    gates: list[Gate], tmp_path: Path, event: TestEvent
) -> None:
    mesh(gates[:1])
    late = LocalStore.open(tmp_path / "late")
    node = PeerNode(
        late,
        PeerConfig(
            port=0,
            listen_host="127.0.0.1",
            static_peers=(f"127.0.0.1:{gates[0].port}",),
            discover=False,
        ),
    )
    try:
        node.start()
        assert node.port is None  # nothing to say to anyone yet
        _, credentials = event.device(datetime.now(UTC), gate="Late gate")
        with late.write() as conn:
            save_peer_credentials(
                conn, late.sealer, credentials, datetime.now(UTC) + timedelta(days=1)
            )
        node.reload_trust()
        ticket_id = uuid.uuid4()
        gates[0].admit(ticket_id)  # made before the late gate connected: anti-entropy
        wait_until(lambda: node.records_stored == 1, "the late gate to catch up")
        with late.read() as conn:
            assert admissions_of(conn, late.sealer.lookup(ticket_id))
    finally:
        node.stop()
        late.close()


def test_a_stopped_node_starts_again(gates: list[Gate]) -> None:
    mesh(gates[:2])
    node = gates[1].node
    assert node is not None
    node.stop()
    node.start()
    assert node.port is not None
    ticket_id = uuid.uuid4()
    gates[0].admit(ticket_id)
    wait_until(lambda: gates[1].knows(ticket_id), "the restarted node to hear")
