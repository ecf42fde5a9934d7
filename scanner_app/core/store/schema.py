"""The scanner's local schema, versioned in code.

The schema is what ``MIGRATIONS`` builds, one step per version, recorded in SQLite's
``PRAGMA user_version``: a new release appends a step and never edits an old one. The ``Table``
objects below describe the newest version for queries; a test migrates an empty file and checks
that the two agree.

Times are integers: microseconds since the Unix epoch, UTC. Ids are 16-byte blobs. Tickets are
keyed by ``lookup`` — a keyed hash of the ticket id, not the id itself (see ``sealing``), so the
cache does not list which tickets exist; holder names are stored as the server sealed them.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)

metadata = MetaData()

#: The one enrolled identity of this scanner (a single row, id = 1). Its token is not here but in
#: the device token vault (``device_token``); version 1 kept it in a ``token`` column.
device = Table(
    "device",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("device_id", LargeBinary, nullable=False),
    Column("name", Text, nullable=False),
    Column("server_url", Text, nullable=False),
    Column("tenant_id", LargeBinary, nullable=False),
    Column("event_id", LargeBinary, nullable=False),
    Column("gate", Text, nullable=False),
    Column("enrolled_at", Integer, nullable=False),
)

#: The event this scanner admits to.
event = Table(
    "event",
    metadata,
    Column("event_id", LargeBinary, primary_key=True),
    Column("name", Text, nullable=False),
    Column("venue", Text, nullable=False),
    Column("starts_at", Integer, nullable=False),
    Column("ends_at", Integer, nullable=False),
    Column("admission_opens_at", Integer),
    Column("allow_reentry", Boolean, nullable=False),
)

#: Key material for reading codes: ``kind`` is ``verify`` (Ed25519 public) or ``encryption``.
keys = Table(
    "keys",
    metadata,
    Column("kind", Text, primary_key=True),
    Column("key_id", Integer, primary_key=True),
    Column("key", LargeBinary, nullable=False),
    Column("added_at", Integer, nullable=False),
)

#: The ticket cache, from the changes feed.
tickets = Table(
    "tickets",
    metadata,
    Column("lookup", LargeBinary, primary_key=True),
    Column("status", Text, nullable=False),
    Column("secret_version", Integer, nullable=False),
    Column("ticket_type", Text, nullable=False),
    Column("valid_from", Integer),
    Column("valid_until", Integer),
    #: The holder's display name as the feed brought it: sealed by the server under the
    #: ticket's name secret, which only the ticket's (GH2) code carries.
    Column("sealed_holder", LargeBinary),
    #: The ticket type's id, which check-in lists name (version 4; None until the feed says).
    Column("ticket_type_id", Text),
    sqlite_with_rowid=False,
)

#: Every scan this device made, and the admissions of other gates learnt from the feed.
scans = Table(
    "scans",
    metadata,
    Column("scan_id", LargeBinary, primary_key=True),
    #: ``local`` (made here) or ``peer`` (another gate's admission, from the feed).
    Column("origin", Text, nullable=False),
    Column("ticket_lookup", LargeBinary),
    #: Only for scans made here: the ticket id read from the code.
    Column("ticket_id", LargeBinary),
    Column("device_id", LargeBinary),
    Column("gate", Text, nullable=False),
    Column("direction", Text, nullable=False),
    #: The time the scan is ordered by: device clock corrected by the measured offset.
    Column("at", Integer, nullable=False),
    #: The device's own clock reading (local scans).
    Column("device_time", Integer),
    Column("clock_offset_ms", Integer, nullable=False),
    Column("result", Text, nullable=False),
    Column("reason", Text),
    #: How the verdict was reached: ``offline``, ``online`` or ``peer``.
    Column("mode", Text, nullable=False),
    #: Admitted on the code's signature alone (ticket not in the cache yet).
    Column("on_signature", Boolean, nullable=False),
    #: The scanned text, kept for upload (local scans only).
    Column("code", Text),
    Column("ticket_type", Text),
    #: Set when the server found this admission to be a second entry: the one it collided with.
    Column("conflict_of", LargeBinary),
    Column("annulled", Boolean, nullable=False),
    #: The server's word on a local scan once uploaded (``None`` until then).
    Column("server_result", Text),
    Column("server_reason", Text),
    Column("recorded_at", Integer, nullable=False),
    #: The name secret of the scanned code (local scans of GH2 codes): opens the holder's name
    #: for the scan log. It says no more than ``code`` does to whoever has the event's keys.
    Column("name_secret", LargeBinary),
    #: The check-in list the scan counted on and that list's zone (version 4): None before
    #: lists, for an event without them, and for the general area's zone.
    Column("checkin_list_id", LargeBinary),
    Column("zone", Text),
)

#: The event's access setup (issue 16) as the changes feed last brought it: check-in lists,
#: days, ticket types' days and time zone (``wire.CheckinSetup``, JSON as received). One row.
checkin_setup = Table(
    "checkin_setup",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("event_id", LargeBinary, nullable=False),
    Column("version", Integer, nullable=False),
    #: When this device stored it (device clock).
    Column("received_at", Integer, nullable=False),
    Column("setup", Text, nullable=False),
)

#: Scans and annulments waiting to reach the server, in the order they happened.
upload_queue = Table(
    "upload_queue",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("scan_id", LargeBinary, nullable=False),
    #: ``scan`` (upload the scan) or ``annul`` (undo an admission on the server).
    Column("kind", Text, nullable=False),
    Column("enqueued_at", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    #: For an annulment, why (``AnnulRequest.reason``); None: staff's undo, no reason sent.
    Column("reason", Text),
    sqlite_autoincrement=True,
)

#: Online verdicts asked for and not yet answered: written before the request, removed with the
#: answer. A row left behind by a crash is resolved by the next sync (did the server get it?).
pending_online = Table(
    "pending_online",
    metadata,
    Column("scan_id", LargeBinary, primary_key=True),
    Column("code", Text, nullable=False),
    Column("direction", Text, nullable=False),
    Column("device_time", Integer, nullable=False),
)

#: This device's peer-sync credentials (issue 18, docs/peer-sync.md): one row, id = 1. The
#: device key's seed and the event peer key are sealed (``Sealer.seal``); the certificate and
#: the issuer's public key are public.
peer_credentials = Table(
    "peer_credentials",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("certificate", LargeBinary, nullable=False),
    Column("issuer_public_key", LargeBinary, nullable=False),
    Column("sealed_seed", LargeBinary, nullable=False),
    Column("sealed_event_key", LargeBinary, nullable=False),
    Column("expires_at", Integer, nullable=False),
)

#: Devices of this event the server reported revoked: their envelopes are refused.
peer_revoked = Table(
    "peer_revoked",
    metadata,
    Column("device_id", LargeBinary, primary_key=True),
    sqlite_with_rowid=False,
)

#: Every record this device made or heard of from its peers, as its sealed envelope, numbered
#: per origin device: what anti-entropy serves to a peer that lacks it.
peer_records = Table(
    "peer_records",
    metadata,
    Column("origin", LargeBinary, primary_key=True),
    Column("seq", Integer, primary_key=True),
    #: ``admission``, ``exit`` or ``undo`` (``shared.peers.RecordKind``).
    Column("kind", Text, nullable=False),
    Column("scan_id", LargeBinary, nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    #: When this device stored it (device clock).
    Column("received_at", Integer, nullable=False),
    sqlite_with_rowid=False,
)

#: Sync bookkeeping and settings: small named values (JSON text).
state = Table(
    "state",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
)


def _v1(conn: Connection) -> None:
    # A non-INTEGER primary key of a rowid table takes NULL unless it says NOT NULL (an old
    # SQLite quirk kept for compatibility), hence the explicit NOT NULLs.
    for statement in (
        """CREATE TABLE device (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            device_id BLOB NOT NULL,
            name TEXT NOT NULL,
            server_url TEXT NOT NULL,
            tenant_id BLOB NOT NULL,
            event_id BLOB NOT NULL,
            gate TEXT NOT NULL,
            token TEXT NOT NULL,
            enrolled_at INTEGER NOT NULL
        )""",
        """CREATE TABLE event (
            event_id BLOB PRIMARY KEY NOT NULL,
            name TEXT NOT NULL,
            venue TEXT NOT NULL,
            starts_at INTEGER NOT NULL,
            ends_at INTEGER NOT NULL,
            admission_opens_at INTEGER,
            allow_reentry BOOLEAN NOT NULL
        )""",
        """CREATE TABLE keys (
            kind TEXT NOT NULL CHECK (kind IN ('verify', 'encryption')),
            key_id INTEGER NOT NULL,
            key BLOB NOT NULL,
            added_at INTEGER NOT NULL,
            PRIMARY KEY (kind, key_id)
        )""",
        """CREATE TABLE tickets (
            lookup BLOB PRIMARY KEY,
            status TEXT NOT NULL,
            secret_version INTEGER NOT NULL,
            ticket_type TEXT NOT NULL,
            valid_from INTEGER,
            valid_until INTEGER,
            sealed_holder BLOB
        ) WITHOUT ROWID""",
        """CREATE TABLE scans (
            scan_id BLOB PRIMARY KEY NOT NULL,
            origin TEXT NOT NULL CHECK (origin IN ('local', 'peer')),
            ticket_lookup BLOB,
            ticket_id BLOB,
            device_id BLOB,
            gate TEXT NOT NULL,
            direction TEXT NOT NULL,
            at INTEGER NOT NULL,
            device_time INTEGER,
            clock_offset_ms INTEGER NOT NULL,
            result TEXT NOT NULL,
            reason TEXT,
            mode TEXT NOT NULL,
            on_signature BOOLEAN NOT NULL,
            code TEXT,
            ticket_type TEXT,
            conflict_of BLOB,
            annulled BOOLEAN NOT NULL,
            server_result TEXT,
            server_reason TEXT,
            recorded_at INTEGER NOT NULL
        )""",
        # The validator's question: this ticket's admissions. Partial: rejections never count.
        """CREATE INDEX ix_scans_ticket_admitted ON scans (ticket_lookup, at)
            WHERE result = 'admitted'""",
        # The scan log reads newest first.
        "CREATE INDEX ix_scans_at ON scans (at)",
        # Conflicts are few among many scans; the status bar counts them after every sync.
        "CREATE INDEX ix_scans_conflicts ON scans (at) WHERE conflict_of IS NOT NULL",
        """CREATE TABLE upload_queue (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            scan_id BLOB NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('scan', 'annul')),
            enqueued_at INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            last_error TEXT,
            UNIQUE (scan_id, kind)
        )""",
        """CREATE TABLE pending_online (
            scan_id BLOB NOT NULL PRIMARY KEY,
            code TEXT NOT NULL,
            direction TEXT NOT NULL,
            device_time INTEGER NOT NULL
        )""",
        """CREATE TABLE state (
            name TEXT PRIMARY KEY NOT NULL,
            value TEXT NOT NULL
        )""",
    ):
        conn.exec_driver_sql(statement)


#: Step ``n`` (1-based) turns a version ``n - 1`` file into version ``n``.
def _v2(conn: Connection) -> None:
    # The device token leaves the file (issue 14): ``LocalStore`` has moved it to the token
    # vault before this step runs, and rewrites the file afterwards so no copy stays behind.
    conn.exec_driver_sql("ALTER TABLE device DROP COLUMN token")


def _v3(conn: Connection) -> None:
    # Names sealed here under a key derived from the ticket id and this file's salt leave
    # (issue 14 item 8: the ids were public on-chain, the salt is in the file). They cannot be
    # sealed again without the tickets' codes, so they are dropped and the feed cursor is reset:
    # the next sync brings every ticket again, its name sealed by the server under the
    # ticket's name secret. ``LocalStore`` rewrites the file afterwards (no old pages remain).
    conn.exec_driver_sql("UPDATE tickets SET sealed_holder = NULL")
    conn.exec_driver_sql("ALTER TABLE scans ADD COLUMN name_secret BLOB")
    conn.exec_driver_sql(
        "UPDATE state SET value = json_set(value, '$.cursor', NULL) WHERE name = 'sync'"
    )


def _v4(conn: Connection) -> None:
    # Check-in lists, days and zones (issue 16): the event's setup, each ticket's type id, and
    # each scan's list and zone. Nothing is dropped; a v3 file's tickets have no type id until
    # the feed brings them again, so the feed cursor is reset (the next sync is a full one).
    for statement in (
        "ALTER TABLE tickets ADD COLUMN ticket_type_id TEXT",
        "ALTER TABLE scans ADD COLUMN checkin_list_id BLOB",
        "ALTER TABLE scans ADD COLUMN zone TEXT",
        """CREATE TABLE checkin_setup (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            event_id BLOB NOT NULL,
            version INTEGER NOT NULL,
            received_at INTEGER NOT NULL,
            setup TEXT NOT NULL
        )""",
        "UPDATE state SET value = json_set(value, '$.cursor', NULL) WHERE name = 'sync'",
    ):
        conn.exec_driver_sql(statement)


def _v5(conn: Connection) -> None:
    # An annulment may say why (the server keeps it in the ticket's history): the scanner's
    # own undo of an admission whose verdict it never showed (``scans.NEVER_SHOWN``).
    conn.exec_driver_sql("ALTER TABLE upload_queue ADD COLUMN reason TEXT")


def _v6(conn: Connection) -> None:
    # Peer sync (issue 18): the device's peer credentials, the revoked devices, and the records
    # gates tell each other. Scans gossip brings are ``scans`` rows of origin 'peer' like the
    # feed's, so nothing there changes.
    for statement in (
        """CREATE TABLE peer_credentials (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            certificate BLOB NOT NULL,
            issuer_public_key BLOB NOT NULL,
            sealed_seed BLOB NOT NULL,
            sealed_event_key BLOB NOT NULL,
            expires_at INTEGER NOT NULL
        )""",
        """CREATE TABLE peer_revoked (
            device_id BLOB PRIMARY KEY NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE peer_records (
            origin BLOB NOT NULL,
            seq INTEGER NOT NULL CHECK (seq >= 1),
            kind TEXT NOT NULL CHECK (kind IN ('admission', 'exit', 'undo')),
            scan_id BLOB NOT NULL,
            envelope BLOB NOT NULL,
            received_at INTEGER NOT NULL,
            PRIMARY KEY (origin, seq)
        ) WITHOUT ROWID""",
        # An admission arriving after its undo (two paths) looks the undo up by scan id.
        "CREATE INDEX ix_peer_records_scan ON peer_records (scan_id)",
    ):
        conn.exec_driver_sql(statement)


#: The step whose start moves the device token out of the file (``LocalStore._migrate``).
TOKEN_LEAVES_STEP = 1
#: The step that drops names sealed on the device.
NAMES_LEAVE_STEP = 2
#: Steps after which the file is rewritten, so that no page keeps what they removed.
REWRITE_AFTER = frozenset({TOKEN_LEAVES_STEP, NAMES_LEAVE_STEP})

MIGRATIONS: tuple[Callable[[Connection], None], ...] = (_v1, _v2, _v3, _v4, _v5, _v6)
SCHEMA_VERSION = len(MIGRATIONS)
