"""Wire schemas of the sync protocol (msgspec), shared by scanner and server.

These are the shapes as far as they are known from the spec; the server's check-in and sync
issues fill in the endpoints that speak them. Decoding ignores unknown fields so that an older
scanner keeps working against a newer server. Ids are UUIDs, times are timezone-aware UTC,
binary key material is base64 in JSON and raw in msgpack.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any

import msgspec

from shared.checkin_rules import RuleError, check_rule
from shared.domain import Direction, TicketStatus, TimeAdjustment, VerdictReason, VerdictResult

MAX_SCAN_BATCH = 1000

#: Text that names something (an event, a gate, a device, a person): one line, no control
#: characters (C0, DEL, C1). A NUL cannot be stored at all; a line break, a tab or an escape
#: sequence has no place in a name and would corrupt a CSV export or a terminal. Combine it with
#: a length: ``Annotated[str, msgspec.Meta(max_length=...), ONE_LINE]``. (The look-ahead keeps
#: ``$`` from matching before a final line break.)
ONE_LINE = msgspec.Meta(pattern=r"^[^\x00-\x1f\x7f-\x9f]*(?!\n)$")
#: Free text a person writes (a reason): line breaks and tabs allowed, no other control
#: characters.
PROSE = msgspec.Meta(pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$")

#: The years a time in a request may fall in (from the first, before the last). Far inside
#: what Python and Postgres hold: a time like 0001-01-01T00:00:00+05:00 cannot even be
#: converted to UTC. Checked on the time as written (its offset is under a day), so the check
#: itself cannot overflow.
TIME_YEARS = (2000, 2200)
TIME_OUT_OF_RANGE = "A time between the years 2000 and 2199 is needed."


def out_of_range(**times: datetime | None) -> str | None:
    """The name of the first of ``times`` outside ``TIME_YEARS``, or None."""
    first, last = TIME_YEARS
    for name, when in times.items():
        if when is not None and not first <= when.year < last:
            return name
    return None


def check_times(**times: datetime | None) -> None:
    """Raise ``msgspec.ValidationError`` naming the first of ``times`` outside ``TIME_YEARS``
    (for a schema's ``__post_init__``: decoding reports it as a validation error)."""
    name = out_of_range(**times)
    if name is not None:
        raise msgspec.ValidationError(f"{TIME_OUT_OF_RANGE} - at `$.{name}`")


GATE_NAME_MAX = 64
GateName = Annotated[str, msgspec.Meta(min_length=1, max_length=GATE_NAME_MAX), ONE_LINE]
CodeText = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
KeyId = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
SecretVersion = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
#: A device clock may be off by at most this much (about 24.8 days): what the server can store.
#: A device further off must have its clock set before its scans can be uploaded.
MAX_CLOCK_OFFSET_MS = 2**31 - 1
ClockOffsetMs = Annotated[int, msgspec.Meta(ge=-MAX_CLOCK_OFFSET_MS, le=MAX_CLOCK_OFFSET_MS)]
#: An instant: a time without its UTC offset says nothing about when it was.
Instant = Annotated[datetime, msgspec.Meta(tz=True)]
#: What a device's clock may read at a scan, from (inclusive) and until (exclusive). A clock
#: that lost its setting reads 1970 or 2000 (the server places such scans, see ScanUpload);
#: outside these, the reading is not a clock's at all.
DEVICE_TIME_FROM = datetime(1970, 1, 1, tzinfo=UTC)
DEVICE_TIME_UNTIL = datetime(2100, 1, 1, tzinfo=UTC)


# --- keys -----------------------------------------------------------------------------------


class KeyBytes(msgspec.Struct, frozen=True):
    key_id: KeyId
    key: bytes


class ScannerKeys(msgspec.Struct, kw_only=True, frozen=True):
    """The key material an enrolled scanner holds (see ``shared.keys.ScannerKeyRing``)."""

    verify_keys: list[KeyBytes]
    encryption_keys: list[KeyBytes]


# --- the gate's event ------------------------------------------------------------------------


class GateEvent(msgspec.Struct, kw_only=True, frozen=True):
    """The event a scanner admits to, as far as its rules need it."""

    event_id: uuid.UUID
    name: str
    venue: str
    starts_at: datetime
    ends_at: datetime
    #: When gates open; None means "no earlier than anyone shows up".
    admission_opens_at: datetime | None = None
    allow_reentry: bool = False


# --- enrollment (POST /v1/devices/enroll, GET /v1/devices/me) ---------------------------------

DeviceName = Annotated[str, msgspec.Meta(min_length=1, max_length=100), ONE_LINE]
#: What a person may type for a code: generous, the server normalises it. Codes (this and
#: ``CodeText``) take any characters: a handheld scanner may end one with a line break, and a
#: code is only ever parsed or hashed, never stored as text, so junk in it is a rejected code.
CodeInput = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


#: A device's Ed25519 public key for talking to its peers (issue 18; ``shared.peers``).
PeerPublicKey = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]


