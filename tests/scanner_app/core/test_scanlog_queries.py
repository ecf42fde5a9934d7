"""The manager's scan-log queries: filters applied in SQL, keyset pages, rows added since a
sequence number, counts per gate, and the admission a refused scan collided with."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from scanner_app.core.store.scanlog import (
    GateCount,
    HolderNames,
    ScanFilter,
    gate_counts,
    latest_seq,
    log_added_since,
    log_count,
    log_entries,
    log_page,
    prior_admission,
)
from scanner_app.core.store.scans import annul
from shared.domain import Direction, VerdictReason, VerdictResult
from tests.scanner_app.core.scanlog_venue import (
    DOORS,
    FORMULA_HOLDER,
    LoggedVenue,
    open_logged_venue,
)


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[LoggedVenue]:
    opened = open_logged_venue(tmp_path / "scanner")
    yield opened
    opened.store.close()


def _labels(venue: LoggedVenue, flt: ScanFilter) -> list[str]:
    names = {scan_id: label for label, scan_id in venue.scans.items()}
    with venue.store.read() as conn:
        rows = log_page(conn, HolderNames(), flt, limit=1000)
        assert log_count(conn, flt, HolderNames()) == len(rows)
    return [names[row.scan.scan_id] for row in rows]


def test_the_whole_log_is_newest_first_with_what_the_device_knows(venue: LoggedVenue) -> None:
    assert _labels(venue, ScanFilter()) == [
        "conflict",
        "forged",
        "exit",
        "revoked",
        "again",
        "admitted",
        "peer_formula",
        "peer_grace",
    ]
    with venue.store.read() as conn:
        rows = {r.scan.scan_id: r for r in log_page(conn, HolderNames())}
    admitted = rows[venue.scans["admitted"]]
    assert admitted.holder_name == "Ada Lovelace"
    assert admitted.upload_state == "uploaded"
    assert rows[venue.scans["again"]].upload_state == "queued"
    # Another gate's admission: the device cannot open whose it was.
    peer = rows[venue.scans["peer_grace"]]
    assert (peer.holder_name, peer.upload_state, peer.scan.gate) == (None, "from server", "South")
    assert rows[venue.scans["conflict"]].scan.conflict_of == venue.scans["peer_formula"]
    assert rows[venue.scans["forged"]].holder_name is None


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (ScanFilter(results=frozenset({VerdictResult.REJECTED})), ["forged", "revoked", "again"]),
        (
            ScanFilter(reasons=frozenset({VerdictReason.ALREADY_CHECKED_IN})),
            ["again"],
        ),
        (ScanFilter(gates=frozenset({"South"})), ["peer_formula", "peer_grace"]),
        (ScanFilter(conflicts_only=True), ["conflict"]),
        # By holder name (only tickets this device scanned), gate, ticket type.
        (ScanFilter(text="lovel"), ["again", "admitted"]),
        (ScanFilter(text="hopper"), ["exit"]),
        (ScanFilter(text="sout"), ["peer_formula", "peer_grace"]),
        (ScanFilter(text="vip"), ["conflict", "exit"]),
        (ScanFilter(text="100%"), []),
        (
            ScanFilter(results=frozenset({VerdictResult.ADMITTED}), gates=frozenset({"North"})),
            ["conflict", "exit", "admitted"],
        ),
    ],
)
def test_each_filter_gives_exactly_its_rows(
    venue: LoggedVenue, flt: ScanFilter, expected: list[str]
) -> None:
    assert _labels(venue, flt) == expected


def test_a_ticket_id_prefix_finds_its_scans_with_or_without_dashes(venue: LoggedVenue) -> None:
    ada = str(venue.tickets["ada"])
    # Long enough to reach the id's random bits: UUIDv7s made in one millisecond share their
    # first 48 bits, so a shorter prefix may name another ticket of the venue too.
    assert _labels(venue, ScanFilter(text=ada[:28])) == ["again", "admitted"]
    assert _labels(venue, ScanFilter(text=ada.replace("-", "")[:24].upper())) == [
        "again",
        "admitted",
    ]


def test_the_time_range_includes_its_start_and_excludes_its_end(venue: LoggedVenue) -> None:
    with venue.store.read() as conn:
        by_label = {r.scan.scan_id: r.scan.at for r in log_page(conn, HolderNames())}
    since = by_label[venue.scans["again"]]
    until = by_label[venue.scans["exit"]]
    assert _labels(venue, ScanFilter(since=since, until=until)) == ["revoked", "again"]
    assert _labels(venue, ScanFilter(until=DOORS + timedelta(minutes=6))) == ["peer_grace"]


def test_keyset_pages_cover_the_log_once_whatever_the_page_size(venue: LoggedVenue) -> None:
    holders = HolderNames()
    with venue.store.read() as conn:
        whole = [r.seq for r in log_page(conn, holders)]
        for newest_first in (True, False):
            seen: list[int] = []
            page = log_page(conn, holders, limit=3, newest_first=newest_first)
            while page:
                seen.extend(r.seq for r in page)
                page = log_page(
                    conn, holders, after=page[-1].key, limit=3, newest_first=newest_first
                )
            assert seen == (whole if newest_first else whole[::-1])


def test_rows_added_since_a_sequence_number_are_the_new_ones(venue: LoggedVenue) -> None:
    holders = HolderNames()
    with venue.store.read() as conn:
        before = latest_seq(conn)
    venue.scan("later", venue.code("ada"), Direction.EXIT)
    venue.peer("late_peer", "grace", DOORS + timedelta(minutes=1))
    with venue.store.read() as conn:
        added = log_added_since(conn, holders, ScanFilter(), before)
        only_north = log_added_since(conn, holders, ScanFilter(gates=frozenset({"North"})), before)
        assert latest_seq(conn) == added[-1].seq
    assert [r.scan.scan_id for r in added] == [venue.scans["later"], venue.scans["late_peer"]]
    assert [r.scan.scan_id for r in only_north] == [venue.scans["later"]]


def test_re_reading_rows_shows_an_annulment(venue: LoggedVenue) -> None:
    holders = HolderNames()
    with venue.store.read() as conn:
        (row,) = [r for r in log_page(conn, holders) if r.scan.scan_id == venue.scans["admitted"]]
    assert not row.scan.annulled
    with venue.store.write() as conn:
        assert annul(conn, venue.scans["admitted"], venue.clock.now())
    with venue.store.read() as conn:
        (again,) = log_entries(conn, holders, [row.seq])
    assert again.scan.annulled


def test_counts_per_gate_follow_the_servers_rules(venue: LoggedVenue) -> None:
    with venue.store.read() as conn:
        counts = gate_counts(conn)
    # Every gate the log names, in order (the scan log's gate filter offers these).
    assert [count.gate for count in counts] == ["North", "South"]
    assert counts == [
        # Ada inside on North; Grace went out at North; the formula ticket's North entry is a
        # double entry (counted as a conflict, not an entry): it is inside on South's.
        GateCount("North", entries=1, exits=1, inside=1, rejected=3, conflicts=1),
        GateCount("South", entries=2, exits=0, inside=1, rejected=0, conflicts=0),
    ]


def test_an_annulled_entry_leaves_the_counts(venue: LoggedVenue) -> None:
    with venue.store.write() as conn:
        assert annul(conn, venue.scans["admitted"], venue.clock.now())
        north = gate_counts(conn)[0]
    assert (north.entries, north.inside) == (0, 0)


def test_the_prior_admission_of_an_already_checked_in_scan(venue: LoggedVenue) -> None:
    with venue.store.read() as conn:
        prior = prior_admission(conn, venue.scans["again"])
        assert prior_admission(conn, venue.scans["forged"]) is None
        assert prior_admission(conn, uuid.uuid4()) is None
    assert prior is not None
    assert (prior.scan_id, prior.gate) == (venue.scans["admitted"], "North")


def test_holder_names_open_only_for_tickets_scanned_here(venue: LoggedVenue) -> None:
    assert _labels(venue, ScanFilter(text=FORMULA_HOLDER[:5])) == ["conflict"]
    # South's admission of the same ticket came from the feed: no ticket id, no name.
    assert "peer_formula" not in _labels(venue, ScanFilter(text="hyperlink"))
