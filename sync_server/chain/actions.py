"""Our chain actions on a ticket — mint, transfer out of custody, freeze — as signed
transactions, and the few chain reads the tracker needs to follow them.

Nothing here touches Postgres: :mod:`sync_server.domain.chain.minting` decides what to do from the
database and records what happened; this module builds, sends and looks.

Two kinds of trouble are told apart, because the tracker answers them differently:

* :class:`ChainUnavailable` — the node did not answer (timeout, refused connection, an HTTP
  error, an error answer to a read). Nothing is known; wait and ask again.
* :class:`Rejected` — the node answered ``sendTransaction`` with an error (preflight failed,
  unknown blockhash, bad signature): that transaction will never land.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.rpc.errors import SendTransactionPreflightFailureMessage
from solders.signature import Signature
from solders.transaction import Transaction
from solders.transaction_status import TransactionStatus
from spl.token.constants import TOKEN_2022_PROGRAM_ID
from spl.token.instructions import freeze_account
from spl.token.models import FreezeAccountParams

from sync_server.chain.client import ChainKeys
from sync_server.chain.nft import (
    TicketMetadata,
    build_transaction,
    mint_ticket_instructions,
    read_ticket_holding,
    ticket_mint_space,
    transfer_ticket_instructions,
)
from sync_server.chain.token2022 import AccountLayoutError
from sync_server.observability.redaction import redact

#: Solana's packet limit: a larger transaction is refused by every node.
PACKET_LIMIT = 1232
#: Signatures per ``getSignatureStatuses`` call (the RPC's own cap).
STATUS_BATCH = 256


class ActionKind(StrEnum):
    MINT = "mint"
    TRANSFER = "transfer"
    FREEZE = "freeze"


class ChainUnavailable(Exception):
    """The node did not answer usefully; nothing is known about what was asked."""


class Rejected(Exception):
    """The node refused to take a transaction: it will never land (this signature)."""


class Unbuildable(Exception):
    """A transaction cannot be made from what the ticket says (a wallet that is not a Solana
    address, metadata too long for one packet): no retry can fix it."""


@dataclass(frozen=True, slots=True)
class Holding:
    """The token account that holds a ticket (amount 1), as read in ``slot``."""

    account: Pubkey
    owner: Pubkey
    frozen: bool
    slot: int


@dataclass(frozen=True, slots=True)
class Statuses:
    """``getSignatureStatuses``: ``slot`` is the node's slot when it answered."""

    slot: int
    of: dict[str, TransactionStatus | None]


def wallet(address: str) -> Pubkey:
    """``address`` as a public key; raises :class:`Unbuildable` when it is not one."""
    try:
        return Pubkey.from_string(address)
    except ValueError as error:
        raise Unbuildable(f"{address!r} is not a Solana address") from error


def _signed(
    keys: ChainKeys, instructions: Sequence[object], signers: Sequence[Keypair], blockhash: Hash
) -> Transaction:
    # The issuer pays every fee; with no separate custody key the custodian *is* the issuer,
    # and a keypair may sign a transaction only once.
    others = [k for k in signers if k.pubkey() != keys.issuer.pubkey()]
    transaction = build_transaction(
        instructions,  # type: ignore[arg-type]  # a Sequence[Instruction]
        payer=keys.issuer,
        signers=others,
        blockhash=blockhash,
    )
    size = len(bytes(transaction))
    if size > PACKET_LIMIT:
        raise Unbuildable(f"the transaction is {size} bytes, over Solana's {PACKET_LIMIT}")
    return transaction


def mint_transaction(
    keys: ChainKeys,
    *,
    ticket_id: uuid.UUID,
    owner: Pubkey,
    metadata: TicketMetadata,
    rent_lamports: int,
    blockhash: Hash,
) -> Transaction:
    """The ticket's one minting transaction, to ``owner``, signed by the issuer and the
    ticket's deterministic mint keypair (so it can only ever succeed once)."""
    mint = keys.mint_keypair(ticket_id)
    instructions = mint_ticket_instructions(
        issuer=keys.issuer.pubkey(),
        mint=mint.pubkey(),
        holder=owner,
        metadata=metadata,
        rent_lamports=rent_lamports,
    )
    return _signed(keys, instructions, [mint], blockhash)


def transfer_transaction(
    keys: ChainKeys, *, mint: Pubkey, to_wallet: Pubkey, blockhash: Hash
) -> Transaction:
    """Custody gives the ticket to ``to_wallet``: custody signs, the issuer pays."""
    instructions = transfer_ticket_instructions(
        mint=mint,
        from_wallet=keys.custody.pubkey(),
        to_wallet=to_wallet,
        payer=keys.issuer.pubkey(),
    )
    return _signed(keys, instructions, [keys.custody], blockhash)


def freeze_transaction(
    keys: ChainKeys, *, mint: Pubkey, token_account: Pubkey, blockhash: Hash
) -> Transaction:
    """Freeze the account holding the ticket (revocation); the issuer, the freeze authority,
    signs. The account is the one found holding it, not a derived one: a holder may keep
    the ticket in any token account of theirs."""
    instruction = freeze_account(
        FreezeAccountParams(
            program_id=TOKEN_2022_PROGRAM_ID,
            account=token_account,
            mint=mint,
            authority=keys.issuer.pubkey(),
        )
    )
    return _signed(keys, [instruction], [], blockhash)


