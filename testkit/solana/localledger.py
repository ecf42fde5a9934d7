"""The ledger behind the local Solana node: LiteSVM plus what an RPC node remembers.

LiteSVM executes a transaction the moment it receives it and keeps only account state. A real
node also keeps a history (which transactions touched which address, in which slot, with which
logs and balances) and tells clients how settled each one is. :class:`LocalLedger` adds exactly
that, and answers the JSON-RPC methods the production client calls with the shapes mainnet
answers with (``result`` values; the transport lives in :mod:`testkit.solana.localnode`).

Commitment is modelled on slots, not faked: a transaction lands in the current slot and is
``processed``; it becomes ``confirmed`` once one more slot has passed and ``finalized`` once
:data:`FINALITY_DEPTH` slots have (the depth after which a real cluster roots a slot). Slots only
move when :meth:`LocalLedger.advance` is called (tests) or the node ticks them (the demo), so a
test decides exactly when its transaction is final. Reads of account state (``getBalance``,
``getAccountInfo``...) always see the latest, processed state whatever commitment is asked for;
history reads (``getTransaction``, ``getSignaturesForAddress``) honour the commitment.

Everything here is thread-safe: one lock guards LiteSVM and the history, so tests may drive the
ledger from their own thread while the node serves it from another.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from solders.account import Account
from solders.compute_budget import set_compute_unit_price
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata
from spl.token.constants import TOKEN_2022_PROGRAM_ID, TOKEN_PROGRAM_ID

TOKEN_PROGRAMS = (TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID)

#: Slots after which a landed transaction counts as finalized (a real cluster roots a slot once
#: 32 later slots have voted on it).
FINALITY_DEPTH = 32
#: How many slots a commitment level trails the newest slot by.
COMMITMENT_DEPTH = {"processed": 0, "confirmed": 1, "finalized": FINALITY_DEPTH}
#: Mainnet's target slot time; block times advance by it.
SLOT_SECONDS = 0.4
#: A blockhash is accepted for this many blocks on a real cluster (reported, not enforced).
BLOCKHASH_VALIDITY = 150
#: Lamports the faucet behind requestAirdrop starts with.
FAUCET_LAMPORTS = 10**18

_TOKEN_ACCOUNT_LEN = 165
_MINT_DECIMALS_OFFSET = 44
_TOKEN_2022_ACCOUNT_TYPE_ACCOUNT = 2
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

# JSON-RPC error codes as Agave's RPC answers them.
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
PREFLIGHT_FAILURE = -32002
SIGNATURE_VERIFICATION_FAILURE = -32003


class RpcError(Exception):
    """A JSON-RPC error object: the node answers it instead of a result."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        """The ``error`` member of a JSON-RPC response."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            body["data"] = self.data
        return body


def b58encode(data: bytes) -> str:
    """Base58 (Bitcoin alphabet) as Solana uses it for signatures and instruction data."""
    number = int.from_bytes(data, "big")
    digits = ""
    while number:
        number, rest = divmod(number, 58)
        digits = _B58_ALPHABET[rest] + digits
    leading = len(data) - len(data.lstrip(b"\0"))
    return "1" * leading + digits


def b58decode(text: str) -> bytes:
    """Inverse of :func:`b58encode`; raises ValueError on a character outside the alphabet."""
    number = 0
    for char in text:
        number = number * 58 + _B58_ALPHABET.index(char)
    leading = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * leading + body


@dataclass(frozen=True)
class LandedTransaction:
    """A transaction the ledger executed, with what a node's history keeps about it."""

    signature: Signature
    slot: int
    block_time: int
    transaction: VersionedTransaction
    err: Any  # the TransactionError in RPC JSON; None when it succeeded
    logs: list[str]
    fee: int
    compute_units: int
    inner_instructions: list[dict[str, Any]]
    pre_balances: list[int]
    post_balances: list[int]
    pre_token_balances: list[dict[str, Any]]
    post_token_balances: list[dict[str, Any]]
    post_accounts: dict[Pubkey, Account | None] = field(repr=False)

    @property
    def account_keys(self) -> list[Pubkey]:
        """The static account keys of the message (address lookup tables are not supported)."""
        return list(self.transaction.message.account_keys)


