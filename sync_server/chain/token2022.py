"""Token-2022 pieces that solana-py cannot build or parse, encoded from the published layouts.

solana-py's ``spl.token`` builds the classic token instructions (they work for Token-2022 when
given its program id) but not the metadata-pointer extension, the token-metadata interface, or
accounts that carry extensions. This module fills those gaps, and only those:

- ``MetadataPointerExtension::Initialize`` (Token-2022 instruction 39, sub-instruction 0),
  from ``token/program-2022/src/extension/metadata_pointer/instruction.rs``: two 32-byte
  ``OptionalNonZeroPubkey`` (all zeros means none), authority then metadata address.
- The token-metadata interface (``spl-token-metadata-interface``), which Token-2022 implements
  for mints that carry their own metadata: an 8-byte discriminator, the first 8 bytes of
  ``sha256("spl_token_metadata_interface:<name>")``, followed by Borsh arguments (strings are a
  u32 little-endian length and UTF-8 bytes; ``Field`` is a one-byte enum tag, ``Key`` carrying
  its string).
- Account layouts from ``token/program-2022/src/state.rs`` and ``extension/mod.rs``: the 82-byte
  mint or 165-byte account base, for a mint zero padding up to 165, one account-type byte, then
  TLV entries (u16 type, u16 length, value). The metadata value is Borsh ``TokenMetadata``
  (``token-metadata/interface/src/state.rs``).

Every encoder here is exercised against the real Token-2022 program in LiteSVM by the tests.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from enum import IntEnum

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from spl.token.constants import TOKEN_2022_PROGRAM_ID

MINT_BASE_SIZE = 82
ACCOUNT_BASE_SIZE = 165
_ACCOUNT_TYPE_OFFSET = ACCOUNT_BASE_SIZE
_TLV_START = ACCOUNT_BASE_SIZE + 1
_TLV_HEADER_SIZE = 4
_PUBKEY_SIZE = 32

_METADATA_POINTER_EXTENSION = 39  # TokenInstruction::MetadataPointerExtension
_METADATA_POINTER_INITIALIZE = 0  # MetadataPointerInstruction::Initialize


class ExtensionType(IntEnum):
    """Token-2022 TLV extension types (``ExtensionType`` in ``extension/mod.rs``), those we use."""

    TRANSFER_FEE_CONFIG = 1
    IMMUTABLE_OWNER = 7
    METADATA_POINTER = 18
    TOKEN_METADATA = 19


class AccountState(IntEnum):
    """A token account's state byte."""

    UNINITIALIZED = 0
    INITIALIZED = 1
    FROZEN = 2


class MetadataField(IntEnum):
    """The Borsh tag of the token-metadata ``Field`` enum; ``KEY`` is an additional field."""

    NAME = 0
    SYMBOL = 1
    URI = 2
    KEY = 3


class AccountLayoutError(ValueError):
    """Raised when account bytes are not the Token-2022 account kind the caller asked for."""


def _discriminator(name: str) -> bytes:
    return hashlib.sha256(f"spl_token_metadata_interface:{name}".encode()).digest()[:8]


INITIALIZE_METADATA_DISCRIMINATOR = _discriminator("initialize_account")
UPDATE_FIELD_DISCRIMINATOR = _discriminator("updating_field")


def _borsh_string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack("<I", len(raw)) + raw


def _optional_pubkey(key: Pubkey | None) -> bytes:
    return bytes(key) if key is not None else bytes(_PUBKEY_SIZE)


# -- instructions ---------------------------------------------------------------------------------


def initialize_metadata_pointer(
    mint: Pubkey, *, authority: Pubkey | None, metadata_address: Pubkey
) -> Instruction:
    """Initialize the metadata-pointer extension of an uninitialized mint.

    Must come after the account is created with room for the extension and before
    ``InitializeMint``; the program rejects it on an initialized mint.
    """
    data = (
        bytes([_METADATA_POINTER_EXTENSION, _METADATA_POINTER_INITIALIZE])
        + _optional_pubkey(authority)
        + bytes(metadata_address)
    )
    return Instruction(
        TOKEN_2022_PROGRAM_ID, data, [AccountMeta(mint, is_signer=False, is_writable=True)]
    )


