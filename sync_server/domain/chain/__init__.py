"""chain: what the server's Solana side looks like from outside (``GET /v1/chain/config``)"""
