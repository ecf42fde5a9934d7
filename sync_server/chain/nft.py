"""A ticket as a Token-2022 NFT: pure builders for its instructions, and readers for its state.

Nothing here talks to a node. Callers fetch a blockhash and rent figures, build instructions
here, sign and send them with whatever client they use, and read accounts back through
:func:`read_ticket_mint` / :func:`read_ticket_holding`. The design and what lives on-chain versus
in Postgres: ``docs/chain.md``.

The issuer keypair pays, is the freeze authority (a revoked ticket's token account is frozen so
it cannot be resold), and owns the metadata; the mint authority is the issuer only for the one
transaction that mints, which ends by removing it, so no second token can ever exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from solders.transaction import Transaction
from spl.token.constants import TOKEN_2022_PROGRAM_ID
from spl.token.instructions import (
    burn_checked,
    create_associated_token_account,
    create_idempotent_associated_token_account,
    freeze_account,
    get_associated_token_address,
    initialize_mint2,
    mint_to_checked,
    set_authority,
    thaw_account,
    transfer_checked,
)
from spl.token.models import (
    AuthorityType,
    BurnCheckedParams,
    FreezeAccountParams,
    InitializeMint2Params,
    MintToCheckedParams,
    SetAuthorityParams,
    ThawAccountParams,
    TransferCheckedParams,
)

from sync_server.chain.token2022 import (
    METADATA_POINTER_SIZE,
    AccountLayoutError,
    MintAccount,
    TokenAccount,
    initialize_metadata_pointer,
    initialize_token_metadata,
    mint_size,
    parse_mint,
    parse_token_account,
    token_metadata_size,
    update_token_metadata_field,
)
from sync_server.settings import ChainSettings

TICKET_DECIMALS = 0
TICKET_SUPPLY = 1

# Additional metadata keys (public). No ticket id: it would tie the public mint to the ticket
# inside its code (issue 14 item 8); the server maps a mint to its ticket by the mint address.
EVENT_ID_KEY = "event_id"
TICKET_TYPE_KEY = "ticket_type"
#: Metadata name and ticket-type attribute are clipped to this many characters so that the
#: minting transaction stays within one packet.
METADATA_TEXT_LIMIT = 32


@dataclass(frozen=True, slots=True)
class TicketMetadata:
    """What a ticket's mint says about itself on-chain (public: no holder name, no code, no
    ticket id)."""

    name: str
    symbol: str
    uri: str
    event_id: str
    ticket_type: str

    def additional_fields(self) -> list[tuple[str, str]]:
        """The attributes stored as token-metadata additional fields, in write order."""
        return [
            (EVENT_ID_KEY, self.event_id),
            (TICKET_TYPE_KEY, self.ticket_type),
        ]


class _TicketIds(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def event_id(self) -> uuid.UUID: ...


def ticket_metadata(
    ticket: _TicketIds, mint: str, event_name: str, type_name: str, settings: ChainSettings
) -> TicketMetadata:
    """What a ticket's NFT (at address ``mint``) says about itself: the event's name and id,
    the ticket type's name (names clipped to keep the minting transaction within one packet)
    and a uri under ``metadata_base_url`` named by the mint address — never the ticket id. The
    one definition: the tracker mints with it, and the API shows it (``/v1/chain``)."""
    return TicketMetadata(
        name=_clip(event_name),
        symbol=settings.symbol,
        uri=f"{settings.metadata_base_url.rstrip('/')}/{mint}",
        event_id=str(ticket.event_id),
        ticket_type=_clip(type_name),
    )


def _clip(value: str) -> str:
    return value if len(value) <= METADATA_TEXT_LIMIT else value[: METADATA_TEXT_LIMIT - 1] + "…"


def ticket_mint_space(metadata: TicketMetadata) -> tuple[int, int]:
    """Bytes of a ticket mint when created (pointer only) and once its metadata is written.

    Rent must be paid for the second figure up front: the program grows the account while
    writing the metadata but cannot take lamports from anyone.
    """
    initial = mint_size([METADATA_POINTER_SIZE])
    metadata_value = token_metadata_size(
        metadata.name, metadata.symbol, metadata.uri, metadata.additional_fields()
    )
    return initial, mint_size([METADATA_POINTER_SIZE, metadata_value])


def holder_token_account(mint: Pubkey, wallet: Pubkey) -> Pubkey:
    """The wallet's associated token account for the ticket mint (Token-2022 derivation)."""
    return get_associated_token_address(wallet, mint, TOKEN_2022_PROGRAM_ID)


