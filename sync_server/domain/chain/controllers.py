from __future__ import annotations

from typing import TypeAlias

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, SkipValidation
from litestar.types import ControllerRouterHandler

from sync_server.domain.chain.schemas import ChainConfig, TicketNftMetadata
from sync_server.domain.chain.services import ChainInfo
from sync_server.http.auth import Role, allow
from sync_server.http.dependencies import ActiveDeviceDep
from sync_server.http.problems import (
    AUTHENTICATED,
    DocumentedOperation,
    PublicOperation,
    problem_responses,
)

ChainInfoDep: TypeAlias = NamedDependency[SkipValidation[ChainInfo]]


# Scanners may read it too: everything in it is public on-chain anyway, and a scanner can tell
# staff whether "not chain-verified" means the chain is off or merely unreachable.
@get(
    "/v1/chain/config",
    guards=[allow(Role.MANAGER, Role.SERVICE, Role.SCANNER)],
    tags=["chain"],
    operation_class=DocumentedOperation,
    responses=problem_responses(*AUTHENTICATED),
)
async def config(
    # A revoked device's token stops working everywhere, this read included (401).
    active_device: ActiveDeviceDep,
    chain_info: ChainInfoDep,
) -> ChainConfig:
    """The server's Solana configuration: cluster, token program, issuer and custody public
    keys, what every ticket mint looks like, metadata, commitment and the resale fee. 200 with
    ``enabled: false`` and nulls when the chain is off. Never the RPC URL or any secret."""
    return chain_info.config()


@get(
    "/v1/chain/metadata/{mint:str}",
    opt={"exclude_from_auth": True},
    tags=["chain"],
    operation_class=PublicOperation,
    responses=problem_responses(400, 404, 429, 503),
)
async def metadata(mint: FromPath[str], chain_info: ChainInfoDep) -> Response[TicketNftMetadata]:
    """The off-chain JSON a ticket NFT's metadata uri points at, by the NFT's mint address (no
    token needed: wallets and explorers fetch it): name, symbol, description, attributes.
    Nothing about the holder, and no ticket id. 400 when ``mint`` is not an address, 404 when
    no ticket has that NFT or the chain is off."""
    found = await chain_info.nft_metadata(mint)
    # Changes only when the event is renamed or moved: let caches keep it a while.
    return Response(found, headers={"Cache-Control": "public, max-age=300"})


CHAIN_ROUTES: list[ControllerRouterHandler] = [config, metadata]
