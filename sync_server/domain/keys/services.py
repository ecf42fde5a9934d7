"""The per-event ticket-code keys: made when an event is created, stored sealed under the
master key, rotated on request, retired after a loss; and the tickets' name secrets, sealed
under the same master key.

Issuer rings are cached per process and keyed by the set of key rows, so a rotation made by
another process is picked up on the next load. Codes are read with the tenant's scanner rings
held in memory (``read``): a GH2 code names its key only by a blinded per-code hint, so finding
the key means trying the rings, never asking the database. A code no ring in memory reads
costs at most one reload of the tenant's rings — never more than one per upload batch
(``KeyReloads``) nor one per ``RELOAD_INTERVAL`` seconds per tenant — and an unknown key id or
hint seen again within ``REMEMBER_UNKNOWN_FOR`` seconds costs none (issue 14 item 12)."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from litestar.di import NamedDependency
from litestar.params import SkipValidation
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from shared.ids import new_id
from shared.keys import EncryptionKey, IssuerKeyRing, ScannerKeyRing, SigningKey
from shared.ticket_code import (
    CodeRejection,
    RejectionKind,
    TicketCode,
    key_marker_of,
    new_name_secret,
    read_code,
)
from shared.wire import PeerCredentials
from sync_server.db.models import Ticket, TicketKey
from sync_server.domain.keys import peer_keys
from sync_server.domain.keys.sealing import MasterKey, SealError

SIGNING = "signing"
ENCRYPTION = "encryption"
_CACHED_RINGS = 512  # opened rings kept per process (least recently used dropped first)
_CACHED_TENANTS = 256  # tenants whose scanner rings are kept for reading codes
#: Seconds between two reloads of a tenant's rings that a code no ring reads may cause.
RELOAD_INTERVAL = 2.0
#: Seconds an unknown key id or hint is remembered as unknown (after that it may reload again).
REMEMBER_UNKNOWN_FOR = 60.0
_REMEMBERED_UNKNOWN = 4096  # markers remembered per tenant at most (oldest forgotten first)


@dataclass(slots=True)
class KeyReloads:
    """One upload batch's (or one request's) allowance of key-ring reloads: one."""

    spent: bool = False


@dataclass(slots=True)
class _TenantRings:
    rings: dict[uuid.UUID, ScannerKeyRing]
    loaded_at: float
    unknown: OrderedDict[bytes, float] = field(default_factory=OrderedDict)


class KeyStore:
    def __init__(self, master_key: bytes, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._master = MasterKey(master_key)
        self._rings: OrderedDict[
            tuple[uuid.UUID, frozenset[tuple[str, int, bool]]], IssuerKeyRing
        ] = OrderedDict()
        self._tenants: OrderedDict[uuid.UUID, _TenantRings] = OrderedDict()
        self._clock = clock

    def peer_credentials(
        self,
        *,
        tenant_id: uuid.UUID,
        event_id: uuid.UUID,
        event_ends_at: datetime,
        device_id: uuid.UUID,
        gate: str,
        public_key: bytes,
        now: datetime,
    ) -> PeerCredentials:
        """A device's peer certificate and its event's peer keys, derived from the master key
        (``peer_keys.py``; nothing stored, nothing to load)."""
        return peer_keys.credentials(
            self._master,
            tenant_id=tenant_id,
            event_id=event_id,
            event_ends_at=event_ends_at,
            device_id=device_id,
            gate=gate,
            public_key=public_key,
            now=now,
        )

    async def create(
        self, session: AsyncSession, *, tenant_id: uuid.UUID, event_id: uuid.UUID
    ) -> IssuerKeyRing:
        """Generate and store the first keys of a new event."""
        ring = IssuerKeyRing.generate()
        self._store(session, ring, tenant_id=tenant_id, event_id=event_id, only_active=False)
        self._tenants.pop(tenant_id, None)
        return ring

    async def rotate(
        self, session: AsyncSession, *, tenant_id: uuid.UUID, event_id: uuid.UUID
    ) -> IssuerKeyRing:
        """New active keys for ``event_id``; older keys stay, so codes already issued still read."""
        current = await self.issuer_ring(session, event_id, tenant_id=tenant_id)
        rotated = current.rotated()
        await session.execute(
            update(TicketKey)
            .where(TicketKey.event_id == event_id, TicketKey.active)
            .values(active=False)
        )
        await session.flush()
        self._store(session, rotated, tenant_id=tenant_id, event_id=event_id, only_active=True)
        self._tenants.pop(tenant_id, None)
        return rotated

    async def retire(
        self,
        session: AsyncSession,
        *,
        tenant_id: uuid.UUID,
        event_id: uuid.UUID,
        key_id: int,
        now: datetime,
    ) -> datetime:
        """Retire ``event_id``'s keys with id ``key_id`` (signing, encryption or both): codes
        made with them then read as ``unknown_key``, and the scanners' key ring (the changes
        feed) no longer carries them. An active key is first replaced (``rotate``), so the
        event always has keys to issue codes with. Retiring a retired key changes nothing.
        Returns when the key was retired (the first time). Raises ``LookupError`` when the event
        has no such key."""
        rows = list(
            await session.scalars(
                select(TicketKey)
                .where(TicketKey.event_id == event_id, TicketKey.key_id == key_id)
                .with_for_update()
            )
        )
        if not rows:
            raise LookupError(f"event {event_id} has no key {key_id}")
        was_active = any(row.active for row in rows)
        if was_active:
            await self.rotate(session, tenant_id=tenant_id, event_id=event_id)
        retired = [row.retired_at for row in rows if row.retired_at is not None]
        if len(retired) < len(rows):
            await session.execute(
                update(TicketKey)
                .where(
                    TicketKey.event_id == event_id,
                    TicketKey.key_id == key_id,
                    TicketKey.retired_at.is_(None),
                )
                .values(retired_at=now, active=False)
            )
            retired.append(now)
        # This process reads the tenant's codes with the new rings from now on; other processes
        # keep theirs until a code no ring of theirs reads — the codes under the retired key are
        # refused there all the same, as superseded, once their tickets have new codes.
        self._tenants.pop(tenant_id, None)
        return min(retired)

    async def issuer_ring(
        self, session: AsyncSession, event_id: uuid.UUID, *, tenant_id: uuid.UUID
    ) -> IssuerKeyRing:
        """The event's full ring. Raises ``LookupError`` when the event has no keys."""
        rows = (
            await session.execute(
                select(
                    TicketKey.kind, TicketKey.key_id, TicketKey.active, TicketKey.sealed_material
                ).where(TicketKey.event_id == event_id, TicketKey.retired_at.is_(None))
            )
        ).all()
        if not rows:
            raise LookupError(f"event {event_id} has no ticket keys")
        return self._cached_ring(rows, tenant_id=tenant_id, event_id=event_id)

    def _cached_ring(
        self, rows: Sequence[Any], *, tenant_id: uuid.UUID, event_id: uuid.UUID
    ) -> IssuerKeyRing:
        """The ring of these key rows, opened once per process (the master key's AES opens)."""
        cache_key = (event_id, frozenset((r.kind, r.key_id, r.active) for r in rows))
        cached = self._rings.get(cache_key)
        if cached is not None:
            self._rings.move_to_end(cache_key)
            return cached
        ring = self._open(rows, tenant_id=tenant_id, event_id=event_id)
        self._rings[cache_key] = ring
        if len(self._rings) > _CACHED_RINGS:
            self._rings.popitem(last=False)
        return ring

    async def read(
        self,
        session: AsyncSession,
        text: str,
        *,
        tenant_id: uuid.UUID,
        prefer: uuid.UUID | None = None,
        reloads: KeyReloads | None = None,
    ) -> tuple[uuid.UUID, TicketCode] | CodeRejection:
        """Read ``text`` with the keys of the tenant's events (``session`` is in the tenant's
        transaction): the event whose ring read it and the code, or why it does not read. The
        ring of ``prefer`` (the gate's event) is tried first. Rings are held in memory, so a
        code costs no query unless no ring reads it and a reload is allowed (see the module)."""
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            tenant = await self._reload(session, tenant_id, reloads)
        else:
            self._tenants.move_to_end(tenant_id)
        found = _read_with(tenant, text, prefer)
        if not (isinstance(found, CodeRejection) and found.kind is RejectionKind.UNKNOWN_KEY):
            return found
        marker = key_marker_of(text)
        now = self._clock()
        if marker is None or not self._may_reload(tenant, marker, now, reloads):
            return found
        tenant = await self._reload(session, tenant_id, reloads)
        found = _read_with(tenant, text, prefer)
        if isinstance(found, CodeRejection) and found.kind is RejectionKind.UNKNOWN_KEY:
            tenant.unknown[marker] = now
            if len(tenant.unknown) > _REMEMBERED_UNKNOWN:
                tenant.unknown.popitem(last=False)
        return found

    def _may_reload(
        self, tenant: _TenantRings, marker: bytes, now: float, reloads: KeyReloads | None
    ) -> bool:
        if reloads is not None and reloads.spent:
            return False
        if now - tenant.loaded_at < RELOAD_INTERVAL:
            return False
        seen = tenant.unknown.get(marker)
        return seen is None or now - seen >= REMEMBER_UNKNOWN_FOR

    async def _reload(
        self, session: AsyncSession, tenant_id: uuid.UUID, reloads: KeyReloads | None
    ) -> _TenantRings:
        """The tenant's scanner rings, read afresh: one query."""
        if reloads is not None:
            reloads.spent = True
        rows = (
            await session.execute(
                select(
                    TicketKey.event_id,
                    TicketKey.kind,
                    TicketKey.key_id,
                    TicketKey.active,
                    TicketKey.sealed_material,
                ).where(TicketKey.tenant_id == tenant_id, TicketKey.retired_at.is_(None))
            )
        ).all()
        by_event: dict[uuid.UUID, list[Any]] = {}
        for row in rows:
            by_event.setdefault(row.event_id, []).append(row)
        rings: dict[uuid.UUID, ScannerKeyRing] = {}
        for event_id, event_rows in by_event.items():
            try:
                rings[event_id] = self._cached_ring(
                    event_rows, tenant_id=tenant_id, event_id=event_id
                ).scanner_ring
            except LookupError:
                continue  # no active keys: nothing this event issues reads anyway
        previous = self._tenants.pop(tenant_id, None)
        tenant = _TenantRings(rings=rings, loaded_at=self._clock())
        if previous is not None:
            tenant.unknown = previous.unknown
        self._tenants[tenant_id] = tenant
        if len(self._tenants) > _CACHED_TENANTS:
            self._tenants.popitem(last=False)
        return tenant

    # --- name secrets -----------------------------------------------------------------------

    async def name_secret(self, session: AsyncSession, ticket: Ticket) -> bytes:
        """The name secret of ``ticket``'s current secret version, made (random, stored sealed)
        when it has none yet: the one place a ticket gets a name secret. A new holder clears
        it (``change_ticket``), so the next code made draws a new one; two requests making the
        first one at once agree on the one stored first."""
        current = self.opened_name_secret(
            ticket.name_secret_sealed,
            tenant_id=ticket.tenant_id,
            ticket_id=ticket.id,
            secret_version=ticket.secret_version,
        )
        if current is not None:
            return current
        secret = new_name_secret()
        sealed = self._master.seal_name_secret(
            secret,
            tenant_id=ticket.tenant_id,
            ticket_id=ticket.id,
            secret_version=ticket.secret_version,
        )
        stored = await session.scalar(
            update(Ticket)
            .where(
                Ticket.id == ticket.id,
                Ticket.secret_version == ticket.secret_version,
                Ticket.name_secret_sealed.is_not_distinct_from(ticket.name_secret_sealed),
            )
            .values(name_secret_sealed=sealed)
            .returning(Ticket.name_secret_sealed)
        )
        if stored is None:  # someone stored one first (or the version moved): use theirs
            stored = await session.scalar(
                select(Ticket.name_secret_sealed).where(
                    Ticket.id == ticket.id, Ticket.secret_version == ticket.secret_version
                )
            )
        set_committed_value(ticket, "name_secret_sealed", stored)
        found = self.opened_name_secret(
            stored,
            tenant_id=ticket.tenant_id,
            ticket_id=ticket.id,
            secret_version=ticket.secret_version,
        )
        return secret if found is None else found

    def opened_name_secret(
        self,
        sealed: bytes | None,
        *,
        tenant_id: uuid.UUID,
        ticket_id: uuid.UUID,
        secret_version: int,
    ) -> bytes | None:
        """A stored name secret opened; None when there is none, or it was sealed for another
        secret version."""
        if sealed is None:
            return None
        try:
            return self._master.open_name_secret(
                sealed, tenant_id=tenant_id, ticket_id=ticket_id, secret_version=secret_version
            )
        except SealError:
            return None

    async def scanner_ring(
        self, session: AsyncSession, event_id: uuid.UUID, *, tenant_id: uuid.UUID
    ) -> ScannerKeyRing:
        return (await self.issuer_ring(session, event_id, tenant_id=tenant_id)).scanner_ring

    def _open(
        self, rows: Sequence[Any], *, tenant_id: uuid.UUID, event_id: uuid.UUID
    ) -> IssuerKeyRing:
        signing, encryption = [], []
        active_signing = active_encryption = None
        for row in rows:
            secret = self._master.open(
                row.sealed_material,
                tenant_id=tenant_id,
                event_id=event_id,
                kind=row.kind,
                key_id=row.key_id,
            )
            if row.kind == SIGNING:
                signing.append(SigningKey.from_seed(row.key_id, secret))
                active_signing = row.key_id if row.active else active_signing
            else:
                encryption.append(EncryptionKey(row.key_id, secret))
                active_encryption = row.key_id if row.active else active_encryption
        if active_signing is None or active_encryption is None:
            raise LookupError(f"event {event_id} has no active ticket keys")
        return IssuerKeyRing(
            signing,
            encryption,
            active_signing_id=active_signing,
            active_encryption_id=active_encryption,
        )

    def _store(
        self,
        session: AsyncSession,
        ring: IssuerKeyRing,
        *,
        tenant_id: uuid.UUID,
        event_id: uuid.UUID,
        only_active: bool,
    ) -> None:
        active_ids = {
            SIGNING: ring.active_signing_key.key_id,
            ENCRYPTION: ring.active_encryption_key.key_id,
        }
        rows: list[tuple[str, int, bytes | None, bytes]] = [
            (SIGNING, k.key_id, k.verify_key().raw(), k.seed()) for k in ring.signing_keys
        ] + [(ENCRYPTION, k.key_id, None, k.secret) for k in ring.encryption_keys]
        for kind, key_id, public, secret in rows:
            active = key_id == active_ids[kind]
            if only_active and not active:
                continue
            sealed = self._master.seal(
                secret, tenant_id=tenant_id, event_id=event_id, kind=kind, key_id=key_id
            )
            session.add(
                TicketKey(
                    id=new_id(),
                    tenant_id=tenant_id,
                    event_id=event_id,
                    kind=kind,
                    key_id=key_id,
                    public_material=public,
                    sealed_material=sealed,
                    active=active,
                )
            )


def _read_with(
    tenant: _TenantRings, text: str, prefer: uuid.UUID | None
) -> tuple[uuid.UUID, TicketCode] | CodeRejection:
    """Read with the preferred event's ring first, then the others; the first ring that knows
    the code's key decides (a tampered or forged code is not tried further)."""
    preferred = tenant.rings.get(prefer) if prefer is not None else None
    ordered = [] if preferred is None or prefer is None else [(prefer, preferred)]
    ordered += [(event_id, ring) for event_id, ring in tenant.rings.items() if event_id != prefer]
    result: TicketCode | CodeRejection | None = None
    for event_id, ring in ordered:
        result = read_code(ring, text)
        if isinstance(result, TicketCode):
            return event_id, result
        if result.kind is not RejectionKind.UNKNOWN_KEY:
            return result
    if result is None:
        # With no ring at all, an empty one still says what is wrong with the text (read only
        # then: every code of an upload would otherwise be read twice).
        result = read_code(ScannerKeyRing(), text)
    assert isinstance(result, CodeRejection)
    return result


#: How handlers and service providers receive the app's key store (provided as ``keys``).
KeysDep: TypeAlias = NamedDependency[SkipValidation[KeyStore]]