def mint_ticket_instructions(
    *,
    issuer: Pubkey,
    mint: Pubkey,
    holder: Pubkey,
    metadata: TicketMetadata,
    rent_lamports: int,
) -> list[Instruction]:
    """Create a ticket NFT in one transaction, signed by ``issuer`` and the new ``mint`` keypair.

    Order matters: the account is created with room for the metadata pointer (extensions must be
    initialized before the mint), the mint is initialized with the issuer as mint and freeze
    authority, the metadata and its attributes are written, the holder's associated token account
    is created and receives the one token, and the mint authority is removed last.
    ``rent_lamports`` must cover the final size, the second figure of :func:`ticket_mint_space`.
    """
    initial_space, _ = ticket_mint_space(metadata)
    holder_account = holder_token_account(mint, holder)
    return [
        create_account(
            CreateAccountParams(
                from_pubkey=issuer,
                to_pubkey=mint,
                lamports=rent_lamports,
                space=initial_space,
                owner=TOKEN_2022_PROGRAM_ID,
            )
        ),
        # No pointer authority: the metadata lives in the mint and is never to point elsewhere.
        initialize_metadata_pointer(mint, authority=None, metadata_address=mint),
        initialize_mint2(
            InitializeMint2Params(
                program_id=TOKEN_2022_PROGRAM_ID,
                mint=mint,
                decimals=TICKET_DECIMALS,
                mint_authority=issuer,
                freeze_authority=issuer,
            )
        ),
        initialize_token_metadata(
            mint,
            update_authority=issuer,
            mint_authority=issuer,
            name=metadata.name,
            symbol=metadata.symbol,
            uri=metadata.uri,
        ),
        *(
            update_token_metadata_field(mint, update_authority=issuer, key=key, value=value)
            for key, value in metadata.additional_fields()
        ),
        create_associated_token_account(issuer, holder, mint, TOKEN_2022_PROGRAM_ID),
        mint_to_checked(
            MintToCheckedParams(
                program_id=TOKEN_2022_PROGRAM_ID,
                mint=mint,
                dest=holder_account,
                mint_authority=issuer,
                amount=TICKET_SUPPLY,
                decimals=TICKET_DECIMALS,
            )
        ),
        set_authority(
            SetAuthorityParams(
                program_id=TOKEN_2022_PROGRAM_ID,
                account=mint,
                authority=AuthorityType.MINT_TOKENS,
                current_authority=issuer,
                new_authority=None,
            )
        ),
    ]


def transfer_ticket_instructions(
    *, mint: Pubkey, from_wallet: Pubkey, to_wallet: Pubkey, payer: Pubkey
) -> list[Instruction]:
    """Move the ticket from one wallet to another, creating the recipient's account if needed.

    Signed by ``from_wallet`` (the owner) and ``payer`` (rent for the new account). Fails on-chain
    when the sender's account is frozen (a revoked ticket) or does not hold the token.
    """
    return [
        create_idempotent_associated_token_account(payer, to_wallet, mint, TOKEN_2022_PROGRAM_ID),
        transfer_checked(
            TransferCheckedParams(
                program_id=TOKEN_2022_PROGRAM_ID,
                source=holder_token_account(mint, from_wallet),
                mint=mint,
                dest=holder_token_account(mint, to_wallet),
                owner=from_wallet,
                amount=TICKET_SUPPLY,
                decimals=TICKET_DECIMALS,
            )
        ),
    ]


def freeze_ticket_instruction(*, mint: Pubkey, wallet: Pubkey, issuer: Pubkey) -> Instruction:
    """Freeze the wallet's ticket account (revocation): no transfer or burn until thawed.

    Signed by ``issuer``, the freeze authority.
    """
    return freeze_account(
        FreezeAccountParams(
            program_id=TOKEN_2022_PROGRAM_ID,
            account=holder_token_account(mint, wallet),
            mint=mint,
            authority=issuer,
        )
    )


def thaw_ticket_instruction(*, mint: Pubkey, wallet: Pubkey, issuer: Pubkey) -> Instruction:
    """Undo :func:`freeze_ticket_instruction` (a revocation reversed). Signed by ``issuer``."""
    return thaw_account(
        ThawAccountParams(
            program_id=TOKEN_2022_PROGRAM_ID,
            account=holder_token_account(mint, wallet),
            mint=mint,
            authority=issuer,
        )
    )


def burn_ticket_instruction(*, mint: Pubkey, wallet: Pubkey) -> Instruction:
    """Destroy the ticket token (supply drops to 0). Signed by ``wallet``, the holder.

    The issuer cannot burn on a holder's behalf (no permanent delegate, by design); a frozen
    account cannot burn either.
    """
    return burn_checked(
        BurnCheckedParams(
            program_id=TOKEN_2022_PROGRAM_ID,
            mint=mint,
            account=holder_token_account(mint, wallet),
            owner=wallet,
            amount=TICKET_SUPPLY,
            decimals=TICKET_DECIMALS,
        )
    )


def build_transaction(
    instructions: Sequence[Instruction],
    *,
    payer: Keypair,
    signers: Sequence[Keypair] = (),
    blockhash: Hash,
) -> Transaction:
    """Sign ``instructions`` into one legacy transaction paid by ``payer``.

    Raises ``ValueError`` (from solders) when a required signer is missing.
    """
    message = Message.new_with_blockhash(list(instructions), payer.pubkey(), blockhash)
    return Transaction([payer, *signers], message, blockhash)


@dataclass(frozen=True, slots=True)
class TicketOnChain:
    """A ticket mint read back: who may act on it and what it says about itself."""

    mint: MintAccount
    name: str
    symbol: str
    uri: str
    event_id: str | None
    ticket_type: str | None


def read_ticket_mint(data: bytes) -> TicketOnChain:
    """Read a ticket mint's raw bytes.

    Raises :class:`~sync_server.chain.token2022.AccountLayoutError` when the bytes are not a mint
    or carry no token metadata.
    """
    mint = parse_mint(data)
    if mint.metadata is None:
        raise AccountLayoutError("mint has no token metadata")
    fields = mint.metadata.additional
    return TicketOnChain(
        mint=mint,
        name=mint.metadata.name,
        symbol=mint.metadata.symbol,
        uri=mint.metadata.uri,
        event_id=fields.get(EVENT_ID_KEY),
        ticket_type=fields.get(TICKET_TYPE_KEY),
    )


def read_ticket_holding(data: bytes) -> TokenAccount:
    """Read a token account's raw bytes (owner, amount, frozen).

    Raises :class:`~sync_server.chain.token2022.AccountLayoutError` when they are not one.
    """
    return parse_token_account(data)
