"""Seed a demo tenant so the API can be tried at once: an event tonight with two ticket types,
a handful of sold tickets (one transferred, one revoked), and a manager token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.clock import ManualClock
from shared.ids import new_id
from sync_server.db.engine import Database
from sync_server.db.models import TicketType
from sync_server.domain.devices.schemas import EnrollmentCreate
from sync_server.domain.devices.services import DeviceService
from sync_server.domain.events.schemas import EventCreate
from sync_server.domain.events.services import EventService
from sync_server.domain.keys.services import KeyStore
from sync_server.domain.tenants.services import create_tenant
from sync_server.domain.tickets.schemas import (
    Holder,
    PurchaseRequest,
    RevokeRequest,
    TransferRequest,
)
from sync_server.domain.tickets.services import TicketService
from sync_server.http.auth import Principal, Role, mint_token
from sync_server.settings import Settings

GUESTS = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov")


@dataclass(frozen=True, slots=True)
class DemoTicket:
    label: str
    ticket_id: uuid.UUID
    code: str


@dataclass(frozen=True, slots=True)
class DemoSeed:
    tenant_id: uuid.UUID
    event_id: uuid.UUID
    manager_token: str
    tickets: list[DemoTicket]
    #: One-time codes that enroll a scanner, by gate.
    enrollment_codes: dict[str, str]


async def seed_demo(settings: Settings, now: datetime) -> DemoSeed:
    """Create the demo tenant and its data. Each call makes a new tenant (nothing is reused)."""
    tenant_id = await create_tenant(settings.database.admin_url, "Demo Venue")
    manager = Principal(subject="demo-manager", tenant_id=tenant_id, role=Role.MANAGER)
    keys = KeyStore(settings.master_key)
    database = Database(settings.database)
    tickets: list[DemoTicket] = []
    try:
        async with database.tenant(tenant_id) as session:
            event = await EventService(session, keys, manager).create(
                EventCreate(
                    name="Gatehouse Demo Night",
                    venue="Hall 1",
                    starts_at=now + timedelta(hours=1),
                    ends_at=now + timedelta(hours=6),
                    admission_opens_at=now - timedelta(hours=1),
                    allow_reentry=True,
                )
            )
            general, vip = (
                TicketType(
                    id=new_id(),
                    tenant_id=tenant_id,
                    event_id=event.id,
                    name=name,
                    capacity=cap,
                    sold=0,
                )
                for name, cap in (("General", 500), ("VIP", 50))
            )
            session.add_all([general, vip])
            await session.flush()
            service = TicketService(session, keys, manager, now)
            for index, guest in enumerate(GUESTS):
                ticket_type = vip if index == 0 else general
                purchase = await service.purchase(
                    PurchaseRequest(
                        ticket_type_id=ticket_type.id,
                        quantity=1,
                        holder=Holder(user_id=f"demo-user-{index + 1}", name=guest),
                    ),
                    tenant_id,
                )
                item = purchase.tickets[0]
                tickets.append(
                    DemoTicket(f"{ticket_type.name}, {guest}", item.ticket.id, item.code)
                )

            transferred_from = tickets[3]
            moved = await service.transfer(
                transferred_from.ticket_id,
                TransferRequest(holder=Holder(user_id="demo-user-9", name="Margaret Hamilton")),
            )
            tickets[3] = DemoTicket(
                f"{transferred_from.label} → old code, superseded by a transfer",
                transferred_from.ticket_id,
                transferred_from.code,
            )
            tickets.append(
                DemoTicket(
                    "General, Margaret Hamilton (after transfer)", moved.ticket.id, moved.code
                )
            )
            revoked = tickets[4]
            await service.revoke(revoked.ticket_id, RevokeRequest(reason="refunded (demo)"))
            tickets[4] = DemoTicket(f"{revoked.label} → revoked", revoked.ticket_id, revoked.code)
            devices = DeviceService(session, keys, ManualClock(now), manager)
            enrollment_codes = {
                gate: (
                    await devices.create_enrollment(
                        EnrollmentCreate(event_id=event.id, gate=gate),
                        default_ttl_seconds=12 * 3600,
                    )
                ).code
                for gate in ("North 1", "South 2")
            }
    finally:
        await database.close()
    token = mint_token(
        settings.auth.jwt_secret,
        tenant_id=tenant_id,
        role=Role.MANAGER,
        subject="demo-manager",
        ttl_seconds=12 * 3600,
    )
    return DemoSeed(
        tenant_id=tenant_id,
        event_id=event.id,
        manager_token=token,
        tickets=tickets,
        enrollment_codes=enrollment_codes,
    )
