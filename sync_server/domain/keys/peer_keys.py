"""The events' peer-sync keys (issue 18, docs/peer-sync.md "Trust chain"): never stored,
derived per event from the master key, so they need no table, no rotation job and no backup.

* The **issuer key** (Ed25519) certifies each device's own peer key: its seed is
  ``HKDF(master, info=ISSUER_INFO | tenant | event)``.
* The **event peer key** (32 bytes, AES-256-GCM) seals what the gates tell each other:
  ``HKDF(master, info=EVENT_KEY_INFO | tenant | event)``.

Distinct info strings keep the two unrelated, and the tenant and event ids in them make every
event's keys its own: one event's certificate is refused by another event's gates. Changing the
master key changes every event's keys (enrolled gates pick up the new ones on their next sync).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Final

from shared.peers import Issuer
from shared.wire import PeerCredentials
from sync_server.domain.keys.sealing import MasterKey

ISSUER_INFO: Final = b"gatehouse/peer-issuer/v1"
EVENT_KEY_INFO: Final = b"gatehouse/peer-event-key/v1"

#: A certificate lives until a day after its event ends: gates of a late night, or an event
#: whose end was set a little early, keep hearing each other.
AFTER_EVENT_END: Final = timedelta(days=1)
#: ... but never longer than this from its issue: an event far in the future (or a season) gets
#: certificates a device renews on every sync (``GET /v1/devices/me``), not one for months.
MAX_LIFETIME: Final = timedelta(days=30)
#: ... and never shorter: a gate still scanning after its event's end (an end set wrong) keeps
#: its peers for an hour past each sync.
MIN_LIFETIME: Final = timedelta(hours=1)


def _info(purpose: bytes, tenant_id: uuid.UUID, event_id: uuid.UUID) -> bytes:
    return purpose + b"|" + tenant_id.bytes + event_id.bytes


def issuer(master: MasterKey, *, tenant_id: uuid.UUID, event_id: uuid.UUID) -> Issuer:
    """The event's certificate issuer."""
    seed = master.derive(_info(ISSUER_INFO, tenant_id, event_id))
    return Issuer.from_seed(seed, tenant_id=tenant_id, event_id=event_id)


def event_key(master: MasterKey, *, tenant_id: uuid.UUID, event_id: uuid.UUID) -> bytes:
    """The event peer key: a secret only the event's enrolled devices receive."""
    return master.derive(_info(EVENT_KEY_INFO, tenant_id, event_id))


def certificate_expiry(event_ends_at: datetime, now: datetime) -> datetime:
    """When a certificate issued at ``now`` stops being accepted: a day after the event's end,
    at least ``MIN_LIFETIME`` and at most ``MAX_LIFETIME`` from ``now``."""
    return min(max(event_ends_at + AFTER_EVENT_END, now + MIN_LIFETIME), now + MAX_LIFETIME)


def credentials(
    master: MasterKey,
    *,
    tenant_id: uuid.UUID,
    event_id: uuid.UUID,
    event_ends_at: datetime,
    device_id: uuid.UUID,
    gate: str,
    public_key: bytes,
    now: datetime,
) -> PeerCredentials:
    """A device's certificate for ``public_key`` at ``gate``, with the event's issuer public
    key and peer key. ``public_key`` is 32 bytes (checked at enrollment and by the database)."""
    # Whole seconds, as the certificate says it (so the two never disagree).
    expires_at = certificate_expiry(event_ends_at, now).replace(microsecond=0)
    signer = issuer(master, tenant_id=tenant_id, event_id=event_id)
    return PeerCredentials(
        certificate=signer.certify(
            device_id=device_id,
            gate=gate,
            public_key=public_key,
            issued_at=now,
            expires_at=expires_at,
        ),
        issuer_public_key=signer.public_key,
        event_key=event_key(master, tenant_id=tenant_id, event_id=event_id),
        expires_at=expires_at,
    )