def account_json(account: Account | None, encoding: str) -> dict[str, Any] | None:
    """An account as ``getAccountInfo`` and ``accountNotification`` show it."""
    if account is None:
        return None
    data = bytes(account.data)
    if encoding == "base64":
        shown: list[str] = [base64.b64encode(data).decode(), "base64"]
    elif encoding in {"base58", "binary"}:
        shown = [b58encode(data), "base58"]
    else:
        raise RpcError(INVALID_PARAMS, f"Invalid params: encoding {encoding!r} is not supported")
    return {
        "data": shown,
        "executable": account.executable,
        "lamports": account.lamports,
        "owner": str(account.owner),
        "rentEpoch": account.rent_epoch,
        "space": len(data),
    }


def token_account_fields(account: Account | None) -> tuple[Pubkey, Pubkey, int] | None:
    """(mint, owner, amount) of an SPL Token or Token-2022 token account, else None."""
    if account is None or account.owner not in TOKEN_PROGRAMS:
        return None
    data = bytes(account.data)
    is_account = len(data) == _TOKEN_ACCOUNT_LEN or (
        len(data) > _TOKEN_ACCOUNT_LEN
        and data[_TOKEN_ACCOUNT_LEN] == _TOKEN_2022_ACCOUNT_TYPE_ACCOUNT
    )
    if not is_account:
        return None
    return (
        Pubkey.from_bytes(data[0:32]),
        Pubkey.from_bytes(data[32:64]),
        int.from_bytes(data[64:72], "little"),
    )


def ui_token_amount(amount: int, decimals: int) -> dict[str, Any]:
    """The ``uiTokenAmount`` / token balance object of the RPC."""
    value = Decimal(amount).scaleb(-decimals)
    text = format(value.normalize(), "f") if amount else "0"
    return {
        "amount": str(amount),
        "decimals": decimals,
        "uiAmount": float(value),
        "uiAmountString": text,
    }


def _err_json(result: FailedTransactionMetadata) -> Any:
    return json.loads(result.to_json())["err"]


def _preflight_message(err: Any) -> str:
    if isinstance(err, dict) and "InstructionError" in err:
        index, detail = err["InstructionError"]
        if isinstance(detail, dict) and "Custom" in detail:
            reason = f"custom program error: {detail['Custom']:#x}"
        else:
            reason = str(detail)
        return f"Transaction simulation failed: Error processing Instruction {index}: {reason}"
    if err == "BlockhashNotFound":
        return "Transaction simulation failed: Blockhash not found"
    if isinstance(err, dict) and "InsufficientFundsForRent" in err:
        index = err["InsufficientFundsForRent"]["account_index"]
        return (
            "Transaction simulation failed: Transaction results in an account "
            f"({index}) with insufficient funds for rent"
        )
    return f"Transaction simulation failed: {json.dumps(err)}"


def _config(params: Sequence[Any], index: int) -> dict[str, Any]:
    config = params[index] if len(params) > index else None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise RpcError(INVALID_PARAMS, "Invalid params: expected a configuration object")
    return config


def _pubkey(params: Sequence[Any], index: int = 0) -> Pubkey:
    try:
        return Pubkey.from_string(params[index])
    except (IndexError, TypeError, ValueError) as exc:
        raise RpcError(INVALID_PARAMS, "Invalid param: Invalid pubkey") from exc


def _signature(text: Any) -> Signature:
    try:
        return Signature.from_string(text)
    except (TypeError, ValueError) as exc:
        raise RpcError(INVALID_PARAMS, "Invalid param: Invalid signature") from exc


