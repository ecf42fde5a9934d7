"""The HTTP edge: who is calling (bearer tokens, roles, guards), problem+json errors, cursor
pagination, idempotency keys, the per-request dependencies (the caller, its tenant's
transaction), the request-context middleware (request id, access log), the rate-limit
middleware, and the operations routes (/health, /ready, /metrics).

Domain controllers use the edge's public pieces (``auth``'s principal, roles and guards,
``problems``' error types, ``pagination``, ``idempotency``, and the typed aliases of
``dependencies``: ``PrincipalDep``, ``SessionDep``...); the middlewares and the providers are
the app factory's business (see docs/architecture.md).
"""
