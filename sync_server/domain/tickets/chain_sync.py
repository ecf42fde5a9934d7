"""A ticket's ``blockchain_sync_status``: how its NFT stands with the chain, and the moves it may
make — in one place, for the minting consumer, the tracker, the listener and the gate.

The stored values are the enum's values (migration 0006 names them), so the column is still
text and nothing was migrated.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from sync_server.db.models import Ticket


class ChainSync(enum.StrEnum):
    """``tickets.blockchain_sync_status``."""

    #: No NFT, and none queued: the chain is off, or was when the ticket was sold.
    NOT_MINTED = "not_minted"
    #: A chain action of ours (mint, transfer, freeze) is queued or in flight.
    PENDING = "pending"
    #: The chain and the database agree, as far as we know.
    SYNCED = "synced"
    #: The chain was seen to disagree (the gate, or the listener, saw another owner); the
    #: listener's reconcile settles it.
    OUT_OF_SYNC = "out_of_sync"
    #: The last chain action of ours failed for good; an operator's retry queues it again.
    FAILED = "failed"


#: Every move a ticket's sync status may make (staying put is always allowed), and who makes it:
#:
#: * ``→ pending``: the minting consumer queues an action (``chain.minting.reconcile``);
#: * ``pending →`` ``synced`` or ``out_of_sync`` (the holder moved a fresh NFT before it
#:   finalized): the tracker applies a finished action; ``→ failed``: it gives up;
#: * ``→ out_of_sync``: the gate or the listener saw the chain disagree;
#: * ``out_of_sync → synced``: the listener applied the chain's word.
#:
#: Nothing goes back to ``not_minted``. A settled ticket (``synced``/``out_of_sync``) may still
#: see an action of ours finish or fail, since the listener may settle it while one is in
#: flight.
TRANSITIONS: Mapping[ChainSync, frozenset[ChainSync]] = {
    ChainSync.NOT_MINTED: frozenset({ChainSync.PENDING}),
    ChainSync.PENDING: frozenset({ChainSync.SYNCED, ChainSync.OUT_OF_SYNC, ChainSync.FAILED}),
    ChainSync.SYNCED: frozenset({ChainSync.PENDING, ChainSync.OUT_OF_SYNC, ChainSync.FAILED}),
    ChainSync.OUT_OF_SYNC: frozenset({ChainSync.PENDING, ChainSync.SYNCED, ChainSync.FAILED}),
    ChainSync.FAILED: frozenset({ChainSync.PENDING, ChainSync.OUT_OF_SYNC}),
}

#: Statuses under which the gate asks the chain who holds the NFT: it exists and no action of
#: ours is in flight (``synced``), or the chain was seen to disagree (``out_of_sync``).
SETTLED = frozenset({ChainSync.SYNCED, ChainSync.OUT_OF_SYNC})


class ChainSyncMoveError(ValueError):
    """A move :data:`TRANSITIONS` does not allow: a bug in the caller."""


def check_move(current: str, to: ChainSync) -> bool:
    """Whether ``current`` → ``to`` changes anything; raises :class:`ChainSyncMoveError` when
    the move is not allowed."""
    if current == to:
        return False
    allowed = TRANSITIONS.get(ChainSync(current), frozenset())
    if to not in allowed:
        raise ChainSyncMoveError(f"blockchain_sync_status cannot go from {current} to {to}")
    return True


def move_chain_sync(ticket: Ticket, to: ChainSync) -> bool:
    """Set the ticket's sync status to ``to`` if :data:`TRANSITIONS` allows it; True when it
    changed. The caller holds the ticket's lock, sets ``updated_at`` and calls
    ``ticket_written`` as for any change of the row."""
    if not check_move(ticket.blockchain_sync_status, to):
        return False
    ticket.blockchain_sync_status = to.value
    return True