def initialize_token_metadata(
    mint: Pubkey,
    *,
    update_authority: Pubkey,
    mint_authority: Pubkey,
    name: str,
    symbol: str,
    uri: str,
) -> Instruction:
    """Write the token-metadata extension into the mint itself (``Initialize``).

    Needs the mint authority's signature, so it must run before that authority is removed. The
    program grows the account; the mint must already hold the lamports for the larger size.
    """
    data = (
        INITIALIZE_METADATA_DISCRIMINATOR
        + _borsh_string(name)
        + _borsh_string(symbol)
        + _borsh_string(uri)
    )
    accounts = [
        AccountMeta(mint, is_signer=False, is_writable=True),
        AccountMeta(update_authority, is_signer=False, is_writable=False),
        AccountMeta(mint, is_signer=False, is_writable=False),
        AccountMeta(mint_authority, is_signer=True, is_writable=False),
    ]
    return Instruction(TOKEN_2022_PROGRAM_ID, data, accounts)


def update_token_metadata_field(
    mint: Pubkey, *, update_authority: Pubkey, key: str, value: str
) -> Instruction:
    """Set an additional metadata field (``UpdateField`` with ``Field::Key``) on the mint.

    Adds the field if it is new, replaces its value otherwise. Needs the update authority's
    signature and, when the account grows, lamports already on the mint for the larger size.
    """
    data = (
        UPDATE_FIELD_DISCRIMINATOR
        + bytes([MetadataField.KEY])
        + _borsh_string(key)
        + _borsh_string(value)
    )
    accounts = [
        AccountMeta(mint, is_signer=False, is_writable=True),
        AccountMeta(update_authority, is_signer=True, is_writable=False),
    ]
    return Instruction(TOKEN_2022_PROGRAM_ID, data, accounts)


# -- sizes ----------------------------------------------------------------------------------------


def token_metadata_size(name: str, symbol: str, uri: str, additional: list[tuple[str, str]]) -> int:
    """Bytes the Borsh ``TokenMetadata`` value takes (without its TLV header)."""
    strings = [name, symbol, uri, *(part for pair in additional for part in pair)]
    return 2 * _PUBKEY_SIZE + 4 + sum(4 + len(text.encode()) for text in strings)


def mint_size(extension_value_sizes: list[int]) -> int:
    """Size of a mint account carrying TLV extensions whose values have these sizes."""
    if not extension_value_sizes:
        return MINT_BASE_SIZE
    return _TLV_START + sum(_TLV_HEADER_SIZE + size for size in extension_value_sizes)


METADATA_POINTER_SIZE = 2 * _PUBKEY_SIZE


# -- readers --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenMetadata:
    """The token-metadata extension as stored on the mint."""

    update_authority: Pubkey | None
    mint: Pubkey
    name: str
    symbol: str
    uri: str
    additional: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MintAccount:
    """A Token-2022 mint read from raw account bytes."""

    mint_authority: Pubkey | None
    supply: int
    decimals: int
    is_initialized: bool
    freeze_authority: Pubkey | None
    extensions: dict[int, bytes]
    metadata_pointer_authority: Pubkey | None = None
    metadata_address: Pubkey | None = None
    metadata: TokenMetadata | None = None


@dataclass(frozen=True, slots=True)
class TokenAccount:
    """A token account read from raw account bytes (classic or Token-2022)."""

    mint: Pubkey
    owner: Pubkey
    amount: int
    delegate: Pubkey | None
    state: AccountState

    @property
    def frozen(self) -> bool:
        """Whether the freeze authority froze this account (no transfer, no burn)."""
        return self.state is AccountState.FROZEN


class _Reader:
    """A cursor over bytes; running past the end raises :class:`AccountLayoutError`."""

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self._data = data
        self._offset = offset

    def take(self, size: int) -> bytes:
        end = self._offset + size
        if size < 0 or end > len(self._data):
            raise AccountLayoutError("account data ends early")
        chunk = self._data[self._offset : end]
        self._offset = end
        return chunk

    @property
    def remaining(self) -> int:
        return len(self._data) - self._offset

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        value: int = struct.unpack("<I", self.take(4))[0]
        return value

    def u64(self) -> int:
        value: int = struct.unpack("<Q", self.take(8))[0]
        return value

    def pubkey(self) -> Pubkey:
        return Pubkey.from_bytes(self.take(_PUBKEY_SIZE))

    def coption_pubkey(self) -> Pubkey | None:
        tag = self.u32()
        key = self.pubkey()
        return key if tag == 1 else None

    def nonzero_pubkey(self) -> Pubkey | None:
        raw = self.take(_PUBKEY_SIZE)
        return Pubkey.from_bytes(raw) if any(raw) else None

    def string(self) -> str:
        try:
            return self.take(self.u32()).decode()
        except UnicodeDecodeError as exc:
            raise AccountLayoutError("metadata string is not UTF-8") from exc


