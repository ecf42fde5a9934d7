"""The frames gates exchange over TCP (docs/peer-sync.md, "Protocol").

A frame is a 4-byte big-endian length and that many bytes of msgpack: one of the messages
below, tagged by its first field. A connection starts with HELLO both ways (protocol, the
event's tag, the sender's certificate and a fresh nonce), then PROOF both ways (the sender's
device key signs both nonces: the certificate is the sender's own, not a copy), then DIGEST
both ways; each side answers a DIGEST with the RECORDS the other lacks, and from then on
PUSHes each new record of its own, sends a DIGEST now and then (records relayed through a
third gate arrive that way) and a PING when it has said nothing for a while.

Decoding is total: bytes that are not a frame of this protocol are ``None``, never an
exception. Envelopes inside are opened by ``shared.peers.Trust``, never here.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Final

import msgspec

from shared.peers import MAX_ENVELOPE_BYTES, PROTOCOL

#: The largest frame read: a RECORDS frame of ``RECORDS_PER_FRAME`` envelopes with room to spare.
MAX_FRAME_BYTES: Final = 64 * 1024
RECORDS_PER_FRAME: Final = 24
#: One entry per device of the event; a digest of more is refused as junk.
MAX_DIGEST_ENTRIES: Final = 4096
NONCE_BYTES: Final = 16
EVENT_TAG_BYTES: Final = 8
_PROOF_DOMAIN: Final = b"gatehouse/peer-hello/v1\x00"

assert RECORDS_PER_FRAME * (MAX_ENVELOPE_BYTES + 8) + 64 < MAX_FRAME_BYTES


class Hello(msgspec.Struct, array_like=True, frozen=True, tag=1):
    protocol: int
    event_tag: bytes
    certificate: bytes
    nonce: bytes


class Proof(msgspec.Struct, array_like=True, frozen=True, tag=2):
    signature: bytes


class Digest(msgspec.Struct, array_like=True, frozen=True, tag=3):
    #: (origin device id, highest contiguous seq held) pairs.
    entries: list[tuple[bytes, int]]


class Records(msgspec.Struct, array_like=True, frozen=True, tag=4):
    envelopes: list[bytes]
    #: The last frame of an answer to a DIGEST; ``full``: the answer was cut at its limit
    #: (ask again with a new digest).
    last: bool = True
    full: bool = False


class Push(msgspec.Struct, array_like=True, frozen=True, tag=5):
    envelope: bytes


class Ping(msgspec.Struct, array_like=True, frozen=True, tag=6):
    pass


Message = Hello | Proof | Digest | Records | Push | Ping

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def event_tag(event_id: uuid.UUID) -> bytes:
    """What a HELLO and the mDNS record carry instead of the event id: enough for another
    event's gate to hang up early, not the id itself."""
    return hashlib.sha256(b"gatehouse/peer-event/v1\x00" + event_id.bytes).digest()[
        :EVENT_TAG_BYTES
    ]


def proof_message(tag: bytes, their_nonce: bytes, our_nonce: bytes) -> bytes:
    """What a gate signs to show it holds its certificate's key on this connection."""
    return _PROOF_DOMAIN + tag + their_nonce + our_nonce


def frame(message: Message) -> bytes:
    body = _encoder.encode(message)
    return len(body).to_bytes(4, "big") + body


def decode(body: bytes) -> Message | None:
    """A frame's message; None for anything that is not one (or breaks a bound)."""
    try:
        message = _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if isinstance(message, Hello) and (
        message.protocol != PROTOCOL
        or len(message.event_tag) != EVENT_TAG_BYTES
        or len(message.nonce) != NONCE_BYTES
        or len(message.certificate) > MAX_ENVELOPE_BYTES
    ):
        return None
    if isinstance(message, Digest) and (
        len(message.entries) > MAX_DIGEST_ENTRIES
        or any(len(origin) != 16 or seq < 0 for origin, seq in message.entries)
    ):
        return None
    if isinstance(message, Records) and len(message.envelopes) > RECORDS_PER_FRAME:
        return None
    return message


def digest_frame(digest: dict[uuid.UUID, int]) -> Digest:
    return Digest(entries=[(origin.bytes, seq) for origin, seq in digest.items()])


def digest_of(message: Digest) -> dict[uuid.UUID, int]:
    return {uuid.UUID(bytes=origin): seq for origin, seq in message.entries}