class Succession(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A gate enrolled again on the same computer (after a restore from a backup, or new
    server secrets): the device it was, and proof — that device's peer key's signature of
    ``shared.peers.succession_message`` — that it holds that device's key."""

    device_id: uuid.UUID
    signature: Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]


class EnrollRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    code: CodeInput
    device_name: DeviceName
    #: The public half of the key pair the device made for its peers: the server certifies
    #: it (``EnrolledDevice.peer``). None from a scanner older than peer sync.
    peer_public_key: PeerPublicKey | None = None
    #: The device this computer was before (``EnrolledDevice.succeeds``); None for a first
    #: enrollment or from an older scanner.
    succeeds: Succession | None = None


class PeerCredentials(msgspec.Struct, kw_only=True, frozen=True):
    """What a device needs to talk to the other gates of its event (docs/peer-sync.md): its
    certificate (``shared.peers.Issuer.certify``), the event's issuer public key that
    certificates are checked against, and the event peer key that records are sealed with."""

    certificate: bytes
    issuer_public_key: bytes
    event_key: bytes
    #: When the certificate stops being accepted by peers.
    expires_at: datetime


class EnrolledDevice(msgspec.Struct, kw_only=True):
    """What a freshly enrolled scanner needs: who it is, its token, and the keys to read codes."""

    device_id: uuid.UUID
    #: The access token: a bearer token for every device route, short-lived (an hour).
    device_token: str
    tenant_id: uuid.UUID
    event_id: uuid.UUID
    gate: str
    keys: ScannerKeys
    server_time: datetime
    #: The event the device admits to (rules need its window and re-entry setting).
    event: GateEvent
    #: What renews the access token (``POST /v1/devices/token``), once: each renewal answers a
    #: new one. None from a server older than renewals (its token lived 30 days).
    refresh_token: str | None = None
    #: When ``device_token`` expires (by the server's clock); None from an older server.
    device_token_expires_at: datetime | None = None
    #: The device's peer certificate and the event's peer keys; None when the device sent no
    #: peer key (or from a server older than peer sync).
    peer: PeerCredentials | None = None
    #: The device this one takes over from (``EnrollRequest.succeeds``, accepted: same tenant
    #: and event, not revoked, signature good): its scans count as this device's own, and it
    #: is revoked. None when nothing was taken over.
    succeeds: uuid.UUID | None = None


