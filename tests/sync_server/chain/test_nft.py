"""Ticket NFTs against the real SPL Token-2022 program, run in-process by LiteSVM.

No node and no network: LiteSVM preloads Token-2022 and the associated-token-account program, so
every hand-encoded instruction here is checked by the program that will run it in production.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from solders.transaction_metadata import FailedTransactionMetadata
from spl.token.constants import TOKEN_2022_PROGRAM_ID
from spl.token.instructions import (
    create_associated_token_account,
    initialize_mint2,
    initialize_transfer_fee_config,
    mint_to_checked,
)
from spl.token.models import (
    InitializeMint2Params,
    InitializeTransferFeeConfigParams,
    MintToCheckedParams,
)

from sync_server.chain.nft import (
    TicketMetadata,
    TicketOnChain,
    build_transaction,
    burn_ticket_instruction,
    freeze_ticket_instruction,
    holder_token_account,
    mint_ticket_instructions,
    read_ticket_holding,
    read_ticket_mint,
    thaw_ticket_instruction,
    ticket_metadata,
    ticket_mint_space,
    transfer_ticket_instructions,
)
from sync_server.chain.token2022 import (
    INITIALIZE_METADATA_DISCRIMINATOR,
    UPDATE_FIELD_DISCRIMINATOR,
    AccountLayoutError,
    ExtensionType,
    TokenAccount,
    mint_size,
    parse_mint,
    parse_token_account,
)
from sync_server.settings import ChainSettings

MAX_TRANSACTION_BYTES = 1232  # Solana's packet limit for a serialized transaction

METADATA = TicketMetadata(
    name="Gatehouse ticket",
    symbol="GATE",
    uri="https://tickets.example/v1/chain/metadata/7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU",
    event_id="0192f0c4-0000-7000-8000-00000000e001",
    ticket_type="General admission",
)


class Rejected(AssertionError):
    """The VM refused a transaction; carries its logs for the failure message."""


@dataclass
class Chain:
    """A LiteSVM with a funded issuer, sending transactions and reading accounts."""

    svm: LiteSVM
    issuer: Keypair

    def send(self, instructions: Sequence[Instruction], *signers: Keypair) -> None:
        self.svm.expire_blockhash()  # same instructions twice must not look like a replay
        transaction = build_transaction(
            instructions, payer=self.issuer, signers=signers, blockhash=self.svm.latest_blockhash()
        )
        assert len(bytes(transaction)) <= MAX_TRANSACTION_BYTES
        result = self.svm.send_transaction(transaction)
        if isinstance(result, FailedTransactionMetadata):
            raise Rejected("\n".join([str(result.err()), *result.meta().logs()]))

    def data(self, address: Pubkey) -> bytes:
        account = self.svm.get_account(address)
        assert account is not None, f"no account at {address}"
        return bytes(account.data)

    def ticket(self, mint: Pubkey) -> TicketOnChain:
        return read_ticket_mint(self.data(mint))

    def holding(self, mint: Pubkey, wallet: Pubkey) -> TokenAccount:
        return read_ticket_holding(self.data(holder_token_account(mint, wallet)))

    def mint_ticket(self, holder: Pubkey, metadata: TicketMetadata = METADATA) -> Pubkey:
        mint = Keypair()
        _, final_space = ticket_mint_space(metadata)
        self.send(
            mint_ticket_instructions(
                issuer=self.issuer.pubkey(),
                mint=mint.pubkey(),
                holder=holder,
                metadata=metadata,
                rent_lamports=self.svm.minimum_balance_for_rent_exemption(final_space),
            ),
            mint,
        )
        return mint.pubkey()

    def transfer(self, mint: Pubkey, sender: Keypair, recipient: Pubkey) -> None:
        self.send(
            transfer_ticket_instructions(
                mint=mint,
                from_wallet=sender.pubkey(),
                to_wallet=recipient,
                payer=self.issuer.pubkey(),
            ),
            sender,
        )


@pytest.fixture
def chain() -> Chain:
    svm = LiteSVM()
    issuer = Keypair()
    svm.airdrop(issuer.pubkey(), 10_000_000_000)
    return Chain(svm, issuer)


def test_the_vm_has_token_2022_and_the_associated_token_program() -> None:
    svm = LiteSVM()
    for program in (
        TOKEN_2022_PROGRAM_ID,
        Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"),
    ):
        account = svm.get_account(program)
        assert account is not None
        assert account.executable


def test_minted_ticket_carries_its_metadata_supply_one_and_no_mint_authority(
    chain: Chain,
) -> None:
    holder = Keypair().pubkey()
    mint = chain.mint_ticket(holder)

    ticket = chain.ticket(mint)
    assert (ticket.name, ticket.symbol, ticket.uri) == (
        METADATA.name,
        METADATA.symbol,
        METADATA.uri,
    )
    assert ticket.event_id == METADATA.event_id
    assert ticket.ticket_type == METADATA.ticket_type
    assert ticket.mint.supply == 1
    assert ticket.mint.decimals == 0
    assert ticket.mint.mint_authority is None
    assert ticket.mint.freeze_authority == chain.issuer.pubkey()
    assert ticket.mint.metadata_address == mint
    assert ticket.mint.metadata_pointer_authority is None
    assert ticket.mint.metadata is not None
    assert ticket.mint.metadata.update_authority == chain.issuer.pubkey()
    assert ticket.mint.metadata.mint == mint
    assert set(ticket.mint.extensions) == {
        ExtensionType.METADATA_POINTER,
        ExtensionType.TOKEN_METADATA,
    }

    holding = chain.holding(mint, holder)
    assert (holding.mint, holding.owner, holding.amount, holding.frozen) == (mint, holder, 1, False)


def test_the_mint_account_is_exactly_the_size_we_paid_rent_for(chain: Chain) -> None:
    mint = chain.mint_ticket(Keypair().pubkey())
    assert len(chain.data(mint)) == ticket_mint_space(METADATA)[1]


def test_a_second_mint_to_fails_because_no_one_holds_the_mint_authority(chain: Chain) -> None:
    holder = Keypair().pubkey()
    mint = chain.mint_ticket(holder)
    again = mint_to_checked(
        MintToCheckedParams(
            program_id=TOKEN_2022_PROGRAM_ID,
            mint=mint,
            dest=holder_token_account(mint, holder),
            mint_authority=chain.issuer.pubkey(),
            amount=1,
            decimals=0,
        )
    )
    with pytest.raises(Rejected):
        chain.send([again])
    assert chain.ticket(mint).mint.supply == 1


def test_transfer_moves_the_ticket_to_the_new_wallet(chain: Chain) -> None:
    seller, buyer = Keypair(), Keypair()
    mint = chain.mint_ticket(seller.pubkey())

    chain.transfer(mint, seller, buyer.pubkey())

    assert chain.holding(mint, buyer.pubkey()).amount == 1
    assert chain.holding(mint, buyer.pubkey()).owner == buyer.pubkey()
    assert chain.holding(mint, seller.pubkey()).amount == 0
    # and on again: the buyer can resell it
    chain.transfer(mint, buyer, Keypair().pubkey())
    assert chain.holding(mint, buyer.pubkey()).amount == 0


def test_a_frozen_ticket_cannot_be_transferred_until_thawed(chain: Chain) -> None:
    holder, buyer = Keypair(), Keypair()
    mint = chain.mint_ticket(holder.pubkey())

    chain.send(
        [freeze_ticket_instruction(mint=mint, wallet=holder.pubkey(), issuer=chain.issuer.pubkey())]
    )
    assert chain.holding(mint, holder.pubkey()).frozen

    with pytest.raises(Rejected, match="frozen"):
        chain.transfer(mint, holder, buyer.pubkey())
    assert chain.holding(mint, holder.pubkey()).amount == 1

    chain.send(
        [thaw_ticket_instruction(mint=mint, wallet=holder.pubkey(), issuer=chain.issuer.pubkey())]
    )
    chain.transfer(mint, holder, buyer.pubkey())
    assert chain.holding(mint, buyer.pubkey()).amount == 1


def test_only_the_issuer_can_freeze(chain: Chain) -> None:
    holder = Keypair()
    mint = chain.mint_ticket(holder.pubkey())
    with pytest.raises(Rejected):
        chain.send(
            [freeze_ticket_instruction(mint=mint, wallet=holder.pubkey(), issuer=holder.pubkey())],
            holder,
        )
    assert not chain.holding(mint, holder.pubkey()).frozen


def test_the_holder_can_burn_and_supply_drops_to_zero(chain: Chain) -> None:
    holder = Keypair()
    mint = chain.mint_ticket(holder.pubkey())
    chain.send([burn_ticket_instruction(mint=mint, wallet=holder.pubkey())], holder)
    assert chain.ticket(mint).mint.supply == 0
    assert chain.holding(mint, holder.pubkey()).amount == 0


def test_long_but_realistic_metadata_still_fits_one_transaction(chain: Chain) -> None:
    metadata = TicketMetadata(
        name="Gatehouse · Summer Festival 2025 · Day 2",
        symbol="GATEHOUSE",
        uri="https://tickets.example.com/v1/chain/metadata/" + str(Keypair().pubkey()) * 2,
        event_id=METADATA.event_id,
        ticket_type="Weekend camping, early entry",
    )
    mint = chain.mint_ticket(Keypair().pubkey(), metadata)
    assert chain.ticket(mint).name == metadata.name


def test_a_transfer_fee_would_withhold_the_ticket_itself(chain: Chain) -> None:
    """Why tickets carry no transfer-fee config (docs/chain.md): the fee is taken in the token.

    For a supply-1, decimals-0 token any non-zero rate rounds the fee up to the one token, so
    the buyer would receive 0 and the ticket would sit withheld in the buyer's account.
    """
    transfer_fee_config_size = 108
    mint, seller, buyer = Keypair(), Keypair(), Keypair()
    issuer, address = chain.issuer.pubkey(), mint.pubkey()
    space = mint_size([transfer_fee_config_size])
    chain.send(
        [
            create_account(
                CreateAccountParams(
                    from_pubkey=issuer,
                    to_pubkey=address,
                    lamports=chain.svm.minimum_balance_for_rent_exemption(space),
                    space=space,
                    owner=TOKEN_2022_PROGRAM_ID,
                )
            ),
            initialize_transfer_fee_config(
                InitializeTransferFeeConfigParams(
                    program_id=TOKEN_2022_PROGRAM_ID,
                    mint=address,
                    transfer_fee_config_authority=issuer,
                    withdraw_withheld_authority=issuer,
                    transfer_fee_basis_points=500,  # a 5 % resale fee
                    maximum_fee=1,
                )
            ),
            initialize_mint2(
                InitializeMint2Params(
                    program_id=TOKEN_2022_PROGRAM_ID,
                    mint=address,
                    decimals=0,
                    mint_authority=issuer,
                    freeze_authority=issuer,
                )
            ),
            create_associated_token_account(
                issuer, seller.pubkey(), address, TOKEN_2022_PROGRAM_ID
            ),
            mint_to_checked(
                MintToCheckedParams(
                    program_id=TOKEN_2022_PROGRAM_ID,
                    mint=address,
                    dest=holder_token_account(address, seller.pubkey()),
                    mint_authority=issuer,
                    amount=1,
                    decimals=0,
                )
            ),
        ],
        mint,
    )

    chain.transfer(address, seller, buyer.pubkey())

    received = chain.data(holder_token_account(address, buyer.pubkey()))
    assert parse_token_account(received).amount == 0
    assert chain.holding(address, seller.pubkey()).amount == 0


def test_metadata_interface_discriminators_match_the_published_values() -> None:
    # sha256("spl_token_metadata_interface:initialize_account")[:8] and the updating_field one,
    # as listed by spl-token-metadata-interface (and @solana/spl-token-metadata).
    assert list(INITIALIZE_METADATA_DISCRIMINATOR) == [210, 225, 30, 162, 88, 184, 77, 141]
    assert list(UPDATE_FIELD_DISCRIMINATOR) == [221, 233, 49, 45, 181, 202, 220, 200]


@pytest.mark.parametrize("data", [b"", bytes(81), bytes(100), bytes(165)])
def test_mint_reader_rejects_what_is_not_a_mint(data: bytes) -> None:
    with pytest.raises(AccountLayoutError):
        parse_mint(data)


def test_readers_reject_truncated_extensions_and_the_wrong_account_kind(chain: Chain) -> None:
    holder = Keypair().pubkey()
    mint = chain.mint_ticket(holder)
    mint_data = chain.data(mint)
    account_data = chain.data(holder_token_account(mint, holder))

    with pytest.raises(AccountLayoutError):
        parse_mint(mint_data[:-3])
    with pytest.raises(AccountLayoutError):
        parse_mint(account_data)  # a Token-2022 account: type byte 2, not 1
    with pytest.raises(AccountLayoutError):
        parse_token_account(mint_data)
    with pytest.raises(AccountLayoutError):
        parse_token_account(account_data[:100])


def test_public_metadata_names_no_ticket_id() -> None:
    """Issue 14 item 8: every NFT's public metadata carried the ticket id — the secret a
    scanner's cache was keyed and sealed by. Now nothing on the mint, nor its uri, names it."""
    ticket = SimpleNamespace(id=uuid.uuid4(), event_id=uuid.uuid4())
    mint = str(Keypair().pubkey())
    metadata = ticket_metadata(ticket, mint, "Spring Concert", "Balcony", ChainSettings())
    public = " ".join(
        [metadata.name, metadata.symbol, metadata.uri]
        + [f"{key}={value}" for key, value in metadata.additional_fields()]
    )
    for spelling in (str(ticket.id), ticket.id.hex):
        assert spelling not in public.lower()
    assert metadata.uri.endswith("/" + mint)
