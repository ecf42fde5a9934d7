"""Solana: tickets as Token-2022 NFTs, the client side of the chain, and its local test node."""
