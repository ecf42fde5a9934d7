"""A local Solana node for tests and benchmarks: LiteSVM (``localledger``) behind real HTTP
JSON-RPC and WebSocket endpoints on 127.0.0.1 (``localnode``), so the production ``solana``
client is what the tests exercise."""
