"""Manager accounts, one-time password links and console sessions (migration 0015).

Passwords are kept only as argon2id hashes (argon2-cffi's defaults, RFC 9106's second
recommended profile); one-time links and session tokens only as SHA-256 hashes: a copy of the
database opens no account and no session. A look-up before the tenant is known (sign-in by
email, a password link, a session cookie) sets the one key it may see (``set_config``, the
transaction only; the policies of 0015 show that one row), then switches the transaction to
the row's tenant before it touches anything else.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Row, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.ids import new_id
from sync_server.db.engine import Database

#: How long a one-time link to set a password works.
PASSWORD_LINK_TTL: Final = timedelta(hours=24)
#: How long a console session lasts from sign-in (a working day, as a manager's token).
SESSION_TTL: Final = timedelta(hours=12)
MIN_PASSWORD_LENGTH: Final = 12
MAX_PASSWORD_LENGTH: Final = 1024
MAX_EMAIL_LENGTH: Final = 254
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when no account has the email, so a wrong email takes as long as a
    wrong password and the answer's timing does not say which emails have accounts. Made on
    first use, not at import: one argon2 hash costs every server and CLI start a quarter of a
    second otherwise."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def token_hash(token: str) -> bytes:
    """What the database keeps of a link's or a session's token."""
    return hashlib.sha256(token.encode()).digest()


def normal_email(raw: str) -> str | None:
    """The email as accounts store it (trimmed, lower-case), or None when it is not one."""
    email = raw.strip().lower()
    if not email or len(email) > MAX_EMAIL_LENGTH or _EMAIL.match(email) is None:
        return None
    return email


def password_problem(password: str) -> str | None:
    """Why ``password`` may not be a manager's password, as a sentence; None when it may."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Choose a password of at least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"Choose a password of at most {MAX_PASSWORD_LENGTH} characters."
    return None


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_HASHER.hash, password)


