from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

from shared.domain import TicketStatus
from shared.wire import ONE_LINE, PROSE

MAX_PER_PURCHASE = 50

#: A Solana address: base58, 32 to 44 characters.
Wallet = Annotated[str, msgspec.Meta(pattern=r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")]


class Holder(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    user_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200), ONE_LINE]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200), ONE_LINE]
    wallet: Wallet | None = None


class PurchaseRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    ticket_type_id: uuid.UUID
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_PER_PURCHASE)] = 1
    holder: Holder


class TransferRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    holder: Holder


class RevokeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500), PROSE]
    #: Whether the seat goes back on sale (the ticket type's capacity); None: as the ticket
    #: type says (``release_seat``, default false).
    release_seat: bool | None = None


class TicketOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    event_id: uuid.UUID
    ticket_type_id: uuid.UUID
    purchase_id: uuid.UUID
    status: TicketStatus
    secret_version: int
    holder: Holder
    nft_mint: str | None
    blockchain_sync_status: str
    created_at: datetime
    updated_at: datetime


class TicketWithCode(msgspec.Struct, kw_only=True):
    """A ticket and the text of its current QR code (render it with any QR library)."""

    ticket: TicketOut
    code: str


class PurchaseOut(msgspec.Struct, kw_only=True):
    purchase_id: uuid.UUID
    tickets: list[TicketWithCode]


class TicketPage(msgspec.Struct, kw_only=True):
    items: list[TicketOut]
    next_cursor: str | None


class TransitionOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    kind: str
    from_status: TicketStatus | None
    to_status: TicketStatus
    secret_version: int
    actor: str
    reason: str | None
    details: dict[str, Any]
    occurred_at: datetime
