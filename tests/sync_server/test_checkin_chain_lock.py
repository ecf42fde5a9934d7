"""The chain is never asked while the ticket's row is locked (issue 15): a gate waiting for a
slow chain holds no other gate or manager up on that ticket, and the chain's answer counts only
for the ticket as it still is once locked. Real Postgres and Redis; the chain is a stand-in
that looks at the ticket's row while it is asked."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared import wire
from shared.domain import VerdictResult
from sync_server.app import services
from sync_server.domain.checkin.admission import Gate
from sync_server.domain.checkin.ownership import OwnershipResult
from sync_server.domain.checkin.services import CheckInService
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import (
    buy,
    concurrent_client,
    connect,
    create_event,
    create_ticket_type,
    enrolled_device,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

WALLET = "HoLder1111111111111111111111111111111111111"


@pytest.fixture
async def api(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """The API in the test's own event loop, so the test may use the app's database too."""
    async with concurrent_client(app) as http:
        yield http


class ProbingChain:
    """Answers that ``WALLET`` holds every ticket; while asked, tries to lock the ticket's row
    from another connection (``NOWAIT``) and runs ``meanwhile``."""

    def __init__(self, settings: Settings, meanwhile: Callable[[], Awaitable[None]]) -> None:
        self._settings = settings
        self._meanwhile = meanwhile
        self.row_was_free: list[bool] = []

    async def check(
        self, *, ticket_id: uuid.UUID, nft_mint: str | None, holder_wallet: str | None
    ) -> OwnershipResult:
        async with connect(self._settings.database.admin_url) as connection:
            try:
                await connection.execute(
                    text("SELECT 1 FROM tickets WHERE id = :id FOR UPDATE NOWAIT"),
                    {"id": ticket_id},
                )
                self.row_was_free.append(True)
            except DBAPIError:
                self.row_was_free.append(False)
            await connection.rollback()
        await self._meanwhile()
        return OwnershipResult(verified=True, owner=WALLET)


async def _on_chain_ticket(
    api: httpx.AsyncClient, tenant: TenantHandle, settings: Settings
) -> tuple[uuid.UUID, str, Gate]:
    event = await create_event(api, tenant)
    ticket_type = await create_ticket_type(api, tenant, event["id"])
    bought = await buy(api, tenant, ticket_type["id"], 1)
    assert bought.status_code == 201, bought.text
    item = bought.json()["tickets"][0]
    ticket_id = uuid.UUID(item["ticket"]["id"])
    device = await enrolled_device(api, tenant, event["id"])
    await _admin(
        settings,
        "UPDATE tickets SET nft_mint = :mint, holder_wallet = :wallet, "
        "blockchain_sync_status = 'synced' WHERE id = :id",
        id=ticket_id,
        mint=f"Mint{ticket_id.hex}",  # one mint per ticket
        wallet=WALLET,
    )
    gate = Gate(
        name=device.gate,
        actor=f"device:{device.device_id}",
        event_id=uuid.UUID(event["id"]),
        device_id=uuid.UUID(device.device_id),
    )
    return ticket_id, item["code"], gate


async def _admin(settings: Settings, sql: str, **values: object) -> None:
    async with connect(settings.database.admin_url) as connection:
        # A hang guard, not a timing: a gate that held the row while asking would keep this
        # write (made while it asks) waiting for ever.
        await connection.execute(text("SET lock_timeout = '10s'"))
        await connection.execute(text(sql), values)
        await connection.commit()


async def _validate(
    app: Litestar, tenant: TenantHandle, chain: ProbingChain, gate: Gate, code: str
) -> wire.Verdict:
    built = services(app)
    async with built.database.tenant(tenant.id) as session:
        service = CheckInService(
            session, built.keys, chain, tenant_id=tenant.id, now=built.clock.now()
        )
        return await service.validate(gate, wire.ValidateRequest(code=code))


async def test_the_chain_is_asked_with_the_ticket_unlocked_and_its_answer_counts(
    app: Litestar, api: httpx.AsyncClient, tenant: TenantHandle, settings: Settings
) -> None:
    _, code, gate = await _on_chain_ticket(api, tenant, settings)

    async def nothing() -> None:
        return None

    chain = ProbingChain(settings, nothing)
    verdict = await _validate(app, tenant, chain, gate, code)

    assert chain.row_was_free == [True]
    assert verdict.result is VerdictResult.ADMITTED
    assert verdict.chain_verified is True


async def test_an_answer_about_a_ticket_that_changed_meanwhile_is_not_used(
    app: Litestar, api: httpx.AsyncClient, tenant: TenantHandle, settings: Settings
) -> None:
    ticket_id, code, gate = await _on_chain_ticket(api, tenant, settings)

    async def moved_on_chain() -> None:  # the listener records a move while the gate asks
        await _admin(
            settings,
            "UPDATE tickets SET holder_wallet = 'Other111111111111111111111111111111111111111' "
            "WHERE id = :id",
            id=ticket_id,
        )

    chain = ProbingChain(settings, moved_on_chain)
    verdict = await _validate(app, tenant, chain, gate, code)

    assert chain.row_was_free == [True]
    # Admitted on the database's word, and not claimed chain-verified: the answer was about
    # the holder the ticket no longer has.
    assert verdict.result is VerdictResult.ADMITTED
    assert verdict.chain_verified is None
