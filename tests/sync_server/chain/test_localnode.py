"""The local Solana node, exercised with the production ``solana`` client over real sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed, Processed
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solana.rpc.websocket_api import SolanaWsClient
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.rpc.config import RpcTransactionLogsFilterMentions
from solders.rpc.errors import SendTransactionPreflightFailureMessage
from solders.rpc.responses import AccountNotification, LogsNotification
from solders.signature import Signature
from solders.system_program import CreateAccountParams, TransferParams, create_account, transfer
from solders.transaction import Transaction
from solders.transaction_status import TransactionConfirmationStatus
from spl.token.constants import TOKEN_PROGRAM_ID
from spl.token.instructions import (
    create_associated_token_account,
    get_associated_token_address,
    initialize_mint2,
    mint_to,
)
from spl.token.models import InitializeMint2Params, MintToParams
from websockets.exceptions import ConnectionClosed

from testkit.solana.localledger import FINALITY_DEPTH, b58decode, b58encode
from testkit.solana.localnode import LocalSolanaNode

pytestmark = pytest.mark.anyio

SOL = 1_000_000_000


@pytest.fixture
async def client(solana_node: LocalSolanaNode) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(solana_node.rpc_url, timeout=2, max_transport_retries=0) as rpc:
        yield rpc


async def _funded(client: AsyncClient, node: LocalSolanaNode, lamports: int = SOL) -> Keypair:
    wallet = Keypair()
    await client.request_airdrop(wallet.pubkey(), lamports)
    return wallet


async def _transfer(client: AsyncClient, payer: Keypair, to: Pubkey, lamports: int) -> Signature:
    blockhash = (await client.get_latest_blockhash()).value.blockhash
    message = Message(
        [transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=lamports))],
        payer.pubkey(),
    )
    return (
        await client.send_raw_transaction(bytes(Transaction([payer], message, blockhash)))
    ).value


async def test_a_signed_transfer_moves_sol_and_settles_with_the_slots(
    solana_node: LocalSolanaNode, client: AsyncClient
) -> None:
    assert await client.is_connected()
    alice, bob = await _funded(client, solana_node, 2 * SOL), Keypair()

    signature = await _transfer(client, alice, bob.pubkey(), SOL // 4)

    assert (await client.get_balance(bob.pubkey())).value == SOL // 4
    assert (await client.get_balance(alice.pubkey())).value == 2 * SOL - SOL // 4 - 5000
    landed_slot = (await client.get_slot()).value
    status = (await client.get_signature_statuses([signature])).value[0]
    assert status is not None
    assert status.slot == landed_slot
    assert status.confirmation_status == TransactionConfirmationStatus.Processed
    assert status.confirmations == 0
    assert status.err is None

    solana_node.advance(1)
    status = (await client.get_signature_statuses([signature])).value[0]
    assert status is not None
    assert status.confirmation_status == TransactionConfirmationStatus.Confirmed
    assert status.confirmations == 1

    solana_node.advance(FINALITY_DEPTH - 1)
    status = (await client.get_signature_statuses([signature])).value[0]
    assert status is not None
    assert status.confirmation_status == TransactionConfirmationStatus.Finalized
    assert status.confirmations is None
    assert (await client.get_slot()).value == landed_slot + FINALITY_DEPTH


async def test_history_shows_the_transfer_once_it_has_settled_that_far(
    solana_node: LocalSolanaNode, client: AsyncClient
) -> None:
    alice, bob = await _funded(client, solana_node), Keypair()
    signature = await _transfer(client, alice, bob.pubkey(), 1_000_000)

    # Finalized is the default: nothing yet, as on a real node.
    assert (await client.get_transaction(signature)).value is None
    assert (await client.get_signatures_for_address(bob.pubkey())).value == []
    solana_node.advance(1)
    confirmed = (await client.get_signatures_for_address(bob.pubkey(), commitment=Confirmed)).value
    assert [row.signature for row in confirmed] == [signature]
    solana_node.finalize()

    rows = (await client.get_signatures_for_address(alice.pubkey())).value
    assert rows[0].signature == signature  # newest first; then the airdrop
    assert len(rows) == 2
    assert rows[0].block_time is not None
    assert rows[0].confirmation_status == TransactionConfirmationStatus.Finalized
    assert rows[0].err is None

    found = (await client.get_transaction(signature)).value
    assert found is not None
    assert found.slot == rows[0].slot
    assert found.block_time == rows[0].block_time
    meta = found.transaction.meta
    assert meta is not None
    assert meta.fee == 5000
    assert meta.err is None
    keys = found.transaction.transaction.message.account_keys  # type: ignore[union-attr]
    assert keys[:2] == [alice.pubkey(), bob.pubkey()]
    assert meta.pre_balances[1] == 0
    assert meta.post_balances[1] == 1_000_000
    assert any("invoke [1]" in line for line in meta.log_messages or [])

    raw = (await client.get_transaction(signature, encoding="base64")).value
    assert raw is not None
    assert raw.transaction.transaction.signatures[0] == signature
    with pytest.raises(RPCException):
        await client.get_transaction(signature, commitment=Processed)


async def test_preflight_failures_come_back_as_json_rpc_errors_in_solanas_shape(
    solana_node: LocalSolanaNode, client: AsyncClient
) -> None:
    poor, bob = await _funded(client, solana_node, 10_000_000), Keypair()

    with pytest.raises(RPCException) as raised:
        await _transfer(client, poor, bob.pubkey(), SOL)

    error = raised.value.args[0]
    assert isinstance(error, SendTransactionPreflightFailureMessage)
    assert error.message.startswith("Transaction simulation failed: Error processing Instruction 0")
    assert any("insufficient lamports" in line for line in error.data.logs or [])
    # Nothing landed: the only signature is the airdrop.
    solana_node.finalize()
    assert len((await client.get_signatures_for_address(poor.pubkey())).value) == 1


async def test_without_preflight_a_failing_transaction_lands_with_its_error(
    solana_node: LocalSolanaNode, client: AsyncClient
) -> None:
    poor, bob = await _funded(client, solana_node, 10_000_000), Keypair()
    blockhash = (await client.get_latest_blockhash()).value.blockhash
    message = Message(
        [transfer(TransferParams(from_pubkey=poor.pubkey(), to_pubkey=bob.pubkey(), lamports=SOL))],
        poor.pubkey(),
    )
    tx = Transaction([poor], message, blockhash)

    signature = (await client.send_raw_transaction(bytes(tx), TxOpts(skip_preflight=True))).value

    status = (await client.get_signature_statuses([signature])).value[0]
    assert status is not None
    assert status.err is not None
    assert (await client.get_balance(poor.pubkey())).value == 10_000_000 - 5000


async def test_base58_and_base64_sends_raw_json_rpc(
    solana_node: LocalSolanaNode, client: AsyncClient
) -> None:
    alice = await _funded(client, solana_node)
    blockhash = (await client.get_latest_blockhash()).value.blockhash

    def signed(lamports: int) -> bytes:
        instruction = transfer(
            TransferParams(
                from_pubkey=alice.pubkey(), to_pubkey=Keypair().pubkey(), lamports=lamports
            )
        )
        return bytes(Transaction([alice], Message([instruction], alice.pubkey()), blockhash))

    async with httpx.AsyncClient(base_url=solana_node.rpc_url) as http:
        for encoding, text in [
            ("base58", b58encode(signed(1_000_000))),
            ("base64", base64.b64encode(signed(2_000_000)).decode()),
        ]:
            body = {
                "jsonrpc": "2.0",
                "id": 7,
                "method": "sendTransaction",
                "params": [text, {"encoding": encoding}],
            }
            answer = (await http.post("/", json=body)).json()
            assert answer["id"] == 7
            assert Signature.from_string(answer["result"])
        unknown = (await http.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "nope"})).json()
        assert unknown["error"]["code"] == -32601
        garbage = (await http.post("/", content=b"{")).json()
        assert garbage["error"]["code"] == -32700


async def test_account_info_rent_and_the_token_largest_accounts_of_a_mint(
    solana_node: LocalSolanaNode, client: AsyncClient
) -> None:
    alice = await _funded(client, solana_node)
    info = (await client.get_account_info(alice.pubkey())).value
    assert info is not None
    assert info.lamports == SOL
    assert info.owner == Pubkey.from_string("11111111111111111111111111111111")
    assert (await client.get_account_info(Keypair().pubkey())).value is None
    rent = (await client.get_minimum_balance_for_rent_exemption(165)).value
    assert rent == solana_node.ledger.svm.minimum_balance_for_rent_exemption(165)

    mint = Keypair()
    holder_a, holder_b = Keypair().pubkey(), Keypair().pubkey()
    account_a = get_associated_token_address(holder_a, mint.pubkey())
    account_b = get_associated_token_address(holder_b, mint.pubkey())
    mint_rent = (await client.get_minimum_balance_for_rent_exemption(82)).value
    instructions = [
        create_account(
            CreateAccountParams(
                from_pubkey=alice.pubkey(),
                to_pubkey=mint.pubkey(),
                lamports=mint_rent,
                space=82,
                owner=TOKEN_PROGRAM_ID,
            )
        ),
        initialize_mint2(
            InitializeMint2Params(
                decimals=0,
                program_id=TOKEN_PROGRAM_ID,
                mint=mint.pubkey(),
                mint_authority=alice.pubkey(),
            )
        ),
        create_associated_token_account(alice.pubkey(), holder_a, mint.pubkey()),
        create_associated_token_account(alice.pubkey(), holder_b, mint.pubkey()),
        *[
            mint_to(
                MintToParams(
                    program_id=TOKEN_PROGRAM_ID,
                    mint=mint.pubkey(),
                    dest=dest,
                    mint_authority=alice.pubkey(),
                    amount=amount,
                )
            )
            for dest, amount in [(account_a, 3), (account_b, 5)]
        ],
    ]
    blockhash = (await client.get_latest_blockhash()).value.blockhash
    tx = Transaction([alice, mint], Message(instructions, alice.pubkey()), blockhash)
    signature = (await client.send_raw_transaction(bytes(tx))).value

    largest = (await client.get_token_largest_accounts(mint.pubkey())).value
    assert [(row.address, row.amount.amount) for row in largest] == [
        (account_b, "5"),
        (account_a, "3"),
    ]
    solana_node.finalize()
    found = (await client.get_transaction(signature)).value
    assert found is not None
    meta = found.transaction.meta
    assert meta is not None
    balances = {(str(b.owner), b.ui_token_amount.amount) for b in meta.post_token_balances or []}
    assert balances == {(str(holder_a), "3"), (str(holder_b), "5")}
    assert meta.pre_token_balances == []
    assert meta.inner_instructions  # the associated-token program's calls


async def test_logs_and_account_subscriptions_hear_of_the_transfer_at_their_commitment(
    solana_node: LocalSolanaNode, client: AsyncClient
) -> None:
    alice, bob = await _funded(client, solana_node), Keypair()
    async with SolanaWsClient(solana_node.ws_url, request_timeout=2) as ws:
        logs = await ws.logs_subscribe(
            filter_=RpcTransactionLogsFilterMentions(bob.pubkey()), commitment=Processed
        )
        account = await ws.account_subscribe(pubkey=bob.pubkey(), commitment=Confirmed)

        signature = await _transfer(client, alice, bob.pubkey(), 1_000_000)
        heard = await asyncio.wait_for(ws.recv(), 2)
        assert isinstance(heard, LogsNotification)
        assert heard.subscription == logs.subscription_id
        assert heard.result.value.signature == signature
        assert heard.result.value.err is None

        solana_node.advance(1)  # confirmed now: the account subscription hears of it
        heard = await asyncio.wait_for(ws.recv(), 2)
        assert isinstance(heard, AccountNotification)
        assert heard.subscription == account.subscription_id
        assert heard.result.value.lamports == 1_000_000

        await ws.unsubscribe(logs)
        await ws.unsubscribe(account)
        await _transfer(client, alice, bob.pubkey(), 1_000_001)
        solana_node.advance(1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.3)


async def test_a_paused_node_times_the_client_out_and_answers_again_on_resume(
    solana_node: LocalSolanaNode,
) -> None:
    async with AsyncClient(solana_node.rpc_url, timeout=0.3, max_transport_retries=0) as rpc:
        # The client's own 0.3 s timeout ends the call.
        with solana_node.paused(), pytest.raises(SolanaRpcException):
            await rpc.get_slot()
        assert (await rpc.get_slot()).value == solana_node.ledger.slot


async def test_dropped_websockets_close_and_a_new_connection_subscribes_again(
    solana_node: LocalSolanaNode, client: AsyncClient
) -> None:
    alice, bob = await _funded(client, solana_node), Keypair()
    async with SolanaWsClient(solana_node.ws_url, request_timeout=2) as ws:
        await ws.logs_subscribe(
            filter_=RpcTransactionLogsFilterMentions(bob.pubkey()), commitment=Processed
        )
        assert solana_node.drop_websockets() == 1
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 2)

    async with SolanaWsClient(solana_node.ws_url, request_timeout=2) as ws:
        await ws.logs_subscribe(
            filter_=RpcTransactionLogsFilterMentions(bob.pubkey()), commitment=Processed
        )
        signature = await _transfer(client, alice, bob.pubkey(), 1_000_000)
        heard = await asyncio.wait_for(ws.recv(), 2)
        assert isinstance(heard, LogsNotification)
        assert heard.result.value.signature == signature


def test_the_node_stops_promptly_even_while_paused() -> None:
    node = LocalSolanaNode().start()
    node.pause()
    stopping = threading.Thread(target=node.stop)
    stopping.start()
    stopping.join(30)  # a hang detector, not a speed limit
    assert not stopping.is_alive()


def test_slots_pass_on_their_own_when_asked_to_as_in_the_demo() -> None:
    with LocalSolanaNode(slot_seconds=0.01) as node:
        first = node.ledger.slot
        deadline = time.monotonic() + 2
        while node.ledger.slot < first + 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert node.ledger.slot >= first + 3


@pytest.mark.parametrize("data", [b"", b"\0\0\1", bytes(range(40)), b"\xff" * 64])
def test_base58_round_trips(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data


def test_base58_matches_solders() -> None:
    key = Keypair().pubkey()
    assert b58encode(bytes(key)) == str(key)
    assert json.dumps(b58encode(b"")) == '""'