def describe_rejection(error: RPCException) -> str:
    """The node's message, with the program log line that says why when there is one."""
    answer = error.args[0] if error.args else error
    message = str(getattr(answer, "message", answer))
    if isinstance(answer, SendTransactionPreflightFailureMessage):
        logs = [line for line in answer.data.logs or [] if "failed" not in line.lower()]
        if logs:
            message = f"{message} ({logs[-1]})"
    return message


class ChainReader:
    """The RPC calls the tracker makes, with failures sorted into :class:`ChainUnavailable`
    and :class:`Rejected`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def latest_blockhash(self) -> tuple[Hash, int]:
        """A blockhash and the last block height at which a transaction using it can land."""
        try:
            answer = (await self._client.get_latest_blockhash()).value
        except (SolanaRpcException, RPCException, OSError) as error:
            raise ChainUnavailable(f"getLatestBlockhash: {_why(error)}") from error
        return answer.blockhash, answer.last_valid_block_height

    async def block_height(self) -> int:
        """The finalized block height: a blockhash whose last valid height is below it can
        never land any more, on any fork."""
        try:
            return (await self._client.get_block_height(Commitment("finalized"))).value
        except (SolanaRpcException, RPCException, OSError) as error:
            raise ChainUnavailable(f"getBlockHeight: {_why(error)}") from error

    async def rent(self, metadata: TicketMetadata) -> int:
        """Lamports that keep a ticket mint with ``metadata`` rent-exempt at its final size."""
        _, size = ticket_mint_space(metadata)
        try:
            return (await self._client.get_minimum_balance_for_rent_exemption(size)).value
        except (SolanaRpcException, RPCException, OSError) as error:
            raise ChainUnavailable(f"getMinimumBalanceForRentExemption: {_why(error)}") from error

    async def statuses(self, signatures: Sequence[str]) -> Statuses:
        found: dict[str, TransactionStatus | None] = {}
        slot = 0
        for start in range(0, len(signatures), STATUS_BATCH):
            chunk = list(signatures[start : start + STATUS_BATCH])
            try:
                answer = await self._client.get_signature_statuses(
                    [Signature.from_string(s) for s in chunk]
                )
            except (SolanaRpcException, RPCException, OSError) as error:
                raise ChainUnavailable(f"getSignatureStatuses: {_why(error)}") from error
            slot = max(slot, answer.context.slot)
            found.update(zip(chunk, answer.value, strict=True))
        return Statuses(slot=slot, of=found)

    async def send(self, transaction: Transaction) -> None:
        """Hand ``transaction`` to the node, with preflight (a transaction that would fail is
        refused at once, and never lands). Raises :class:`Rejected` or
        :class:`ChainUnavailable` (then it may or may not have been taken)."""
        try:
            await self._client.send_raw_transaction(
                bytes(transaction),
                TxOpts(skip_confirmation=True, preflight_commitment=Commitment("confirmed")),
            )
        except RPCException as error:
            raise Rejected(describe_rejection(error)) from error
        except (SolanaRpcException, OSError) as error:
            raise ChainUnavailable(f"sendTransaction: {_why(error)}") from error

    async def holding(self, mint: Pubkey) -> Holding | None:
        """The account holding the ticket, or None when the mint does not exist (yet) or no
        account holds its token."""
        try:
            mint_account = await self._client.get_account_info(mint)
            if mint_account.value is None:
                return None
            largest = await self._client.get_token_largest_accounts(mint)
            for balance in largest.value:
                if balance.amount.amount != "1":
                    continue
                account = await self._client.get_account_info(balance.address)
                if account.value is None:
                    continue
                try:
                    token = read_ticket_holding(bytes(account.value.data))
                except AccountLayoutError:
                    continue
                return Holding(
                    account=balance.address,
                    owner=token.owner,
                    frozen=token.frozen,
                    slot=account.context.slot,
                )
        except (SolanaRpcException, RPCException, OSError) as error:
            raise ChainUnavailable(f"reading mint {mint}: {_why(error)}") from error
        return None

    async def creation(self, mint: Pubkey) -> tuple[str, int] | None:
        """The signature and slot of the transaction that created ``mint`` (its oldest
        successful one), when the node still has the history."""
        try:
            answer = await self._client.get_signatures_for_address(mint, limit=1000)
        except (SolanaRpcException, RPCException, OSError) as error:
            raise ChainUnavailable(f"getSignaturesForAddress: {_why(error)}") from error
        succeeded = [entry for entry in answer.value if entry.err is None]
        if not succeeded:
            return None
        oldest = succeeded[-1]  # newest first
        return str(oldest.signature), oldest.slot


def _why(error: BaseException) -> str:
    # solana-py wraps the transport's error (httpx's HTTPStatusError names the full RPC URL,
    # the provider's API key in it): its text goes through ``redact``.
    cause = error.__cause__ or error
    text = str(getattr(cause, "args", [cause])[0] if getattr(cause, "args", None) else cause)
    text = redact(text.strip().splitlines()[0]) if text.strip() else ""
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__
