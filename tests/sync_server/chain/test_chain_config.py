"""``GET /v1/chain/config`` (the server's Solana setup in public facts, never a secret) and
``GET /v1/chain/metadata/{mint}`` (a ticket NFT's public metadata)."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from solders.pubkey import Pubkey

from sync_server.app import create_app
from sync_server.chain.client import ChainKeys
from sync_server.http.auth import Role
from sync_server.settings import Settings
from tests.sync_server.chain.onchain_tickets import record_on_ticket
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import (
    HOLDER,
    assert_problem,
    buy,
    create_event,
    create_ticket_type,
    enrolled_device,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

PROGRAM_2022 = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"  # Token-2022, as published
#: An RPC URL the way a provider hands it out: the API key is part of it.
PROVIDER_RPC = "https://rpc.provider.example/?api-key=k3y-2f9c1e77-never-show-me"


@pytest.fixture
def provider_settings(chain_server_settings: Settings) -> Settings:
    chain = dataclasses.replace(
        chain_server_settings.chain,
        rpc_url=PROVIDER_RPC,
        ws_url="wss://rpc.provider.example/?api-key=k3y-2f9c1e77-never-show-me",
        cluster="devnet",
        symbol="VENUE",
        metadata_base_url="https://tickets.example/v1/chain/metadata/",
        resale_fee_bps=250,
    )
    return dataclasses.replace(chain_server_settings, chain=chain)


@pytest.fixture
async def chain_client(provider_settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(provider_settings)) as client:
        yield client


def _secret_texts(keys: ChainKeys, settings: Settings) -> list[str]:
    """Every form a secret of the chain settings could leak in."""
    texts = ["k3y-2f9c1e77", "rpc.provider.example", settings.chain.issuer_keypair]
    for pair in (keys.issuer, keys.custody):
        secret = bytes(pair)
        texts += [
            str(pair),  # base58 of the 64-byte keypair
            base64.b64encode(secret).decode(),
            secret.hex(),
            json.dumps(list(secret)),
            ",".join(str(b) for b in secret[:32]),
        ]
    return texts


async def test_the_config_with_the_chain_on_names_public_facts_only(
    chain_client: AsyncTestClient[Litestar],
    tenant: TenantHandle,
    chain_keys: ChainKeys,
    provider_settings: Settings,
) -> None:
    response = await chain_client.get("/v1/chain/config", headers=tenant.token(Role.MANAGER))

    assert response.status_code == 200, response.text
    issuer = str(chain_keys.issuer.pubkey())
    assert response.json() == {
        "enabled": True,
        "cluster": "devnet",
        "commitment": "confirmed",
        "issuer": issuer,
        "custody_wallet": str(chain_keys.custody.pubkey()),
        "mint": {
            "token_program_id": PROGRAM_2022,
            "decimals": 0,
            "supply": 1,
            "mint_authority": None,
            "freeze_authority": issuer,
            "metadata_update_authority": issuer,
            "fee_payer": issuer,
        },
        "metadata": {
            "symbol": "VENUE",
            "uri_base": "https://tickets.example/v1/chain/metadata",
            "attribute_keys": ["event_id", "ticket_type"],
        },
        "resale_fee": {"bps": 250, "charged": "off_chain"},
        "ownership_timeout_seconds": provider_settings.chain.ownership_timeout_seconds,
    }
    for secret in _secret_texts(chain_keys, provider_settings):
        assert secret not in response.text


async def test_services_and_scanners_may_read_it_and_a_revoked_scanner_may_not(
    chain_client: AsyncTestClient[Litestar], tenant: TenantHandle
) -> None:
    service = await chain_client.get("/v1/chain/config", headers=tenant.token(Role.SERVICE))
    assert service.status_code == 200, service.text

    event = await create_event(chain_client, tenant)
    device = await enrolled_device(chain_client, tenant, event["id"])
    scanner = await chain_client.get("/v1/chain/config", headers=device.headers)
    assert scanner.status_code == 200, scanner.text
    assert scanner.json()["enabled"] is True

    revoked = await chain_client.delete(f"/v1/devices/{device.device_id}", headers=tenant.token())
    assert revoked.status_code in (200, 204), revoked.text
    after = await chain_client.get("/v1/chain/config", headers=device.headers)
    assert_problem(after, 401, "device_revoked")

    anonymous = await chain_client.get("/v1/chain/config")
    assert anonymous.status_code == 401


async def test_the_config_with_the_chain_off_is_enabled_false_and_nulls(
    client: AsyncTestClient[Litestar], tenant: TenantHandle, settings: Settings
) -> None:
    assert not settings.chain.enabled
    response = await client.get("/v1/chain/config", headers=tenant.token(Role.MANAGER))

    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body.pop("enabled") is False
    assert body == dict.fromkeys(
        [
            "cluster",
            "commitment",
            "issuer",
            "custody_wallet",
            "mint",
            "metadata",
            "resale_fee",
            "ownership_timeout_seconds",
        ]
    )


async def test_a_minted_tickets_metadata_is_public_and_says_nothing_of_its_holder(
    chain_client: AsyncTestClient[Litestar],
    tenant: TenantHandle,
    chain_keys: ChainKeys,
    provider_settings: Settings,
) -> None:
    event = await create_event(chain_client, tenant, name="Spring Concert", venue="Main Hall")
    ticket_type = await create_ticket_type(chain_client, tenant, event["id"], name="Balcony")
    bought = await buy(chain_client, tenant, ticket_type["id"], quantity=2)
    assert bought.status_code == 201, bought.text
    minted, unminted = (uuid.UUID(t["ticket"]["id"]) for t in bought.json()["tickets"])
    mint = chain_keys.mint_keypair(minted).pubkey()
    await record_on_ticket(
        provider_settings, minted, mint=mint, owner=chain_keys.custody.pubkey(), status="synced"
    )

    response = await chain_client.get(f"/v1/chain/metadata/{mint}")  # no token

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "public, max-age=300"
    body = response.json()
    assert body["name"] == "Spring Concert"
    assert body["symbol"] == "VENUE"
    assert "Balcony" in body["description"]
    attributes = {a["trait_type"]: a["value"] for a in body["attributes"]}
    assert attributes["event_id"] == event["id"]
    assert attributes["ticket_type"] == "Balcony"
    assert attributes["venue"] == "Main Hall"
    for personal in (HOLDER["name"], HOLDER["user_id"]):
        assert personal not in response.text
    # Issue 14 item 8: the ticket id is inside the ticket's code; public metadata must not
    # hand it to anyone (in any spelling).
    for ticket_id in (minted, unminted):
        for spelling in (str(ticket_id), ticket_id.hex, ticket_id.hex.upper()):
            assert spelling not in response.text

    # No NFT recorded for that mint; no such mint; no address at all.
    for missing in (chain_keys.mint_keypair(unminted).pubkey(), Pubkey.new_unique()):
        assert_problem(await chain_client.get(f"/v1/chain/metadata/{missing}"), 404, "not_found")
    bad = await chain_client.get(f"/v1/chain/metadata/{minted}")
    assert_problem(bad, 400, "invalid_mint")
    assert bad.json()["field"] == "mint"


async def test_no_metadata_is_served_with_the_chain_off(
    client: AsyncTestClient[Litestar], tenant: TenantHandle
) -> None:
    assert_problem(await client.get(f"/v1/chain/metadata/{Pubkey.new_unique()}"), 404, "not_found")
