"""Whether a scanner is online, and the sentence managers read about it (issue 17).

A device is **online** while its last contact (``devices.last_seen_at``: set by every sync's
``GET /v1/devices/me``, by a token renewal and by the heartbeat) is no older than three of the
sync intervals it reported, and never less than a minute nor more than ten: a scanner syncs
every few seconds when all is well and backs off up to a minute when the server fails it, so a
minute without contact means its syncs have stopped. A device that never sent a heartbeat (an
older scanner) gets the minute. A revoked device is never online.

Pure functions of the stored row and the server's clock: nothing here reads the database.
"""

from __future__ import annotations

from datetime import datetime, timedelta

#: How many reported sync intervals may pass without contact before a device is offline.
ONLINE_SYNC_INTERVALS = 3
#: The least and the most time without contact that still counts as online.
ONLINE_AT_LEAST = timedelta(seconds=60)
ONLINE_AT_MOST = timedelta(minutes=10)
#: A clock further off than this is worth a manager's attention (as for scan times,
#: ``sync_server.domain.checkin.claims.CLOCK_TOLERANCE``).
CLOCK_WORTH_SAYING = timedelta(minutes=5)


def online_window(sync_interval_seconds: int | None) -> timedelta:
    """How long a device stays online after its last contact."""
    if sync_interval_seconds is None:
        return ONLINE_AT_LEAST
    window = timedelta(seconds=ONLINE_SYNC_INTERVALS * sync_interval_seconds)
    return min(max(window, ONLINE_AT_LEAST), ONLINE_AT_MOST)


def is_online(
    last_seen_at: datetime | None,
    sync_interval_seconds: int | None,
    revoked: bool,
    now: datetime,
) -> bool:
    """Contact within the device's window (inclusive), and not revoked."""
    if revoked or last_seen_at is None:
        return False
    return now - last_seen_at <= online_window(sync_interval_seconds)


def _ago(span: timedelta) -> str:
    seconds = max(0, int(span.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _plural(count: int, one: str) -> str:
    return f"{count} {one}" if count == 1 else f"{count} {one}s"


def status_sentence(
    *,
    online: bool,
    revoked_reason: str | None,
    revoked: bool,
    last_seen_at: datetime | None,
    heartbeat_at: datetime | None,
    queued_scans: int | None,
    queued_annulments: int | None,
    oldest_queued_at: datetime | None,
    clock_offset_ms: int | None,
    now: datetime,
) -> str:
    """One or two sentences for the Devices page: online or not and since when, and what the
    device last said it still has to upload."""
    if revoked:
        if revoked_reason == "refresh_token_reused":
            return "Revoked: one of its refresh tokens was used twice (a copy is in other hands)."
        if revoked_reason == "re_enrolled":
            return "Replaced: this computer was enrolled again and goes on as a new device."
        return "Revoked by a manager."
    if last_seen_at is None:
        return "Not connected since it was enrolled."
    if online:
        parts = [f"Online; last contact {_ago(now - last_seen_at)} ago."]
    else:
        parts = [
            f"Offline: no contact for {_ago(now - last_seen_at)} "
            f"(since {last_seen_at:%Y-%m-%d %H:%M} UTC)."
        ]
    if heartbeat_at is None:
        parts.append("It has not reported its queue (an older scanner).")
        return " ".join(parts)
    waiting = []
    if queued_scans:
        oldest = f", the oldest from {oldest_queued_at:%H:%M} UTC" if oldest_queued_at else ""
        waiting.append(f"{_plural(queued_scans, 'scan')} not yet uploaded{oldest}")
    if queued_annulments:
        waiting.append(f"{_plural(queued_annulments, 'annulment')} not yet sent")
    as_of = "" if online else f" when it last reported, {_ago(now - heartbeat_at)} ago"
    if waiting:
        parts.append(f"{'; '.join(waiting)}{as_of}.")
    else:
        parts.append(f"Nothing waiting to upload{as_of}.")
    if clock_offset_ms is not None and abs(clock_offset_ms) > CLOCK_WORTH_SAYING / timedelta(
        milliseconds=1
    ):
        off = _ago(timedelta(milliseconds=abs(clock_offset_ms)))
        parts.append(f"Its clock is {off} {'behind' if clock_offset_ms > 0 else 'ahead'}.")
    return " ".join(parts)
