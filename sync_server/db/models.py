"""The tables, as the application queries them. The schema itself (RLS policies, grants,
checks) is created by the Alembic revisions in ``migrations/``; a test checks the two agree."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        uuid.UUID: UUID(as_uuid=True),
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
        bytes: LargeBinary,
    }


def _tenant() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("tenants.id"), index=True)


def _created() -> Mapped[datetime]:
    return mapped_column(server_default=func.now())


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint("expiry_grace_seconds BETWEEN 0 AND 2592000", name="expiry_grace_seconds"),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant()
    name: Mapped[str] = mapped_column(Text)
    venue: Mapped[str] = mapped_column(Text)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    admission_opens_at: Mapped[datetime | None]
    allow_reentry: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = _created()
    #: The IANA time zone its days and rules count in (issue 16).
    time_zone: Mapped[str] = mapped_column(Text, server_default="UTC")
    #: Its days or sessions: ``wire.EventDayIn`` as JSON.
    days: Mapped[list[Any]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    #: Grows with every change to its access setup (lists, days, zone, ticket types' days), by
    #: triggers in the changing transaction (migration 0013).
    setup_version: Mapped[int] = mapped_column(BigInteger, server_default="1")
    #: How long after it ends its tickets expire, in seconds (0..30 days); None: the server's
    #: default (``GATEHOUSE_EXPIRY_GRACE``; migration 0022).
    expiry_grace_seconds: Mapped[int | None] = mapped_column(Integer)


class TicketType(Base):
    __tablename__ = "ticket_types"
    __table_args__ = (UniqueConstraint("event_id", "name"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant()
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id"), index=True)
    name: Mapped[str] = mapped_column(Text)
    capacity: Mapped[int] = mapped_column(Integer)
    sold: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = _created()
    #: The event days (ISO dates) it admits; empty: every day.
    days: Mapped[list[Any]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    #: Whether revoking one of its tickets counts the seat back into its capacity (0019).
    release_seat: Mapped[bool] = mapped_column(Boolean, server_default="false")


class CheckinList(Base):
    """A check-in list of an event (docs/checkin-lists.md). Deleted when it has no scans,
    archived (``archived_at``) when it has."""

    __tablename__ = "checkin_lists"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant()
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id"), index=True)
    name: Mapped[str] = mapped_column(Text)
    ticket_type_ids: Mapped[list[Any]] = mapped_column(JSONB)
    gates: Mapped[list[Any]] = mapped_column(JSONB)
    zone: Mapped[str | None] = mapped_column(Text)
    allow_reentry: Mapped[bool | None] = mapped_column(Boolean)
    allow_multiple_entries: Mapped[bool] = mapped_column(Boolean, server_default="false")
    windows: Mapped[list[Any]] = mapped_column(JSONB)
    rules: Mapped[Any] = mapped_column(JSONB, nullable=True)
    explanation: Mapped[str | None] = mapped_column(Text)
    archived_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_event_id_status_id", "event_id", "status", "id"),
        Index("ix_tickets_purchase_id", "purchase_id"),
        Index("ix_tickets_event_id_change_seq", "event_id", "change_seq"),
        Index("ix_tickets_pending", "updated_at", postgresql_where=text("change_seq IS NULL")),
        Index(
            "ix_tickets_holder_name_key",
            "holder_name_key",
            postgresql_ops={"holder_name_key": "text_pattern_ops"},
        ),
        Index(
            "ix_tickets_nft_mint",
            "nft_mint",
            unique=True,
            postgresql_where=text("nft_mint IS NOT NULL"),
        ),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant()
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id"))
    ticket_type_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ticket_types.id"))
    purchase_id: Mapped[uuid.UUID]
    user_id: Mapped[str] = mapped_column(Text)
    holder_name: Mapped[str] = mapped_column(Text)
    #: ``lower(holder_name)``, kept by Postgres: the console's search by the start of a name
    #: (migration 0016 says why a column).
    holder_name_key: Mapped[str] = mapped_column(
        Text, Computed("lower(holder_name)", persisted=True)
    )
    holder_wallet: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    secret_version: Mapped[int] = mapped_column(Integer, server_default="0")
    #: The name secret of the current secret version (the key to the holder's name that the
    #: ticket's GH2 code carries), sealed under the master key; NULL until a code is first
    #: made for this version (see ``KeyStore.name_secret``).
    name_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    nft_mint: Mapped[str | None] = mapped_column(Text)
    #: ``not_minted``, ``pending`` (a chain action in flight), ``synced``, ``out_of_sync`` (the
    #: chain was seen to disagree; the listener reconciles) or ``failed`` (see docs/chain.md).
    blockchain_sync_status: Mapped[str] = mapped_column(Text, server_default="not_minted")
    #: The wallet holding the NFT, as last seen on-chain (custody for holders without a wallet).
    chain_owner: Mapped[str | None] = mapped_column(Text)
    chain_frozen: Mapped[bool] = mapped_column(Boolean, server_default="false")
    #: Slot of the last on-chain change applied; an older notification never undoes a newer one.
    chain_slot: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()
    #: Position in the changes feed; NULL until the sequencer numbers the committed change.
    change_seq: Mapped[int | None] = mapped_column(BigInteger)


class TicketStateTransition(Base):
    """History: one row per lifecycle step of a ticket. Append-only for the application."""

    __tablename__ = "ticket_state_transitions"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant()
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(Text)
    from_status: Mapped[str | None] = mapped_column(Text)
    to_status: Mapped[str] = mapped_column(Text)
    secret_version: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    occurred_at: Mapped[datetime] = _created()


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (
        CheckConstraint("octet_length(peer_public_key) = 32", name="peer_public_key_length"),
        # An event's revoked devices, newest first: every device's GET /v1/devices/me asks.
        Index(
            "ix_devices_event_id_revoked_at",
            "event_id",
            "revoked_at",
            postgresql_where=text("revoked_at IS NOT NULL"),
        ),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant()
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id"))
    gate: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    revoked_at: Mapped[datetime | None]
    #: Why it was revoked: NULL for a manager's revocation, ``refresh_token_reused`` when the
    #: server saw one of its refresh tokens used twice (``domain/devices/refresh.py``).
    revoked_reason: Mapped[str | None] = mapped_column(Text)
    last_seen_at: Mapped[datetime | None]
    #: Hashes of the device's refresh tokens (never the tokens): the secret all of them carry,
    #: the current one and the one before it; NULL for a device enrolled before migration 0008.
    refresh_family_hash: Mapped[bytes | None]
    refresh_hash: Mapped[bytes | None]
    refresh_previous_hash: Mapped[bytes | None]
    refresh_generation: Mapped[int] = mapped_column(Integer, server_default="0")
    refresh_renewed_at: Mapped[datetime | None]
    #: The latest heartbeat (migration 0014): when it arrived, and what the device said about
    #: itself (``shared.wire.DeviceHeartbeat``); NULL until its first.
    heartbeat_at: Mapped[datetime | None]
    queued_scans: Mapped[int | None] = mapped_column(Integer)
    queued_annulments: Mapped[int | None] = mapped_column(Integer)
    oldest_queued_at: Mapped[datetime | None]
    clock_offset_ms: Mapped[int | None] = mapped_column(Integer)
    app_version: Mapped[str | None] = mapped_column(Text)
    setup_version: Mapped[int | None] = mapped_column(BigInteger)
    last_sync_at: Mapped[datetime | None]
    sync_interval_seconds: Mapped[int | None] = mapped_column(Integer)
    lab_mode: Mapped[bool | None]
    #: Peer sync (migration 0017): the Ed25519 public key the device sent at enrollment, which
    #: the server certifies (NULL: a scanner older than peer sync), and how many other gates
    #: it said it heard in its latest heartbeat (NULL: peer sync off, or not said).
    peer_public_key: Mapped[bytes | None]
    peers_heard: Mapped[int | None] = mapped_column(Integer)
    #: A gate enrolled again on the same computer (migration 0023): the device it took over
    #: from, and the first device of that line (NULL: itself). Devices of one lineage share
    #: their scans (``Admission.same_gate``).
    succeeds_id: Mapped[uuid.UUID | None]
    lineage_id: Mapped[uuid.UUID | None]


class DeviceEnrollment(Base):
    """A one-time code (stored only as a hash) that lets a device enroll for a gate."""

    __tablename__ = "device_enrollments"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant()
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id"))
    gate: Mapped[str] = mapped_column(Text)
    code_hash: Mapped[bytes] = mapped_column(unique=True)
    expires_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    used_at: Mapped[datetime | None]
    device_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("devices.id"))


class TicketScan(Base):
    """One scan at a gate, online or uploaded later. ``scanned_at`` is the device's time
    corrected by its measured clock offset; the device's own reading is kept beside it."""

    __tablename__ = "ticket_scans"
    __table_args__ = (
        Index("ix_ticket_scans_event_id_scanned_at", "event_id", "scanned_at"),
        Index("ix_ticket_scans_event_id_id", "event_id", "id"),
        # A ticket's scans in time order, under its tenant's row-level security (migration 0024).
        Index("ix_ticket_scans_tenant_id_ticket_id", "tenant_id", "ticket_id", "scanned_at", "id"),
        Index("ix_ticket_scans_event_id_change_seq", "event_id", "change_seq"),
        Index(
            "ix_ticket_scans_pending", "received_at", postgresql_where=text("change_seq IS NULL")
        ),
        CheckConstraint(
            "conflict_resolution IN ('accepted', 'annulled')",
            name="conflict_resolution",
        ),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # No foreign keys to the tenant, ticket, event or device (migration 0012: each cost every
    # scan row a look-up, and row-level security and the admission already guarantee them).
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    # Indexed by ix_ticket_scans_tenant_id_ticket_id (after the tenant): no index of its own.
    ticket_id: Mapped[uuid.UUID | None]
    event_id: Mapped[uuid.UUID]
    device_id: Mapped[uuid.UUID | None]
    scanned_by: Mapped[str] = mapped_column(Text)
    gate: Mapped[str] = mapped_column(Text)
    direction: Mapped[str] = mapped_column(Text)
    result: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    scanned_at: Mapped[datetime]
    received_at: Mapped[datetime] = _created()
    conflict_of: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ticket_scans.id"))
    device_scanned_at: Mapped[datetime | None]
    clock_offset_ms: Mapped[int] = mapped_column(Integer, server_default="0")
    offline: Mapped[bool] = mapped_column(Boolean, server_default="false")
    #: What the device showed, for offline scans.
    device_result: Mapped[str | None] = mapped_column(Text)
    device_reason: Mapped[str | None] = mapped_column(Text)
    #: Why the server would have refused an offline admission (stale data on the device).
    server_reason: Mapped[str | None] = mapped_column(Text)
    code_secret_version: Mapped[int | None] = mapped_column(Integer)
    annulled_at: Mapped[datetime | None]
    annulled_by: Mapped[str | None] = mapped_column(Text)
    change_seq: Mapped[int | None] = mapped_column(BigInteger)
    #: The check-in list it counted on and that list's zone (issue 16). No foreign key
    #: (migration 0013 says what guarantees it).
    checkin_list_id: Mapped[uuid.UUID | None]
    zone: Mapped[str | None] = mapped_column(Text)
    #: A double entry a manager resolved (migration 0019): when, who, how (``accepted``: both
    #: admissions stand, it counts as an admission; ``annulled``) and the manager's note. A
    #: conflict that stands has none of them.
    conflict_resolved_at: Mapped[datetime | None]
    conflict_resolved_by: Mapped[str | None] = mapped_column(Text)
    conflict_resolution: Mapped[str | None] = mapped_column(Text)
    conflict_resolution_note: Mapped[str | None] = mapped_column(Text)


class GateCount(Base):
    """An event's counts per gate and rejection reason (``''``: scans not rejected), kept by
    triggers on ``ticket_scans`` (migration 0020): one row per writing connection (``shard``,
    its backend pid), which readers sum."""

    __tablename__ = "gate_counts"
    tenant_id: Mapped[uuid.UUID]
    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    gate: Mapped[str] = mapped_column(Text, primary_key=True)
    reason: Mapped[str] = mapped_column(Text, primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    admitted: Mapped[int] = mapped_column(BigInteger, server_default="0")
    rejected: Mapped[int] = mapped_column(BigInteger, server_default="0")
    conflicts: Mapped[int] = mapped_column(BigInteger, server_default="0")
    annulled: Mapped[int] = mapped_column(BigInteger, server_default="0")
    exits: Mapped[int] = mapped_column(BigInteger, server_default="0")
    last_scan_at: Mapped[datetime | None]


class GateMinute(Base):
    """An event's admissions and rejections per minute and gate (migration 0020)."""

    __tablename__ = "gate_minutes"
    tenant_id: Mapped[uuid.UUID]
    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    minute: Mapped[datetime] = mapped_column(primary_key=True)
    gate: Mapped[str] = mapped_column(Text, primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    admitted: Mapped[int] = mapped_column(BigInteger, server_default="0")
    rejected: Mapped[int] = mapped_column(BigInteger, server_default="0")


class ZoneCount(Base):
    """How many tickets of an event are inside each zone (``''``: the general area), kept by
    the triggers of migration 0020."""

    __tablename__ = "zone_counts"
    tenant_id: Mapped[uuid.UUID]
    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    zone: Mapped[str] = mapped_column(Text, primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    inside: Mapped[int] = mapped_column(BigInteger, server_default="0")


class TicketKey(Base):
    """A ticket-code key of one event. Private material is sealed under the master key."""

    __tablename__ = "keys"
    __table_args__ = (
        UniqueConstraint("event_id", "kind", "key_id"),
        Index(
            "ix_keys_one_active", "event_id", "kind", unique=True, postgresql_where=text("active")
        ),
        Index("ix_keys_event_id_change_seq", "event_id", "change_seq"),
        Index("ix_keys_pending", "created_at", postgresql_where=text("change_seq IS NULL")),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant()
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id"))
    kind: Mapped[str] = mapped_column(Text)
    key_id: Mapped[int] = mapped_column(BigInteger)
    public_material: Mapped[bytes | None]
    sealed_material: Mapped[bytes]
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = _created()
    retired_at: Mapped[datetime | None]
    change_seq: Mapped[int | None] = mapped_column(BigInteger)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    principal: Mapped[str] = mapped_column(Text, primary_key=True)
    scope: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    request_hash: Mapped[bytes]
    response_status: Mapped[int | None] = mapped_column(Integer)
    #: Never a ticket code: codes are blanked before the answer is kept (``http.idempotency``).
    response_body: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = _created()
    #: After this the worker deletes the row (migration 0007's ``gatehouse_prune``).
    expires_at: Mapped[datetime] = mapped_column(index=True)


class TokenRevocation(Base):
    """A revoked token (its ``jti``), refused from the next request on; kept until the token
    would have expired anyway (migration 0007)."""

    __tablename__ = "token_revocations"
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    jti: Mapped[str] = mapped_column(Text, primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime] = _created()
    revoked_by: Mapped[str] = mapped_column(Text)


class FeedEpoch(Base):
    """One row: the random half of the changes feed's incarnation, which every cursor names, so
    a database restored from a backup never answers a cursor it did not number (migration
    0021; docs/operations.md "Backup and restore")."""

    __tablename__ = "gatehouse_feed_epoch"
    __table_args__ = (CheckConstraint("one", name="one"),)
    one: Mapped[bool] = mapped_column(primary_key=True, server_default=text("true"))
    epoch: Mapped[uuid.UUID] = mapped_column(server_default=text("gen_random_uuid()"))
    drawn_at: Mapped[datetime] = _created()


class JunkScans(Base):
    """Uploaded scans of one device in one minute whose code did not read: how many were
    stored, and how many only counted beyond the limit (migration 0009)."""

    __tablename__ = "junk_scans"
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    minute: Mapped[datetime] = mapped_column(primary_key=True)
    stored: Mapped[int]
    dropped: Mapped[int]


class Outbox(Base):
    """Ticket events waiting to be published (CloudEvents JSON in ``payload``). ``seq`` is drawn
    at insert under the ticket's row lock: the order of one ticket's events (migration 0005)."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unsent", "created_at", postgresql_where=text("sent_at IS NULL")),
        Index("ix_outbox_unsent_seq", "seq", postgresql_where=text("sent_at IS NULL")),
        Index(
            "ix_outbox_unsent_ticket_id_seq",
            "ticket_id",
            "seq",
            postgresql_where=text("sent_at IS NULL"),
        ),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant()
    routing_key: Mapped[str] = mapped_column(Text)
    ticket_id: Mapped[uuid.UUID | None]
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = _created()
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    seq: Mapped[int] = mapped_column(BigInteger, Identity())


class ProcessedEvent(Base):
    """An event a consumer of ours has handled, written with the handler's effect (idempotency
    by event id)."""

    __tablename__ = "processed_events"
    consumer: Mapped[str] = mapped_column(Text, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant()
    processed_at: Mapped[datetime] = _created()


class PendingTransaction(Base):
    """A chain action of ours (mint, transfer, freeze) from queued to finalized or failed."""

    __tablename__ = "pending_transactions"
    __table_args__ = (
        Index(
            "ix_pending_transactions_open",
            "created_at",
            postgresql_where=text("status IN ('queued', 'submitted', 'confirmed')"),
        ),
        Index("ix_pending_transactions_ticket_id", "ticket_id"),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant()
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id"))
    #: ``mint``, ``transfer`` or ``freeze``.
    kind: Mapped[str] = mapped_column(Text, server_default="mint")
    mint: Mapped[str | None] = mapped_column(Text)
    #: The wallet the action gives the ticket to (mint, transfer).
    destination: Mapped[str | None] = mapped_column(Text)
    tx_signature: Mapped[str | None] = mapped_column(Text)
    #: ``queued``, ``submitted``, ``confirmed``, ``finalized`` or ``failed``.
    status: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    #: The current submission's blockhash is dead beyond this block height.
    last_valid_block_height: Mapped[int | None] = mapped_column(BigInteger)
    slot: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    submitted_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    confirmation_count: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class BlockchainSync(Base):
    __tablename__ = "blockchain_sync"
    __table_args__ = (
        Index(
            "ux_blockchain_sync_signature_ticket",
            "signature",
            "ticket_id",
            unique=True,
            postgresql_where=text("signature IS NOT NULL"),
        ),
        Index("ix_blockchain_sync_ticket_id", "ticket_id"),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant()
    ticket_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tickets.id"))
    signature: Mapped[str | None] = mapped_column(Text)
    slot: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(Text)
    from_wallet: Mapped[str | None] = mapped_column(Text)
    to_wallet: Mapped[str | None] = mapped_column(Text)
    block_time: Mapped[datetime | None]
    details: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    processed_at: Mapped[datetime] = _created()


class User(Base):
    """A manager's console account (migration 0015): the password only as an argon2id hash,
    its one-time link only as a SHA-256 hash (``sync_server.console.accounts``)."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('manager')", name="role"),
        CheckConstraint("email = lower(email)", name="email_lower"),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant()
    email: Mapped[str] = mapped_column(Text, unique=True)
    role: Mapped[str] = mapped_column(Text, server_default="manager")
    password_hash: Mapped[str | None] = mapped_column(Text)
    password_link_hash: Mapped[bytes | None] = mapped_column(unique=True)
    password_link_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()
    disabled_at: Mapped[datetime | None]


class ConsoleSession(Base):
    """A signed-in browser: the cookie's token only as a SHA-256 hash."""

    __tablename__ = "console_sessions"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[bytes] = mapped_column(unique=True)
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(index=True)


class JobLease(Base):
    """A scheduled job of the worker (migration 0018): who runs it now and until when, and how
    its last run went. Not a tenant table."""

    __tablename__ = "job_leases"
    job: Mapped[str] = mapped_column(Text, primary_key=True)
    holder: Mapped[str | None] = mapped_column(Text)
    leased_until: Mapped[datetime | None]
    #: When the last successful run started: the next is due an interval after it.
    last_run_at: Mapped[datetime | None]
    last_finished_at: Mapped[datetime | None]
    #: ``succeeded`` or ``failed``.
    last_outcome: Mapped[str | None] = mapped_column(Text)