class LocalLedger:
    """LiteSVM (SPL Token and Token-2022 preloaded) with a node's history and commitment.

    :meth:`call` answers one JSON-RPC method; :meth:`advance` moves slots; ``on_change``
    callbacks run (outside the lock) after every landed transaction and every slot move.
    """

    def __init__(self) -> None:
        self.svm = LiteSVM()
        self._lock = threading.RLock()
        self._genesis_slot = self.svm.get_clock().slot
        self._genesis_time = int(time.time())
        self._history: list[LandedTransaction] = []
        self._by_signature: dict[Signature, int] = {}
        self._by_address: dict[Pubkey, list[int]] = {}
        self._airdrops = 0
        self.faucet = Keypair()
        self.svm.set_account(
            self.faucet.pubkey(),
            Account(lamports=FAUCET_LAMPORTS, data=b"", owner=SYSTEM_PROGRAM_ID),
        )
        self._set_clock(self._genesis_slot)
        self.on_change: list[Callable[[], None]] = []
        self._methods: dict[str, Callable[[Sequence[Any]], Any]] = {
            "getAccountInfo": self._get_account_info,
            "getBalance": self._get_balance,
            "getBlockHeight": lambda _params: self.slot,
            "getHealth": lambda _params: "ok",
            "getLatestBlockhash": self._get_latest_blockhash,
            "getMinimumBalanceForRentExemption": self._get_minimum_balance,
            "getSignatureStatuses": self._get_signature_statuses,
            "getSignaturesForAddress": self._get_signatures_for_address,
            "getSlot": lambda _params: self.slot,
            "getTokenLargestAccounts": self._get_token_largest_accounts,
            "getTransaction": self._get_transaction,
            "getVersion": lambda _params: {"solana-core": "2.2.0-litesvm", "feature-set": 0},
            "requestAirdrop": self._request_airdrop,
            "sendTransaction": self._send_transaction,
        }

    # -- slots ------------------------------------------------------------------------------

    @property
    def slot(self) -> int:
        """The newest slot (the one new transactions land in)."""
        with self._lock:
            return self.svm.get_clock().slot

    def advance(self, slots: int = 1) -> int:
        """Move the ledger ``slots`` slots on (settling earlier transactions); the new slot."""
        if slots < 1:
            raise ValueError("slots must be at least 1")
        with self._lock:
            target = self.svm.get_clock().slot + slots
            self.svm.warp_to_slot(target)
            self._set_clock(target)
        self._changed()
        return target

    def finalize(self) -> int:
        """Advance far enough that everything landed so far is finalized; the new slot."""
        return self.advance(FINALITY_DEPTH)

    def expire_blockhash(self) -> None:
        """Make the current blockhash invalid, as its 150 blocks running out would."""
        with self._lock:
            self.svm.expire_blockhash()

    def _set_clock(self, slot: int) -> None:
        clock = self.svm.get_clock()
        clock.unix_timestamp = self._block_time(slot)
        self.svm.set_clock(clock)

    def _block_time(self, slot: int) -> int:
        return self._genesis_time + int((slot - self._genesis_slot) * SLOT_SECONDS)

    def commitment_of(self, landed: LandedTransaction) -> str:
        """``processed``, ``confirmed`` or ``finalized``, from the slots passed since it landed."""
        depth = self.slot - landed.slot
        if depth >= FINALITY_DEPTH:
            return "finalized"
        return "confirmed" if depth >= 1 else "processed"

    def settled(self, landed: LandedTransaction, commitment: str) -> bool:
        """Whether ``landed`` has reached ``commitment``."""
        return self.slot - landed.slot >= COMMITMENT_DEPTH[commitment]

    # -- history ----------------------------------------------------------------------------

    def history(self, start: int = 0) -> list[LandedTransaction]:
        """Landed transactions from position ``start`` on, oldest first."""
        with self._lock:
            return self._history[start:]

    def history_length(self) -> int:
        """How many transactions have landed."""
        with self._lock:
            return len(self._history)

    def landed(self, signature: Signature) -> LandedTransaction | None:
        """The landed transaction with this signature, if any."""
        with self._lock:
            position = self._by_signature.get(signature)
            return None if position is None else self._history[position]

    # -- executing --------------------------------------------------------------------------

    def submit(self, transaction: VersionedTransaction, *, preflight: bool = True) -> Signature:
        """Execute a signed transaction as ``sendTransaction`` would.

        Raises :class:`RpcError`: -32003 on a bad signature, -32002 when preflight is on and the
        transaction fails. With preflight off, a transaction that fails while executing still
        lands (fee paid, ``err`` recorded), and one that cannot execute at all (unknown
        blockhash, duplicate, fee payer without funds) is dropped, as on a real cluster.
        """
        with self._lock:
            if preflight:
                simulated = self.svm.simulate_transaction(transaction)
                if isinstance(simulated, FailedTransactionMetadata):
                    self._reject(simulated)
            keys = list(transaction.message.account_keys)
            pre_accounts = [self.svm.get_account(key) for key in keys]
            result = self.svm.send_transaction(transaction)
            if isinstance(result, FailedTransactionMetadata):
                if result.meta().signature() == Signature.default():
                    # It never executed: with preflight on (or a bad signature) the caller
                    # hears why; otherwise it is silently dropped, its status staying null.
                    if preflight or _err_json(result) == "SignatureFailure":
                        self._reject(result)
                    return transaction.signatures[0]
                meta = result.meta()
                err = _err_json(result)
            else:
                meta, err = result, None
            self._record(transaction, meta, err, keys, pre_accounts)
        self._changed()
        return transaction.signatures[0]

    def airdrop(self, to: Pubkey, lamports: int) -> Signature:
        """Send lamports from the faucet in a real, logged transfer transaction."""
        with self._lock:
            self._airdrops += 1
            # A distinct priority fee keeps equal airdrops in one blockhash from being duplicates.
            message = Message.new_with_blockhash(
                [
                    set_compute_unit_price(self._airdrops),
                    transfer(
                        TransferParams(
                            from_pubkey=self.faucet.pubkey(), to_pubkey=to, lamports=lamports
                        )
                    ),
                ],
                self.faucet.pubkey(),
                self.svm.latest_blockhash(),
            )
            transaction = VersionedTransaction(message, [self.faucet])
        return self.submit(transaction, preflight=True)

    def _reject(self, failed: FailedTransactionMetadata) -> None:
        err = _err_json(failed)
        if err == "SignatureFailure":
            raise RpcError(
                SIGNATURE_VERIFICATION_FAILURE, "Transaction signature verification failure"
            )
        meta = failed.meta()
        raise RpcError(
            PREFLIGHT_FAILURE,
            _preflight_message(err),
            {
                "err": err,
                "logs": meta.logs(),
                "accounts": None,
                "unitsConsumed": meta.compute_units_consumed(),
                "returnData": None,
                "innerInstructions": None,
            },
        )

    def _record(
        self,
        transaction: VersionedTransaction,
        meta: TransactionMetadata,
        err: Any,
        keys: list[Pubkey],
        pre_accounts: list[Account | None],
    ) -> None:
        post_accounts = [self.svm.get_account(key) for key in keys]
        slot = self.svm.get_clock().slot
        inner = [
            {
                "index": index,
                "instructions": [
                    {
                        "programIdIndex": instruction.program_id_index,
                        "accounts": list(instruction.accounts),
                        "data": b58encode(bytes(instruction.data)),
                        "stackHeight": item.stack_height(),
                    }
                    for item in group
                    for instruction in [item.instruction()]
                ],
            }
            for index, group in enumerate(meta.inner_instructions())
            if group
        ]
        landed = LandedTransaction(
            signature=transaction.signatures[0],
            slot=slot,
            block_time=self._block_time(slot),
            transaction=transaction,
            err=err,
            logs=meta.logs(),
            fee=meta.fee(),
            compute_units=meta.compute_units_consumed(),
            inner_instructions=inner,
            pre_balances=[account.lamports if account else 0 for account in pre_accounts],
            post_balances=[account.lamports if account else 0 for account in post_accounts],
            pre_token_balances=self._token_balances(pre_accounts),
            post_token_balances=self._token_balances(post_accounts),
            post_accounts=dict(zip(keys, post_accounts, strict=True)),
        )
        position = len(self._history)
        self._history.append(landed)
        self._by_signature[landed.signature] = position
        for key in keys:
            self._by_address.setdefault(key, []).append(position)

    def _token_balances(self, accounts: list[Account | None]) -> list[dict[str, Any]]:
        balances = []
        for index, account in enumerate(accounts):
            fields = token_account_fields(account)
            if fields is None or account is None:
                continue
            mint, owner, amount = fields
            balances.append(
                {
                    "accountIndex": index,
                    "mint": str(mint),
                    "owner": str(owner),
                    "programId": str(account.owner),
                    "uiTokenAmount": ui_token_amount(amount, self._decimals(mint)),
                }
            )
        return balances

    def _decimals(self, mint: Pubkey) -> int:
        account = self.svm.get_account(mint)
        if account is None or len(account.data) <= _MINT_DECIMALS_OFFSET:
            return 0
        return bytes(account.data)[_MINT_DECIMALS_OFFSET]

    def _changed(self) -> None:
        for callback in list(self.on_change):
            callback()

    # -- JSON-RPC ---------------------------------------------------------------------------

    def call(self, method: str, params: Any) -> Any:
        """Answer one JSON-RPC method; raises :class:`RpcError` as the node would."""
        handler = self._methods.get(method)
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, "Method not found")
        if params is None:
            params = []
        if not isinstance(params, list):
            raise RpcError(INVALID_PARAMS, "Invalid params: expected an array")
        return handler(params)

    def _context(self, value: Any) -> dict[str, Any]:
        return {"context": {"slot": self.slot, "apiVersion": "2.2.0"}, "value": value}

    def _get_latest_blockhash(self, _params: Sequence[Any]) -> dict[str, Any]:
        with self._lock:
            blockhash = str(self.svm.latest_blockhash())
            slot = self.slot
        return self._context(
            {"blockhash": blockhash, "lastValidBlockHeight": slot + BLOCKHASH_VALIDITY}
        )

    def _get_balance(self, params: Sequence[Any]) -> dict[str, Any]:
        key = _pubkey(params)
        with self._lock:
            return self._context(self.svm.get_balance(key) or 0)

    def _get_account_info(self, params: Sequence[Any]) -> dict[str, Any]:
        key = _pubkey(params)
        encoding = _config(params, 1).get("encoding") or "binary"
        with self._lock:
            account = self.svm.get_account(key)
            if account is not None and account.lamports == 0:
                account = None  # a closed account is gone on a real node
            return self._context(account_json(account, encoding))

    def _get_minimum_balance(self, params: Sequence[Any]) -> int:
        if not params or not isinstance(params[0], int):
            raise RpcError(INVALID_PARAMS, "Invalid params: expected a data length")
        with self._lock:
            return self.svm.minimum_balance_for_rent_exemption(params[0])

    def _get_signature_statuses(self, params: Sequence[Any]) -> dict[str, Any]:
        if not params or not isinstance(params[0], list):
            raise RpcError(INVALID_PARAMS, "Invalid params: expected an array of signatures")
        statuses: list[dict[str, Any] | None] = []
        for text in params[0]:
            landed = self.landed(_signature(text))
            if landed is None:
                statuses.append(None)
                continue
            commitment = self.commitment_of(landed)
            statuses.append(
                {
                    "slot": landed.slot,
                    "confirmations": None if commitment == "finalized" else self.slot - landed.slot,
                    "err": landed.err,
                    "status": {"Ok": None} if landed.err is None else {"Err": landed.err},
                    "confirmationStatus": commitment,
                }
            )
        return self._context(statuses)

    def _history_commitment(self, config: dict[str, Any]) -> str:
        commitment = config.get("commitment") or "finalized"
        if commitment not in {"confirmed", "finalized"}:
            raise RpcError(INVALID_PARAMS, "Method does not support commitment below `confirmed`")
        return str(commitment)

    def _get_signatures_for_address(self, params: Sequence[Any]) -> list[dict[str, Any]]:
        key = _pubkey(params)
        config = _config(params, 1)
        commitment = self._history_commitment(config)
        limit = int(config.get("limit") or 1000)
        before = _signature(config["before"]) if config.get("before") else None
        until = _signature(config["until"]) if config.get("until") else None
        with self._lock:
            positions = list(reversed(self._by_address.get(key, [])))
            rows: list[dict[str, Any]] = []
            started = before is None
            for position in positions:
                landed = self._history[position]
                if not started:
                    started = landed.signature == before
                    continue
                if landed.signature == until or len(rows) >= limit:
                    break
                if not self.settled(landed, commitment):
                    continue
                rows.append(
                    {
                        "signature": str(landed.signature),
                        "slot": landed.slot,
                        "err": landed.err,
                        "memo": None,
                        "blockTime": landed.block_time,
                        "confirmationStatus": self.commitment_of(landed),
                    }
                )
            return rows

    def _get_transaction(self, params: Sequence[Any]) -> dict[str, Any] | None:
        signature = _signature(params[0] if params else None)
        config = _config(params, 1)
        commitment = self._history_commitment(config)
        encoding = config.get("encoding") or "json"
        landed = self.landed(signature)
        if landed is None or not self.settled(landed, commitment):
            return None
        max_version = config.get("maxSupportedTransactionVersion")
        is_legacy = isinstance(landed.transaction.message, Message)
        if not is_legacy and max_version is None:
            raise RpcError(
                -32015,
                "Transaction version (0) is not supported by the requesting client. Please try "
                "the request again with the following configuration parameter: "
                '"maxSupportedTransactionVersion": 0',
            )
        if encoding == "json":
            shown: Any = self._transaction_json(landed)
        elif encoding == "base64":
            shown = [base64.b64encode(bytes(landed.transaction)).decode(), "base64"]
        elif encoding == "base58":
            shown = [b58encode(bytes(landed.transaction)), "base58"]
        else:
            raise RpcError(
                INVALID_PARAMS, f"Invalid params: encoding {encoding!r} is not supported"
            )
        body: dict[str, Any] = {
            "slot": landed.slot,
            "blockTime": landed.block_time,
            "transaction": shown,
            "meta": {
                "err": landed.err,
                "status": {"Ok": None} if landed.err is None else {"Err": landed.err},
                "fee": landed.fee,
                "preBalances": landed.pre_balances,
                "postBalances": landed.post_balances,
                "innerInstructions": landed.inner_instructions,
                "logMessages": landed.logs,
                "preTokenBalances": landed.pre_token_balances,
                "postTokenBalances": landed.post_token_balances,
                "rewards": [],
                "loadedAddresses": {"writable": [], "readonly": []},
                "computeUnitsConsumed": landed.compute_units,
            },
        }
        if max_version is not None:
            body["version"] = "legacy" if is_legacy else 0
        return body

    @staticmethod
    def _transaction_json(landed: LandedTransaction) -> dict[str, Any]:
        message = landed.transaction.message
        header = message.header
        shown: dict[str, Any] = {
            "accountKeys": [str(key) for key in message.account_keys],
            "header": {
                "numRequiredSignatures": header.num_required_signatures,
                "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
                "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
            },
            "recentBlockhash": str(message.recent_blockhash),
            "instructions": [
                {
                    "programIdIndex": instruction.program_id_index,
                    "accounts": list(instruction.accounts),
                    "data": b58encode(bytes(instruction.data)),
                    "stackHeight": None,
                }
                for instruction in message.instructions
            ],
        }
        if isinstance(message, MessageV0):
            shown["addressTableLookups"] = []
        return {"signatures": [str(s) for s in landed.transaction.signatures], "message": shown}

    def _get_token_largest_accounts(self, params: Sequence[Any]) -> dict[str, Any]:
        mint = _pubkey(params)
        with self._lock:
            mint_account = self.svm.get_account(mint)
            if mint_account is None or mint_account.owner not in TOKEN_PROGRAMS:
                raise RpcError(INVALID_PARAMS, "Invalid param: not a Token mint")
            decimals = self._decimals(mint)
            holdings = []
            for address, account in self.svm.get_program_accounts(mint_account.owner):
                fields = token_account_fields(account)
                if fields is not None and fields[0] == mint:
                    holdings.append((fields[2], str(address)))
        holdings.sort(key=lambda item: item[0], reverse=True)
        return self._context(
            [
                {"address": address, **ui_token_amount(amount, decimals)}
                for amount, address in holdings[:20]
            ]
        )

    def _request_airdrop(self, params: Sequence[Any]) -> str:
        key = _pubkey(params)
        lamports = params[1] if len(params) > 1 else None
        if not isinstance(lamports, int) or lamports <= 0:
            raise RpcError(INVALID_PARAMS, "Invalid params: expected a positive lamport amount")
        return str(self.airdrop(key, lamports))

    def _send_transaction(self, params: Sequence[Any]) -> str:
        config = _config(params, 1)
        encoding = config.get("encoding") or "base58"
        try:
            text = params[0]
            raw = base64.b64decode(text, validate=True) if encoding == "base64" else b58decode(text)
            transaction = VersionedTransaction.from_bytes(raw)
        except (IndexError, TypeError, ValueError) as exc:
            raise RpcError(
                INVALID_PARAMS, f"invalid transaction: failed to deserialize ({encoding})"
            ) from exc
        return str(self.submit(transaction, preflight=not config.get("skipPreflight", False)))
