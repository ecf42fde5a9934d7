"""Device refresh tokens: what a scanner renews its short-lived access token with.

Shape ``ghr1.<tenant>.<device>.<generation>.<family>.<secret>``: the tenant and device ids (32
hex digits each) say whose row to look at — row-level security needs the tenant before anything
is read; ``generation`` counts renewals; ``family`` (16 random bytes, base64url) is the same in
every refresh token of one enrollment; ``secret`` (32 random bytes) is new in each. The server
keeps only SHA-256 hashes (of the family, of the whole current token and of the one before it),
so a copy of the database renews nothing.

A refresh token is useless for reading data: only ``POST /v1/devices/token`` takes it, and it
answers with a new access token *and* a new refresh token, the old one being spent. Presenting
a spent one (the family matches, the token does not) means two holders — a copied disk racing
the real gate — and revokes the device (``sync_server.domain.devices.services.renew_tokens``).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Final

PREFIX: Final = "ghr1"
FAMILY_BYTES: Final = 16
SECRET_BYTES: Final = 32
#: Longer than any refresh token we issue (about 150 characters); the request's bound.
MAX_LENGTH: Final = 256
_B64: Final = r"[A-Za-z0-9_-]"
_SHAPE: Final = re.compile(
    rf"{PREFIX}\.([0-9a-f]{{32}})\.([0-9a-f]{{32}})\.(0|[1-9][0-9]{{0,8}})"
    rf"\.({_B64}{{22}})\.({_B64}{{43}})"
)


@dataclass(frozen=True, slots=True)
class RefreshToken:
    tenant_id: uuid.UUID
    device_id: uuid.UUID
    generation: int
    family: str
    secret: str

    def __str__(self) -> str:
        return ".".join(
            (
                PREFIX,
                self.tenant_id.hex,
                self.device_id.hex,
                str(self.generation),
                self.family,
                self.secret,
            )
        )

    @property
    def token_hash(self) -> bytes:
        """What the device row keeps of this token."""
        return hashlib.sha256(b"gatehouse/refresh\0" + str(self).encode()).digest()

    @property
    def family_hash(self) -> bytes:
        """What the device row keeps of the family secret."""
        return family_hash(self.family)

    def next(self) -> RefreshToken:
        """The token of the next generation: same family, new secret."""
        return RefreshToken(
            self.tenant_id, self.device_id, self.generation + 1, self.family, _random(SECRET_BYTES)
        )

    def again(self) -> RefreshToken:
        """Another token of the same generation (a renewal whose answer was lost is answered
        with a new one: the lost one was never seen by anybody)."""
        return RefreshToken(
            self.tenant_id, self.device_id, self.generation, self.family, _random(SECRET_BYTES)
        )


def family_hash(family: str) -> bytes:
    return hashlib.sha256(b"gatehouse/refresh-family\0" + family.encode()).digest()


def _random(size: int) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(size)).rstrip(b"=").decode()


def first_token(tenant_id: uuid.UUID, device_id: uuid.UUID) -> RefreshToken:
    """The refresh token an enrollment hands out: generation 0 of a new family."""
    return RefreshToken(tenant_id, device_id, 0, _random(FAMILY_BYTES), _random(SECRET_BYTES))


def parse(text: str) -> RefreshToken | None:
    """The token in ``text``, or None when it cannot be one of ours (total: never raises)."""
    found = _SHAPE.fullmatch(text.strip()) if len(text) <= MAX_LENGTH else None
    if found is None:
        return None
    tenant, device, generation, family, secret = found.groups()
    return RefreshToken(uuid.UUID(tenant), uuid.UUID(device), int(generation), family, secret)
