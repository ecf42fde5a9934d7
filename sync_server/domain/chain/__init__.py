"""chain: what tickets do on Solana. The minting consumer (``minting``), the transaction
tracker (``tracker``) and the listener that makes tickets follow on-chain transfers
(``listener``, through ``ticket_updates``), run by the worker; and what the server's Solana
side looks like from outside (``GET /v1/chain/config``, the NFT metadata routes)."""