async def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored`` (an argon2 hash; None: no password yet, which
    matches nothing but costs the same time)."""

    def check() -> bool:
        try:
            return _HASHER.verify(stored or _dummy_hash(), password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(check)


class EmailTaken(Exception):
    """Another account already has this email."""


@dataclass(frozen=True, slots=True)
class Manager:
    """The signed-in manager a console request acts for."""

    user_id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    role: str
    tenant_name: str
    session_id: uuid.UUID

    @property
    def actor(self) -> str:
        """Whom the rate limits count (``RateLimits.hit``): the manager, as their API tokens."""
        return f"{self.role}:{self.user_id}"


async def _set(session: AsyncSession, name: str, value: str) -> None:
    await session.execute(
        text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value}
    )


async def create_user(
    database: Database, tenant_id: uuid.UUID, email: str, now: datetime
) -> tuple[uuid.UUID, str]:
    """A manager account in ``tenant_id`` with no password yet; returns its id and the
    one-time token of its password link (kept only hashed). Raises ``ValueError`` for an
    email that is not one, ``EmailTaken`` when an account has it."""
    normal = normal_email(email)
    if normal is None:
        raise ValueError(f"{email!r} is not an email address")
    user_id, token = new_id(), secrets.token_urlsafe(32)
    try:
        async with database.tenant(tenant_id) as session:
            await session.execute(
                text(
                    "INSERT INTO users (id, tenant_id, email, password_link_hash,"
                    " password_link_expires_at) VALUES (:id, :tenant, :email, :hash, :expires)"
                ),
                {
                    "id": user_id,
                    "tenant": tenant_id,
                    "email": normal,
                    "hash": token_hash(token),
                    "expires": now + PASSWORD_LINK_TTL,
                },
            )
    except IntegrityError as error:
        raise EmailTaken(normal) from error
    return user_id, token


async def new_password_link(database: Database, email: str, now: datetime) -> str | None:
    """A fresh one-time link token for the account with ``email`` (the old link stops
    working); None when there is no such account."""
    normal = normal_email(email)
    if normal is None:
        return None
    token = secrets.token_urlsafe(32)
    async with database.untenanted() as session:
        await _set(session, "gatehouse.console_email", normal)
        row = (
            await session.execute(
                text("SELECT id, tenant_id FROM users WHERE email = :e"), {"e": normal}
            )
        ).first()
        if row is None:
            return None
        await database.set_tenant(session, row.tenant_id)
        await session.execute(
            text(
                "UPDATE users SET password_link_hash = :hash, password_link_expires_at = :exp"
                " WHERE id = :id"
            ),
            {"hash": token_hash(token), "exp": now + PASSWORD_LINK_TTL, "id": row.id},
        )
    return token


async def link_email(database: Database, token: str, now: datetime) -> str | None:
    """The email of the account whose unexpired one-time link is ``token``; None if none."""
    async with database.untenanted() as session:
        row = await _link_row(session, token, now)
    return None if row is None else str(row.email)


async def _link_row(session: AsyncSession, token: str, now: datetime) -> Row[Any] | None:
    if not token or len(token) > 200:
        return None
    await _set(session, "gatehouse.console_link_hash", token_hash(token).hex())
    return (
        await session.execute(
            text(
                "SELECT id, tenant_id, email FROM users WHERE password_link_hash = :h"
                " AND password_link_expires_at > :now AND disabled_at IS NULL"
            ),
            {"h": token_hash(token), "now": now},
        )
    ).first()


async def set_password(database: Database, token: str, password: str, now: datetime) -> bool:
    """Set the password of the account whose unexpired link is ``token`` and spend the link
    (and end the account's sessions). False when the link is unknown, used or expired."""
    hashed = await hash_password(password)
    async with database.untenanted() as session:
        row = await _link_row(session, token, now)
        if row is None:
            return False
        await database.set_tenant(session, row.tenant_id)
        await session.execute(
            text(
                "UPDATE users SET password_hash = :p, password_link_hash = NULL,"
                " password_link_expires_at = NULL WHERE id = :id AND password_link_hash = :h"
            ),
            {"p": hashed, "id": row.id, "h": token_hash(token)},
        )
        await session.execute(
            text("DELETE FROM console_sessions WHERE user_id = :id"),
            {"id": row.id},
        )
    return True


async def sign_in(database: Database, email: str, password: str, now: datetime) -> str | None:
    """A new session's token for the account with ``email`` and ``password``; None when the
    email has no enabled account with a password or the password is wrong (the same answer
    and about the same time either way)."""
    normal = normal_email(email)
    stored: str | None = None
    row = None
    async with database.untenanted() as session:
        if normal is not None:
            await _set(session, "gatehouse.console_email", normal)
            row = (
                await session.execute(
                    text(
                        "SELECT id, tenant_id, password_hash FROM users"
                        " WHERE email = :e AND disabled_at IS NULL"
                    ),
                    {"e": normal},
                )
            ).first()
            stored = None if row is None else row.password_hash
        if not await verify_password(stored, password) or row is None:
            return None
        token = secrets.token_urlsafe(32)
        await database.set_tenant(session, row.tenant_id)
        # The account's expired sessions go as it signs in again: the table holds at most a
        # session lifetime's sign-ins per account (the worker's pruning does not know it yet).
        await session.execute(
            text("DELETE FROM console_sessions WHERE user_id = :user AND expires_at <= :now"),
            {"user": row.id, "now": now},
        )
        await session.execute(
            text(
                "INSERT INTO console_sessions (id, tenant_id, user_id, token_hash, expires_at)"
                " VALUES (:id, :tenant, :user, :hash, :expires)"
            ),
            {
                "id": new_id(),
                "tenant": row.tenant_id,
                "user": row.id,
                "hash": token_hash(token),
                "expires": now + SESSION_TTL,
            },
        )
    return token


async def session_manager(database: Database, token: str, now: datetime) -> Manager | None:
    """The manager whose live session is ``token``; None for an unknown, ended or expired
    session, or a disabled account."""
    if not token or len(token) > 200:
        return None
    async with database.untenanted() as session:
        await _set(session, "gatehouse.console_session_hash", token_hash(token).hex())
        found = (
            await session.execute(
                text(
                    "SELECT id, tenant_id, user_id FROM console_sessions"
                    " WHERE token_hash = :h AND expires_at > :now"
                ),
                {"h": token_hash(token), "now": now},
            )
        ).first()
        if found is None:
            return None
        await database.set_tenant(session, found.tenant_id)
        user = (
            await session.execute(
                text(
                    "SELECT u.email, u.role, t.name FROM users u JOIN tenants t"
                    " ON t.id = u.tenant_id WHERE u.id = :id AND u.disabled_at IS NULL"
                ),
                {"id": found.user_id},
            )
        ).first()
        if user is None:
            return None
        return Manager(
            user_id=found.user_id,
            tenant_id=found.tenant_id,
            email=user.email,
            role=user.role,
            tenant_name=user.name,
            session_id=found.id,
        )


async def sign_out(database: Database, manager: Manager) -> None:
    """End the manager's session: its cookie opens nothing any more."""
    async with database.tenant(manager.tenant_id) as session:
        await session.execute(
            text("DELETE FROM console_sessions WHERE id = :id"), {"id": manager.session_id}
        )
