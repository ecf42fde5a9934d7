"""Solana: tickets as Token-2022 NFTs, our chain actions (minting, tracker) and the listener that
makes tickets follow the chain. The local test node lives in ``testkit/solana``."""