def _extensions(data: bytes, expected_type: int) -> dict[int, bytes]:
    if len(data) <= ACCOUNT_BASE_SIZE:
        return {}
    if data[_ACCOUNT_TYPE_OFFSET] != expected_type:
        raise AccountLayoutError("account type byte does not match")
    found: dict[int, bytes] = {}
    reader = _Reader(data, _TLV_START)
    while reader.remaining >= _TLV_HEADER_SIZE:
        kind, length = struct.unpack("<HH", reader.take(_TLV_HEADER_SIZE))
        if kind == 0:  # Uninitialized: the rest is unused space
            break
        found[kind] = reader.take(length)
    return found


def parse_token_metadata(value: bytes) -> TokenMetadata:
    """Decode the Borsh ``TokenMetadata`` value of the token-metadata extension."""
    reader = _Reader(value)
    update_authority = reader.nonzero_pubkey()
    mint = reader.pubkey()
    name, symbol, uri = reader.string(), reader.string(), reader.string()
    additional = {}
    for _ in range(reader.u32()):
        key = reader.string()
        additional[key] = reader.string()
    return TokenMetadata(update_authority, mint, name, symbol, uri, additional)


_MINT_ACCOUNT_TYPE = 1
_TOKEN_ACCOUNT_TYPE = 2


def parse_mint(data: bytes) -> MintAccount:
    """Read a mint, with its metadata pointer and metadata when present.

    Raises :class:`AccountLayoutError` when the bytes are not a mint.
    """
    if len(data) != MINT_BASE_SIZE and len(data) <= ACCOUNT_BASE_SIZE:
        raise AccountLayoutError("not a mint account")
    reader = _Reader(data)
    mint_authority = reader.coption_pubkey()
    supply = reader.u64()
    decimals = reader.u8()
    is_initialized = reader.u8() == 1
    freeze_authority = reader.coption_pubkey()
    extensions = _extensions(data, _MINT_ACCOUNT_TYPE)
    pointer_authority = metadata_address = None
    if (pointer := extensions.get(ExtensionType.METADATA_POINTER)) is not None:
        pointer_reader = _Reader(pointer)
        pointer_authority = pointer_reader.nonzero_pubkey()
        metadata_address = pointer_reader.nonzero_pubkey()
    metadata = None
    if (value := extensions.get(ExtensionType.TOKEN_METADATA)) is not None:
        metadata = parse_token_metadata(value)
    return MintAccount(
        mint_authority=mint_authority,
        supply=supply,
        decimals=decimals,
        is_initialized=is_initialized,
        freeze_authority=freeze_authority,
        extensions=extensions,
        metadata_pointer_authority=pointer_authority,
        metadata_address=metadata_address,
        metadata=metadata,
    )


def parse_token_account(data: bytes) -> TokenAccount:
    """Read a token account's mint, owner, amount, delegate and state.

    Raises :class:`AccountLayoutError` when the bytes are not a token account.
    """
    if len(data) < ACCOUNT_BASE_SIZE:
        raise AccountLayoutError("not a token account")
    if len(data) > ACCOUNT_BASE_SIZE:
        _extensions(data, _TOKEN_ACCOUNT_TYPE)  # checks the account type byte
    reader = _Reader(data)
    mint = reader.pubkey()
    owner = reader.pubkey()
    amount = reader.u64()
    delegate = reader.coption_pubkey()
    state_byte = reader.u8()
    try:
        state = AccountState(state_byte)
    except ValueError as exc:
        raise AccountLayoutError(f"unknown account state {state_byte}") from exc
    return TokenAccount(mint, owner, amount, delegate, state)
