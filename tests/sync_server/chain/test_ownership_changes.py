"""The pure parser of transactions into ownership changes (no node, no database), and the
allowed moves of a ticket's ``blockchain_sync_status``."""

from __future__ import annotations

import pytest
from solders.account_decoder import UiTokenAmount
from solders.hash import Hash
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction, VersionedTransaction
from solders.transaction_status import (
    EncodedConfirmedTransactionWithStatusMeta,
    EncodedTransactionWithStatusMeta,
    TransactionErrorFieldless,
    TransactionErrorType,
    UiTransactionStatusMeta,
    UiTransactionTokenBalance,
)
from spl.token.constants import TOKEN_2022_PROGRAM_ID

from sync_server.chain.ownership_changes import ChangeKind, ownership_changes
from sync_server.domain.tickets.chain_sync import (
    TRANSITIONS,
    ChainSync,
    ChainSyncMoveError,
    check_move,
)

ALICE, BOB, MINT, OTHER_MINT = (Pubkey.new_unique() for _ in range(4))


def _balance(
    index: int, owner: Pubkey | None, amount: int, *, mint: Pubkey = MINT, decimals: int = 0
) -> UiTransactionTokenBalance:
    ui = UiTokenAmount(float(amount), decimals, str(amount), str(amount))
    return UiTransactionTokenBalance(index, mint, ui, owner, TOKEN_2022_PROGRAM_ID)


def _transaction(
    before: list[UiTransactionTokenBalance],
    after: list[UiTransactionTokenBalance],
    *,
    err: TransactionErrorType | None = None,
) -> EncodedConfirmedTransactionWithStatusMeta:
    meta = UiTransactionStatusMeta(
        err, 5000, [0], [0], None, None, before, after, None, None, None, None
    )
    message = Message.new_with_blockhash([], None, Hash.default())
    transaction = VersionedTransaction.from_legacy(Transaction.new_unsigned(message))
    return EncodedConfirmedTransactionWithStatusMeta(
        42, EncodedTransactionWithStatusMeta(transaction, meta, None), 1_700_000_000
    )


def test_a_transfer_names_both_holders() -> None:
    moved = _transaction([_balance(1, ALICE, 1)], [_balance(1, ALICE, 0), _balance(2, BOB, 1)])
    [change] = ownership_changes("sig", moved)
    assert (change.kind, change.from_wallet, change.to_wallet) == (
        ChangeKind.TRANSFER,
        str(ALICE),
        str(BOB),
    )
    assert (change.mint, change.signature, change.slot) == (str(MINT), "sig", 42)
    assert change.block_time is not None
    assert not change.owner_unknown


def test_mint_and_burn_have_nobody_on_one_side() -> None:
    [minted] = ownership_changes("m", _transaction([], [_balance(1, ALICE, 1)]))
    assert (minted.kind, minted.from_wallet, minted.to_wallet) == (
        ChangeKind.MINT,
        None,
        str(ALICE),
    )
    [burned] = ownership_changes(
        "b", _transaction([_balance(1, ALICE, 1)], [_balance(1, ALICE, 0)])
    )
    assert (burned.kind, burned.from_wallet, burned.to_wallet) == (
        ChangeKind.BURN,
        str(ALICE),
        None,
    )


def test_unchanged_holders_fungible_tokens_and_failed_transactions_are_left_out() -> None:
    frozen = _transaction([_balance(1, ALICE, 1)], [_balance(1, ALICE, 1)])
    fungible = _transaction(
        [_balance(1, ALICE, 5, mint=OTHER_MINT)], [_balance(1, BOB, 5, mint=OTHER_MINT)]
    )
    decimals = _transaction(
        [_balance(1, ALICE, 1, mint=OTHER_MINT, decimals=6)],
        [_balance(1, BOB, 1, mint=OTHER_MINT, decimals=6)],
    )
    failed = _transaction(
        [_balance(1, ALICE, 1)],
        [_balance(1, ALICE, 0), _balance(2, BOB, 1)],
        err=TransactionErrorFieldless.AccountInUse,
    )
    assert [ownership_changes("s", t) for t in (frozen, fungible, decimals, failed)] == [[]] * 4


def test_an_owner_left_out_is_flagged_unknown() -> None:
    [change] = ownership_changes(
        "s", _transaction([_balance(1, ALICE, 1)], [_balance(1, ALICE, 0), _balance(2, None, 1)])
    )
    assert change.owner_unknown
    assert (change.kind, change.to_wallet) == (ChangeKind.TRANSFER, None)


def test_sync_status_moves() -> None:
    assert not check_move("synced", ChainSync.SYNCED)  # staying put changes nothing
    assert check_move("not_minted", ChainSync.PENDING)
    assert check_move("pending", ChainSync.FAILED)
    assert check_move("out_of_sync", ChainSync.SYNCED)
    for status in ChainSync:
        assert ChainSync.NOT_MINTED not in TRANSITIONS[status]  # nothing goes back
    with pytest.raises(ChainSyncMoveError):
        check_move("not_minted", ChainSync.SYNCED)
    with pytest.raises(ChainSyncMoveError):
        check_move("failed", ChainSync.SYNCED)
