"""Postgres access: the table models and the tenant-scoped transactions."""
