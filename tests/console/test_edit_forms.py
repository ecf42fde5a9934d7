"""The editing forms' readers are total: whatever is posted, they return the domain's request
or a sentence per wrong field, never raise; and the sentences say what and where."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_server.console.forms import (
    checkin_list_form,
    days_text,
    event_form,
    event_update_form,
    pretix_import_form,
    rule_problem,
    ticket_type_update_form,
)

FIELDS = [
    "name",
    "venue",
    "starts_at",
    "ends_at",
    "admission_opens_at",
    "time_zone",
    "allow_reentry",
    "expiry_grace_hours",
    "days",
    "days_shown",
    "capacity",
    "gates",
    "zone",
    "allow_multiple_entries",
    "windows",
    "rules",
    "explanation",
    "pretix_list",
    "mapping",
    "ticket_type_a",
]
BERLIN = ZoneInfo("Europe/Berlin")
texts = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "2027-06-01T19:00",
            "2027-06-01",
            "2027-06-01 23:00-01:00 Late",
            "9999-99-99",
            '{"var": "product"}',
            "[[[[[[[[[[",
            "on",
            "yes",
            "product 1 = A",
            "to 2027-06-01T19:00",
            "1e999",
            "Mars/Olympus",
            "1,5",
            "720",
            "720.0001",
            "-1",
            "\u0663",
        ]
    ),
)
forms = st.dictionaries(st.sampled_from(FIELDS), texts, max_size=len(FIELDS))


@settings(max_examples=300, deadline=None)
@given(form=forms)
def test_every_reader_answers_any_form_without_raising(form: dict[str, str]) -> None:
    for read in (
        event_form(form),
        event_update_form(form),
        ticket_type_update_form(form),
        checkin_list_form(form, ["a"], BERLIN),
        pretix_import_form(form, {"A": "a"}),
    ):
        assert (read.value is None) == bool(read.errors)
        assert all(isinstance(s, str) and s.endswith(".") for s in read.errors.values())


def test_days_read_back_as_they_are_shown() -> None:
    form = {
        "name": "Fest",
        "venue": "Park",
        "starts_at": "2027-06-01T19:00",
        "ends_at": "2027-06-03T01:00",
        "time_zone": "Europe/Berlin",
        "days": "2027-06-01 19:00-01:00 Opening night\n2027-06-02",
        "days_shown": "",
    }
    read = event_update_form(form)
    assert read.value is not None, read.errors
    days = read.value.days
    assert isinstance(days, list)
    assert days[0].ends_at == datetime(2027, 6, 1, 23, 0, tzinfo=UTC)  # past midnight, Berlin
    assert days_text(days, BERLIN) == form["days"]
    # Days the page showed, unchanged, are not sent: what the form cannot show stays.
    unchanged = event_update_form({**form, "days_shown": form["days"]})
    assert unchanged.value is not None
    assert unchanged.value.days is msgspec.UNSET


def test_the_expiry_grace_is_read_in_hours_and_empty_is_the_servers_default() -> None:
    event = {
        "name": "Fest",
        "venue": "Park",
        "starts_at": "2027-06-01T19:00",
        "ends_at": "2027-06-01T23:00",
    }
    for typed, seconds in (("", None), ("0", 0), ("1,5", 5400), ("720", 30 * 24 * 3600)):
        created = event_form({**event, "expiry_grace_hours": typed})
        assert created.value is not None, created.errors
        assert created.value.expiry_grace_seconds == seconds
        changed = event_update_form({**event, "expiry_grace_hours": typed})
        assert changed.value is not None, changed.errors
        # Empty in an edit: back to the server's default (null), not "unchanged".
        assert changed.value.expiry_grace_seconds == seconds
    for typed in ("720.5", "-1", "six", "\u0663", "1e3"):
        read = event_update_form({**event, "expiry_grace_hours": typed})
        assert read.value is None
        assert set(read.errors) == {"expiry_grace_hours"}, typed


def test_a_rule_problem_says_what_and_where() -> None:
    assert rule_problem("") == (None, None)
    assert rule_problem('{"<": [{"var": "entries_today"}, 2]}')[1] is None
    assert rule_problem('{"a":\n  [1,]}')[1] == (
        "The rule is not valid JSON: expecting value at line 2, column 6."
    )
    assert rule_problem('{"var": "shoe_size"}')[1] == (
        "The rule reads an unknown variable 'shoe_size'."
    )
    assert rule_problem("[" * 40 + "]" * 40)[1] == ("The rule is nested too deeply (more than 32).")


def test_the_ticket_type_form_reads_release_seat_from_its_checkbox() -> None:
    form = {"name": "General", "capacity": "100", "days": ""}
    ticked = ticket_type_update_form({**form, "release_seat": "on"})
    assert ticked.value is not None, ticked.errors
    assert ticked.value.release_seat is True
    # An unticked checkbox is not posted: the seat stays sold.
    unticked = ticket_type_update_form(form)
    assert unticked.value is not None, unticked.errors
    assert unticked.value.release_seat is False