#: A refresh token as sent (``ghr1.…``, about 150 characters; the server reads it).
RefreshTokenText = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class TokenRenewal(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/devices/token``: the device's current refresh token."""

    refresh_token: RefreshTokenText


class DeviceTokens(msgspec.Struct, kw_only=True):
    """A renewal's answer: a new access token and the refresh token for the next renewal (the
    one sent is spent)."""

    device_token: str
    refresh_token: str
    device_token_expires_at: datetime
    server_time: datetime


class DeviceSelf(msgspec.Struct, kw_only=True):
    """The calling device as the server knows it, with the event's current keys."""

    device_id: uuid.UUID
    name: str
    event_id: uuid.UUID
    gate: str
    revoked: bool
    keys: ScannerKeys
    server_time: datetime
    #: The event the device admits to (rules need its window and re-entry setting).
    event: GateEvent
    #: A fresh peer certificate and the event's peer keys (as at enrollment); None for a
    #: device that has no peer key on the server.
    peer: PeerCredentials | None = None
    #: The event's revoked devices, whose peer messages gates ignore; None from a server
    #: older than peer sync.
    revoked_peers: list[uuid.UUID] | None = None


# --- the heartbeat (POST /v1/devices/me/heartbeat) -------------------------------------------

#: A count a device reports about its own queue: at most what the server's int column holds.
QueueCount = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
#: The scanner's sync interval as it reports it: a second to an hour.
SyncIntervalSeconds = Annotated[int, msgspec.Meta(ge=1, le=3600)]
APP_VERSION_MAX = 64
AppVersion = Annotated[str, msgspec.Meta(min_length=1, max_length=APP_VERSION_MAX), ONE_LINE]
SetupVersion = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class DeviceHeartbeat(msgspec.Struct, kw_only=True, frozen=True):
    """What a scanner says about itself once a sync cycle, after its upload: the server keeps
    the latest per device and shows it to managers (``GET /v1/devices``).

    Every field but the queue counts is optional, so fields can be added without a new protocol
    version: unknown fields are *ignored*, not refused (no ``forbid_unknown_fields``), so a newer
    scanner sending a field this server does not know (issue 18's peers) is still heard, and an
    older scanner that sends fewer fields leaves the others empty. Times are server time as the
    device reckons it (its clock plus ``clock_offset_ms``)."""

    #: Scans decided on the device and not yet taken by the server.
    queued_scans: QueueCount
    #: Undone admissions not yet sent.
    queued_annulments: QueueCount = 0
    #: When the oldest queued scan was made; None with an empty queue.
    oldest_queued_at: Instant | None = None
    #: Server time minus device time, in ms, as the device last measured it.
    clock_offset_ms: ClockOffsetMs = 0
    #: The scanner's version (its package's).
    app_version: AppVersion | None = None
    #: The version of the event's check-in setup the device holds (None: none yet).
    setup_version: SetupVersion | None = None
    #: The device's last sync that went through (None: never).
    last_sync_at: Instant | None = None
    #: How often the device syncs while all is well; the server's "online" allows three.
    sync_interval_seconds: SyncIntervalSeconds | None = None
    #: True when the device runs in lab mode (plain http allowed): never at a real gate.
    lab_mode: bool = False
    #: How many other gates of its event the device heard from in the last minute (peer
    #: sync, issue 18); None when peer sync is off.
    peers_heard: QueueCount | None = None

    def __post_init__(self) -> None:
        for name, when in (
            ("oldest_queued_at", self.oldest_queued_at),
            ("last_sync_at", self.last_sync_at),
        ):
            if when is not None and not DEVICE_TIME_FROM <= when < DEVICE_TIME_UNTIL:
                raise msgspec.ValidationError(
                    f"{name} must be from {DEVICE_TIME_FROM:%Y-%m-%d} until "
                    f"{DEVICE_TIME_UNTIL:%Y-%m-%d} (UTC) - at `$.{name}`"
                )


# --- verdicts -------------------------------------------------------------------------------


class PriorScan(msgspec.Struct, kw_only=True, frozen=True):
    """The earlier admission a duplicate scan collides with: when, which gate, which device."""

    scan_id: uuid.UUID
    scanned_at: datetime
    gate: str
    device_id: uuid.UUID | None = None


class ValidateRequest(msgspec.Struct, kw_only=True, frozen=True):
    """An online check-in (POST /v1/validate). A device's gate comes from its token; a manager
    validating by hand names the gate."""

    code: CodeText
    direction: Direction = Direction.ENTRY
    gate: GateName | None = None
    #: The device's id for this scan (UUIDv7), so a retried request is recognised.
    scan_id: uuid.UUID | None = None
    #: The device's clock at the scan; informational online (the server's time decides).
    scanned_at: datetime | None = None


class Verdict(msgspec.Struct, kw_only=True, frozen=True):
    """The answer to one scan. ``reason`` is set exactly when the scan was rejected."""

    result: VerdictResult
    reason: VerdictReason | None = None
    scan_id: uuid.UUID | None = None
    direction: Direction | None = None
    gate: str | None = None
    scanned_at: datetime | None = None
    ticket_id: uuid.UUID | None = None
    event_id: uuid.UUID | None = None
    ticket_type: str | None = None
    holder_name: str | None = None
    prior: PriorScan | None = None
    #: True when the on-chain owner was checked and matched; None when it was not checked.
    chain_verified: bool | None = None
    #: The sentence staff read when a check-in list refused the scan, where it says more than
    #: the reason's own sentence (e.g. "VIP tickets enter at the VIP gate."); None otherwise.
    #: Issue 16; older clients ignore it.
    message: str | None = None

    def __post_init__(self) -> None:
        if (self.result is VerdictResult.REJECTED) != (self.reason is not None):
            raise msgspec.ValidationError(
                "a rejected verdict has exactly one reason; admitted none"
            )


# --- offline scans upload (POST /v1/sync/scans) ----------------------------------------------


class ScanUpload(msgspec.Struct, kw_only=True, frozen=True):
    """One scan as the device recorded it, uploaded at least once; the server dedupes by id.
    What a device may claim is bounded (docs/sync-protocol.md, "What a device may claim")."""

    scan_id: uuid.UUID
    code: CodeText
    #: Ignored by the server, which records the gate the device was enrolled for; kept on the
    #: wire so that older scanners' uploads still decode.
    gate: GateName
    direction: Direction
    #: The device's wall clock when the scan happened.
    scanned_at: Instant
    #: Server time minus device time, in ms, as the device last measured it.
    clock_offset_ms: ClockOffsetMs = 0
    #: What the device showed the gate staff.
    device_result: VerdictResult
    device_reason: VerdictReason | None = None
    #: True when the device decided without asking the server (the server records every
    #: upload as offline: a scan it decided online, it has already).
    offline: bool = True

    def __post_init__(self) -> None:
        if not DEVICE_TIME_FROM <= self.scanned_at < DEVICE_TIME_UNTIL:
            raise ValueError(  # msgspec says where: ``- at `$.scans[0]` ``
                f"scanned_at must be from {DEVICE_TIME_FROM:%Y-%m-%d} until "
                f"{DEVICE_TIME_UNTIL:%Y-%m-%d} (UTC)"
            )


class ScanBatch(msgspec.Struct, kw_only=True, frozen=True):
    scans: Annotated[list[ScanUpload], msgspec.Meta(max_length=MAX_SCAN_BATCH)]


class ScanOutcome(msgspec.Struct, kw_only=True, frozen=True):
    """The server's final word on one uploaded scan. ``conflict_of`` names the admission that
    won when this scan was a second admission of the same ticket (a double entry)."""

    scan_id: uuid.UUID
    result: VerdictResult
    reason: VerdictReason | None = None
    conflict_of: uuid.UUID | None = None
    #: True when this scan id had been uploaded before (the stored outcome is returned).
    duplicate_upload: bool = False
    #: Why the server would have refused this offline admission (the device's data was stale);
    #: the scan still counts as what happened at the gate.
    server_reason: VerdictReason | None = None
    #: False when the server counted this scan but did not store it: its code did not read
    #: (``invalid_code``, ``unknown_key``) and the device had sent more such scans this minute
    #: than the server stores. The scan is received all the same: do not send it again.
    stored: bool = True
    #: Set when the device's corrected time was beyond belief and the server placed the scan
    #: at the nearest believable time instead (the claim itself is kept).
    time_adjusted: TimeAdjustment | None = None


class ScanBatchOutcome(msgspec.Struct, kw_only=True, frozen=True):
    outcomes: list[ScanOutcome]
    #: Earlier scans (of any device) whose outcome this batch changed, e.g. an admission that is
    #: now a conflict because this batch holds an earlier admission of the same ticket.
    reclassified: list[ScanOutcome] = msgspec.field(default_factory=list)
    server_time: datetime


# --- changes feed (GET /v1/sync/changes) ------------------------------------------------------


class TicketChange(msgspec.Struct, kw_only=True, frozen=True, tag="ticket"):
    """A ticket as the scanner should now know it: covers sales, transfers (a new secret
    version), revocations (status) and expiry.

    ``sealed_holder`` is the holder's display name sealed under the ticket's name secret
    (``shared.holder_name``): only the ticket's own GH2 code opens it, so the feed carries no
    name in clear. None while the ticket has no name secret yet (no code made since it was
    sold or transferred before names were sealed)."""

    ticket_id: uuid.UUID
    event_id: uuid.UUID
    status: TicketStatus
    secret_version: SecretVersion
    ticket_type: str
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    sealed_holder: bytes | None = None
    #: The ticket type's id (``CheckinSetup.ticket_types``), which check-in lists name.
    ticket_type_id: str | None = None


#: Why an admission is undone (``AnnulRequest.reason``): the ticket's history and the
#: ``ticket.checkin_annulled`` event carry it.
ANNUL_REASON_MAX = 500
AnnulReason = Annotated[str, msgspec.Meta(min_length=1, max_length=ANNUL_REASON_MAX), PROSE]


class AnnulRequest(msgspec.Struct, kw_only=True, frozen=True):
    """The body of ``POST /v1/scans/{id}/annul``, all optional: a request without a body (an
    older scanner's, a manager's) undoes the admission with no reason given, and a server older
    than this body ignores it."""

    reason: AnnulReason | None = None


class AdmissionChange(msgspec.Struct, kw_only=True, frozen=True, tag="admission"):
    """An admitted scan (entry or exit) at another gate, so that gates learn about each other;
    also one of this device's own scans when the server's view of it changed (a conflict, an
    annulment)."""

    scan_id: uuid.UUID
    ticket_id: uuid.UUID
    gate: str
    direction: Direction
    scanned_at: datetime
    device_id: uuid.UUID | None = None
    #: Set when this admission was a second entry: the admission it collided with.
    conflict_of: uuid.UUID | None = None
    #: True when staff undid this admission.
    annulled: bool = False
    #: The check-in list it counted on and that list's zone (None: the general area, or a scan
    #: from before lists), so that gates know who is inside which zone.
    checkin_list_id: uuid.UUID | None = None
    zone: str | None = None
    #: True when a manager resolved this double entry (issue 19): accepted — both admissions
    #: stand and it counts — or annulled (``annulled`` is then true too). ``conflict_of`` is
    #: then None, so a scanner that predates this field stops showing the conflict as well.
    conflict_resolved: bool = False


class KeysChange(msgspec.Struct, kw_only=True, frozen=True, tag="keys"):
    """Key material for reading codes (new keys after a rotation)."""

    keys: ScannerKeys


Change = TicketChange | AdmissionChange | KeysChange


class ChangesPage(msgspec.Struct, kw_only=True, frozen=True):
    """One page of the feed. Resume with ``next_cursor``; ``has_more`` says whether to ask again
    at once. The cursor is an opaque token over the server's change sequence."""

    changes: list[Change]
    next_cursor: str
    has_more: bool
    server_time: datetime
    #: The event's access setup (issue 16), present when its version differs from the
    #: ``setup_version`` the device sent (always, to a device that sent none). A field and not
    #: a change, so scanners that predate it ignore it.
    checkin_setup: CheckinSetup | None = None
    #: The setup's current version, on every page.
    checkin_setup_version: int = 0


# --- check-in lists (issue 16; POST /v1/events/{event_id}/checkin-lists, the changes feed) ----

CHECKIN_LIST_NAME_MAX = 100
ListName = Annotated[str, msgspec.Meta(min_length=1, max_length=CHECKIN_LIST_NAME_MAX), ONE_LINE]
#: A ticket type's id as the event names it (the ``ticket_type`` of a ticket).
TicketTypeId = Annotated[str, msgspec.Meta(min_length=1, max_length=64), ONE_LINE]
ZoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=64), ONE_LINE]
Explanation = Annotated[str, msgspec.Meta(min_length=1, max_length=200), ONE_LINE]
MAX_LIST_TICKET_TYPES = 500
MAX_LIST_GATES = 100
MAX_LIST_WINDOWS = 50
#: A JSON Logic rule (docs/checkin-lists.md): any JSON value, bounded by ``check_rule``.
RuleJson = Annotated[
    Any,
    msgspec.Meta(
        description="A JSON Logic rule with pretix's check-in variables (docs/checkin-lists.md)."
    ),
]


