from __future__ import annotations

from litestar import post
from litestar.params import JSONBody
from litestar.types import ControllerRouterHandler

from sync_server.domain.tokens.schemas import RevocationOut, RevocationRequest
from sync_server.domain.tokens.services import revoke_token
from sync_server.http.auth import Role, allow
from sync_server.http.dependencies import ClockDep, PrincipalDep, SessionDep
from sync_server.http.problems import AUTHENTICATED, DocumentedOperation, problem_responses


@post(
    "/v1/tokens/revocations",
    guards=[allow(Role.MANAGER)],
    tags=["tokens"],
    status_code=201,
    operation_class=DocumentedOperation,
    responses=problem_responses(400, *AUTHENTICATED),
)
async def revoke(
    data: JSONBody[RevocationRequest],
    session: SessionDep,
    principal: PrincipalDep,
    clock: ClockDep,
) -> RevocationOut:
    """Revoke a token of the tenant by its ``jti``: from the next request on, every instance of
    the server refuses it (401 ``token_revoked``). Pass ``expires_at`` (the token's ``exp``)
    for a token that lives longer than 30 days. Revoking twice answers the first revocation."""
    return await revoke_token(
        session,
        principal.tenant_id,
        data.jti,
        expires_at=data.expires_at,
        actor=principal.actor,
        now=clock.now(),
    )


TOKEN_ROUTES: list[ControllerRouterHandler] = [revoke]
