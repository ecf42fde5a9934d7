"""The HTTP edge: who is calling (bearer tokens, roles, guards), problem+json errors, cursor
pagination, idempotency keys, the request-context middleware (request id, access log), and
the operations routes (/health, /ready, /metrics).

Domain controllers use the edge's public pieces (``auth``'s principal, roles and guards,
``problems``' error types, ``pagination``, ``idempotency``); the middleware and the request
context are the app factory's business (see docs/architecture.md).
"""
