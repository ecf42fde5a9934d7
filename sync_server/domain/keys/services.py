"""The per-event ticket-code keys: made when an event is created, stored sealed under the
master key, rotated on request, retired after a loss. Loaded key rings are cached per process
and keyed by the set of key rows, so a rotation made by another process is picked up on the
next load."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeAlias

from litestar.di import NamedDependency
from litestar.params import SkipValidation
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.ids import new_id
from shared.keys import EncryptionKey, IssuerKeyRing, ScannerKeyRing, SigningKey
from shared.ticket_code import CodeRejection, RejectionKind, TicketCode, read_code
from sync_server.db.models import TicketKey
from sync_server.domain.keys.sealing import MasterKey

SIGNING = "signing"
ENCRYPTION = "encryption"
_CACHED_RINGS = 512  # opened rings kept per process (least recently used dropped first)


class KeyStore:
    def __init__(self, master_key: bytes) -> None:
        self._master = MasterKey(master_key)
        self._rings: OrderedDict[
            tuple[uuid.UUID, frozenset[tuple[str, int, bool]]], IssuerKeyRing
        ] = OrderedDict()
        self._readers: OrderedDict[tuple[uuid.UUID, uuid.UUID], ScannerKeyRing] = OrderedDict()

    async def create(
        self, session: AsyncSession, *, tenant_id: uuid.UUID, event_id: uuid.UUID
    ) -> IssuerKeyRing:
        """Generate and store the first keys of a new event."""
        ring = IssuerKeyRing.generate()
        self._store(session, ring, tenant_id=tenant_id, event_id=event_id, only_active=False)
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
        # This process reads the event's codes with the new ring from now on; other processes
        # keep theirs until a code names a key they lack — the codes under the retired key are
        # refused there all the same, as superseded, once their tickets have new codes.
        self._readers.pop((tenant_id, event_id), None)
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
        self, session: AsyncSession, text: str, *, tenant_id: uuid.UUID, event_id: uuid.UUID
    ) -> TicketCode | CodeRejection:
        """Read ``text`` with the keys of ``event_id`` (which the caller has established belongs
        to ``tenant_id``). The opened ring is cached per event, so the hot path costs no query;
        a code naming a key the cached ring lacks (after a rotation) reloads it once."""
        cache_key = (tenant_id, event_id)
        ring = self._readers.get(cache_key)
        if ring is not None:
            result = read_code(ring, text)
            if not (isinstance(result, CodeRejection) and result.kind is RejectionKind.UNKNOWN_KEY):
                self._readers.move_to_end(cache_key)
                return result
        try:
            ring = await self.scanner_ring(session, event_id, tenant_id=tenant_id)
        except LookupError:
            ring = ScannerKeyRing()
        self._readers[cache_key] = ring
        if len(self._readers) > _CACHED_RINGS:
            self._readers.popitem(last=False)
        return read_code(ring, text)

    async def scanner_ring(
        self, session: AsyncSession, event_id: uuid.UUID, *, tenant_id: uuid.UUID
    ) -> ScannerKeyRing:
        return (await self.issuer_ring(session, event_id, tenant_id=tenant_id)).scanner_ring

    async def events_with_encryption_key(
        self, session: AsyncSession, key_id: int
    ) -> list[uuid.UUID]:
        """The events (of the current tenant) that have an encryption key with this id."""
        found = await session.scalars(
            select(TicketKey.event_id).where(
                TicketKey.kind == ENCRYPTION, TicketKey.key_id == key_id
            )
        )
        return list(found)

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


#: How handlers and service providers receive the app's key store (provided as ``keys``).
KeysDep: TypeAlias = NamedDependency[SkipValidation[KeyStore]]
