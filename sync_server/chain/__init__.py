"""Solana as a library: the RPC client and keys, Token-2022 NFT layouts and instructions, the
chain actions' transactions, the pure parser of ownership changes and the ownership reader.
What tickets do on the chain — the minting consumer, the transaction tracker, the listener —
is domain work in ``sync_server.domain.chain``. The local test node lives in
``testkit/solana``."""
