from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from shared.wire import ONE_LINE

#: A token's id as its ``jti`` claim says (ours are 32 hex digits; a gateway's may differ); one
#: line without control characters (a NUL reaching Postgres was a 500, found by the fuzz test).
TokenId = Annotated[str, msgspec.Meta(min_length=1, max_length=200), ONE_LINE]


class RevocationRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    jti: TokenId
    #: When the token expires (its ``exp``): the revocation is kept until then. Unset: as long
    #: as the longest-lived token this server issues to a manager or service may live.
    expires_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None


class RevocationOut(msgspec.Struct, kw_only=True):
    jti: str
    expires_at: datetime
    revoked_at: datetime
    revoked_by: str
