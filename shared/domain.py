"""The domain vocabulary both sides speak: ticket statuses, gate directions, verdicts and the
reasons behind them, with the sentence gate staff see for each reason."""

from __future__ import annotations

from enum import StrEnum


class TicketStatus(StrEnum):
    """Where a ticket is in its life. Transfers and reissues keep the status and bump the
    ticket's secret version instead, which is what makes an old code ``superseded``."""

    ACTIVE = "active"
    CHECKED_IN = "checked_in"
    REVOKED = "revoked"
    EXPIRED = "expired"


class Direction(StrEnum):
    """What a gate is doing: letting people in or letting them out."""

    ENTRY = "entry"
    EXIT = "exit"


class VerdictResult(StrEnum):
    ADMITTED = "admitted"
    REJECTED = "rejected"


class TimeAdjustment(StrEnum):
    """Why the server placed an uploaded scan at another time than the device claimed (the
    corrected time was beyond belief; see docs/sync-protocol.md, "What a device may claim")."""

    #: Later than the upload reached the server: it is placed at the upload's arrival.
    CLOCK_AHEAD = "clock_ahead"
    #: Earlier than the device was enrolled: it is placed at the enrollment.
    CLOCK_BEHIND = "clock_behind"


class VerdictReason(StrEnum):
    """Why a scan was rejected. Exactly one reason per rejected verdict."""

    INVALID_CODE = "invalid_code"  # malformed, forged, tampered
    UNKNOWN_KEY = "unknown_key"
    WRONG_EVENT = "wrong_event"
    NOT_FOUND = "not_found"
    REVOKED = "revoked"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"
    ALREADY_CHECKED_IN = "already_checked_in"
    NOT_YET_VALID = "not_yet_valid"
    NO_LONGER_VALID = "no_longer_valid"
    OWNERSHIP_MISMATCH = "ownership_mismatch"
    DEVICE_REVOKED = "device_revoked"
    #: No check-in list scanned at this gate admits the ticket's type (issue 16).
    NOT_ON_LIST = "not_on_list"
    #: The list's rule, day or time window refuses this entry, or its rule could not be
    #: evaluated (issue 16). Never given to an exit.
    RULE_FAILED = "rule_failed"

    @property
    def sentence(self) -> str:
        """The reason as gate staff read it on the verdict panel."""
        return _SENTENCES[self]


_SENTENCES: dict[VerdictReason, str] = {
    VerdictReason.INVALID_CODE: "This is not a valid ticket code. It may be forged or damaged.",
    VerdictReason.UNKNOWN_KEY: (
        "This scanner cannot read this code yet. Sync the scanner, or send the guest to the "
        "box office."
    ),
    VerdictReason.WRONG_EVENT: "This ticket is for a different event.",
    VerdictReason.NOT_FOUND: "This ticket is not on the guest list.",
    VerdictReason.REVOKED: "This ticket has been cancelled.",
    VerdictReason.EXPIRED: "This ticket has expired.",
    VerdictReason.SUPERSEDED: (
        "This code has been replaced by a newer one (the ticket was transferred or reissued)."
    ),
    VerdictReason.ALREADY_CHECKED_IN: "This ticket has already been checked in.",
    VerdictReason.NOT_YET_VALID: "This ticket is not valid yet.",
    VerdictReason.NO_LONGER_VALID: "This ticket is no longer valid.",
    VerdictReason.OWNERSHIP_MISMATCH: (
        "This ticket now belongs to someone else. Send the guest to the box office."
    ),
    VerdictReason.DEVICE_REVOKED: (
        "This scanner has been switched off by a manager. Ask a manager to enroll it again."
    ),
    VerdictReason.NOT_ON_LIST: "This ticket does not enter at this gate.",
    VerdictReason.RULE_FAILED: "This ticket may not enter here now.",
}
