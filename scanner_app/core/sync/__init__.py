"""Keeping a scanner and its server in step: the HTTP client and the sync engine."""