class CheckinWindow(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """When a list admits: from ``opens_at`` until ``closes_at`` (either may be open)."""

    opens_at: Instant | None = None
    closes_at: Instant | None = None

    def __post_init__(self) -> None:
        check_times(opens_at=self.opens_at, closes_at=self.closes_at)
        if (
            self.opens_at is not None
            and self.closes_at is not None
            and self.closes_at <= self.opens_at
        ):
            raise msgspec.ValidationError("closes_at must be after opens_at - at `$.closes_at`")


def _check_rules(rules: object) -> None:
    try:
        check_rule(rules)
    except RuleError as error:
        raise msgspec.ValidationError(f"{error} - at `$.rules`") from None


class CheckinListCreate(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A new check-in list. Empty ``ticket_type_ids`` admits every ticket type, empty ``gates``
    is scanned at every gate; ``allow_reentry`` None follows the event; ``rules`` is a JSON Logic
    rule (docs/checkin-lists.md), bounded in size and depth."""

    name: ListName
    ticket_type_ids: Annotated[
        list[TicketTypeId], msgspec.Meta(max_length=MAX_LIST_TICKET_TYPES)
    ] = msgspec.field(default_factory=list)
    gates: Annotated[list[GateName], msgspec.Meta(max_length=MAX_LIST_GATES)] = msgspec.field(
        default_factory=list
    )
    zone: ZoneName | None = None
    allow_reentry: bool | None = None
    #: pretix's "allow multiple entries": no double-entry check, the rule alone decides.
    allow_multiple_entries: bool = False
    windows: Annotated[list[CheckinWindow], msgspec.Meta(max_length=MAX_LIST_WINDOWS)] = (
        msgspec.field(default_factory=list)
    )
    rules: RuleJson = None
    #: What staff read when the rule refuses an entry.
    explanation: Explanation | None = None

    def __post_init__(self) -> None:
        _check_rules(self.rules)


class CheckinListOut(msgspec.Struct, kw_only=True, frozen=True):
    """A check-in list as the API answers it and the changes feed carries it."""

    id: uuid.UUID
    event_id: uuid.UUID
    name: str
    ticket_type_ids: list[str]
    gates: list[str]
    zone: str | None = None
    allow_reentry: bool | None = None
    allow_multiple_entries: bool = False
    windows: list[CheckinWindow] = msgspec.field(default_factory=list)
    rules: RuleJson = None
    explanation: str | None = None
    archived: bool = False


class EventDayIn(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One day (or session) of a multi-day event: a date in the event's time zone, with the
    session's times when it has them (a session may run past midnight)."""

    date: date
    name: Annotated[str, msgspec.Meta(max_length=64), ONE_LINE] = ""
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    admission_at: Instant | None = None

    def __post_init__(self) -> None:
        check_times(starts_at=self.starts_at, ends_at=self.ends_at, admission_at=self.admission_at)
        if (self.starts_at is None) != (self.ends_at is None):
            raise msgspec.ValidationError("a session has both starts_at and ends_at - at `$`")
        if (
            self.starts_at is not None
            and self.ends_at is not None
            and self.ends_at <= self.starts_at
        ):
            raise msgspec.ValidationError("ends_at must be after starts_at - at `$.ends_at`")


class TicketTypeDays(msgspec.Struct, kw_only=True, frozen=True):
    """A ticket type as check-in lists see it: its id, its name, and the event days (dates in
    the event's time zone) it admits — empty for every day."""

    id: TicketTypeId
    name: str
    days: list[date] = msgspec.field(default_factory=list)


class CheckinSetup(msgspec.Struct, kw_only=True, frozen=True):
    """An event's whole access setup, as the changes feed carries it to scanners: its time zone,
    days, ticket types' days and check-in lists (archived ones included, so that the scan log
    can still name them). ``version`` grows with every change to any of it; a scanner replaces
    what it had with a newer setup as a whole. An event without lists has ``lists`` empty and
    is decided as before lists."""

    event_id: uuid.UUID
    version: int
    time_zone: str
    days: list[EventDayIn] = msgspec.field(default_factory=list)
    ticket_types: list[TicketTypeDays] = msgspec.field(default_factory=list)
    lists: list[CheckinListOut] = msgspec.field(default_factory=list)
