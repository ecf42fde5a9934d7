"""Holder names sealed as the server's changes feed seals them, for tests and benchmarks.

A test ticket's name secret is derived from its id (public test material: never for real use),
so a test that puts ``sealed_holder(ticket_id, name)`` in a feed change issues the ticket's
code with ``name_secret=name_secret_of(ticket_id)`` and the scanner opens the name.
"""

from __future__ import annotations

import hashlib
import uuid

from shared.holder_name import seal_name
from shared.ticket_code import NAME_SECRET_BYTES


def name_secret_of(ticket_id: uuid.UUID) -> bytes:
    return hashlib.sha256(b"gatehouse test name secret|" + ticket_id.bytes).digest()[
        :NAME_SECRET_BYTES
    ]


def sealed_holder(ticket_id: uuid.UUID, name: str | None, secret_version: int = 0) -> bytes | None:
    if name is None:
        return None
    return seal_name(
        name_secret_of(ticket_id), name, ticket_id=ticket_id, secret_version=secret_version
    )
