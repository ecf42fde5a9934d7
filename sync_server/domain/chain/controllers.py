from __future__ import annotations

from litestar import get
from litestar.types import ControllerRouterHandler

from sync_server.auth import Role, allow
from sync_server.domain.chain.schemas import ChainConfig
from sync_server.domain.chain.services import chain_config
from sync_server.runtime import PrincipalDep, RuntimeDep, caller_session


# Scanners may read it too: everything in it is public on-chain anyway, and a scanner can tell
# staff whether "not chain-verified" means the chain is off or merely unreachable.
@get(
    "/v1/chain/config",
    guards=[allow(Role.MANAGER, Role.SERVICE, Role.SCANNER)],
    tags=["chain"],
)
async def config(rt: RuntimeDep, principal: PrincipalDep) -> ChainConfig:
    """The server's Solana configuration: cluster, token program, issuer and custody public
    keys, what every ticket mint looks like, metadata, commitment and the resale fee. 200 with
    ``enabled: false`` and nulls when the chain is off. Never the RPC URL or any secret."""
    if principal.device_id is not None:
        # A revoked device's token stops working everywhere, this read included (401).
        async with caller_session(rt.database, principal):
            pass
    return chain_config(rt.settings.chain, rt.chain_keys)


CHAIN_ROUTES: list[ControllerRouterHandler] = [config]
