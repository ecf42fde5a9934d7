"""Peer-sync credentials for tests and benchmarks: an event's issuer and certified devices,
made with fresh keys the way the server and an enrolling scanner make them."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.peers import Credentials, DeviceKey, Issuer, Trust


@dataclass(frozen=True, slots=True)
class TestEvent:
    """One event's issuer and peer key."""

    __test__ = False  # not a pytest class

    tenant_id: uuid.UUID = field(default_factory=uuid.uuid4)
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    seed: bytes = field(default_factory=lambda: os.urandom(32), repr=False)
    event_key: bytes = field(default_factory=lambda: os.urandom(32), repr=False)

    @property
    def issuer(self) -> Issuer:
        return Issuer.from_seed(self.seed, tenant_id=self.tenant_id, event_id=self.event_id)

    def device(
        self,
        now: datetime,
        *,
        device_id: uuid.UUID | None = None,
        gate: str = "North",
        lifetime: timedelta = timedelta(days=1),
    ) -> tuple[uuid.UUID, Credentials]:
        """A new device of this event, certified from an hour before ``now``."""
        device_id = device_id or uuid.uuid4()
        key = DeviceKey.generate()
        issuer = self.issuer
        certificate = issuer.certify(
            device_id=device_id,
            gate=gate,
            public_key=key.public_key,
            issued_at=now - timedelta(hours=1),
            expires_at=now + lifetime,
        )
        return device_id, Credentials(
            device_key=key,
            certificate=certificate,
            issuer_public_key=issuer.public_key,
            event_key=self.event_key,
        )

    def trust(self, revoked: frozenset[uuid.UUID] = frozenset()) -> Trust:
        return Trust(
            tenant_id=self.tenant_id,
            event_id=self.event_id,
            issuer_public_key=self.issuer.public_key,
            event_key=self.event_key,
            revoked=revoked,
        )
