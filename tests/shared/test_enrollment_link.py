"""The enrollment link (an enrollment QR code's text): round trip, every malformed shape, and
the code check agreeing with the server's."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.enrollment_link import (
    INSECURE_SERVER_SENTENCE,
    MAX_LINK_CHARS,
    EnrollmentLink,
    EnrollmentLinkError,
    enrollment_code,
    insecure_server,
    parse_enrollment_link,
    server_url,
)
from sync_server.domain.devices import codes

CODE = "ENR-7KQ2-M9XD-4WPA"
GOOD = (
    "gatehouse-enroll:1?server=https%3A%2F%2Fgates.example.org%3A8443%2Fgh&code=ENR-7KQ2-M9XD-4WPA"
)


def test_a_link_reads_back_as_written() -> None:
    link = EnrollmentLink("https://gates.example.org:8443/gh", CODE)
    assert link.text() == GOOD
    assert parse_enrollment_link(link.text()) == link


def test_a_link_is_read_forgivingly_where_people_and_scanners_differ() -> None:
    # Unencoded URL, trailing slash, a code typed in lower case without dashes, extra fields,
    # whitespace around (a handheld scanner's newline).
    text = "  GATEHOUSE-ENROLL:1?code=enr7kq2m9xd4wpa&server=http://127.0.0.1:8000/&gate=N1\n"
    assert parse_enrollment_link(text) == EnrollmentLink("http://127.0.0.1:8000", CODE)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * (MAX_LINK_CHARS + 1), "too long"),
        ("hello", "not a Gatehouse enrollment code"),
        ("GH1ABCDEFGHIJKLMNOP234567", "ticket's QR code"),
        ("https://gates.example.org/enroll?code=1", "web address"),
        (CODE, "only an enrollment code"),
        ("gatehouse-enroll", "not a Gatehouse enrollment code"),
        ("gatehouse-enroll:", "damaged (no format number)"),
        ("gatehouse-enroll:one?server=x", "damaged (no format number)"),
        ("gatehouse-enroll:2?server=https%3A%2F%2Fa.b&code=" + CODE, "format 2"),
        ("gatehouse-enroll:1", "no server address and no code"),
        ("gatehouse-enroll:1?", "no server address and no code"),
        ("gatehouse-enroll:1?server", "damaged"),
        ("gatehouse-enroll:1?code=" + CODE, "no server"),
        ("gatehouse-enroll:1?server=https%3A%2F%2Fa.b", "no code"),
        ("gatehouse-enroll:1?server=&code=", "no server and no code"),
        ("gatehouse-enroll:1?server=https%3A%2F%2Fa.b&server=https%3A%2F%2Fc.d&code=x", "twice"),
        ("gatehouse-enroll:1?server=%FF%FE&code=" + CODE, "not readable text"),
        ("gatehouse-enroll:1?server=ftp%3A%2F%2Fa.b&code=" + CODE, "https://"),
        ("gatehouse-enroll:1?server=https%3A%2F%2F&code=" + CODE, "no host name"),
        ("gatehouse-enroll:1?server=https%3A%2F%2Fa.b%3Fx%3D1&code=" + CODE, "without ? or #"),
        ("gatehouse-enroll:1?server=https%3A%2F%2Fa.b%3A99999&code=" + CODE, "cannot be used"),
        ("gatehouse-enroll:1?server=https%3A%2F%2Fa.b&code=ENR-7KQ2", "not an enrollment code"),
        ("gatehouse-enroll:1?server=https%3A%2F%2Fa.b&code=ENR-UUUU-UUUU-UUUU", "not an enroll"),
    ],
)
def test_every_malformed_link_gets_a_sentence(text: str, says: str) -> None:
    with pytest.raises(EnrollmentLinkError, match=re.escape(says)):
        parse_enrollment_link(text)


def _outcome(text: str) -> EnrollmentLink | str:
    try:
        return parse_enrollment_link(text)
    except EnrollmentLinkError as error:
        return str(error)


@given(st.text(max_size=300))
def test_the_parser_is_total(text: str) -> None:
    # Any other exception fails the test; a refusal is a sentence, a link reads back.
    outcome = _outcome(text)
    if isinstance(outcome, str):
        assert outcome.endswith((".", ")"))
    else:
        assert parse_enrollment_link(outcome.text()) == outcome


@given(st.text(alphabet="ENRILOUenrilou0123456789ABCDEFGHJKMNPQRSTVWXYZ -_", max_size=24))
def test_the_code_check_agrees_with_the_server(text: str) -> None:
    body = codes.normalise(text)
    try:
        ours = enrollment_code(text)
    except EnrollmentLinkError:
        assert body is None
    else:
        assert body is not None
        assert ours.replace("-", "") == "ENR" + body


def test_fresh_server_codes_pass_unchanged() -> None:
    for _ in range(50):
        code = codes.new_code()
        assert enrollment_code(code) == code


@pytest.mark.parametrize(
    ("typed", "url"),
    [
        ("https://gates.example.org/", "https://gates.example.org"),
        ("HTTP://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://[::1]:8000/api/", "http://[::1]:8000/api"),
    ],
)
def test_server_addresses_are_normalised(typed: str, url: str) -> None:
    assert server_url(typed) == url


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("", "Type the address"),
        ("gates.example.org", "starts with https://"),
        ("https://user:pw@gates.example.org", "user name or password"),
        ("https://gates example.org", "spaces"),
        ("https://gates.example.org:0", "port 0"),
    ],
)
def test_bad_server_addresses_are_refused(typed: str, says: str) -> None:
    with pytest.raises(EnrollmentLinkError, match=says):
        server_url(typed)


# --- https only, except on this computer (issue 14) -------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "http://evil.example",
        "http://gates.example.org:8000/gh",
        "http://10.0.0.5",
        "http://[fe80::1]:8000",
        "http://127.0.0.1.evil.example",
        "http://localhost.evil.example.com",
    ],
)
def test_plain_http_off_this_computer_is_refused(address: str) -> None:
    assert insecure_server(address)
    with pytest.raises(EnrollmentLinkError) as raised:
        server_url(address)
    assert str(raised.value) == INSECURE_SERVER_SENTENCE
    assert server_url(address, allow_insecure_http=True) == address


@pytest.mark.parametrize(
    "address",
    [
        "https://gates.example.org",
        "http://127.0.0.1:8000",
        "http://127.0.0.2:8000",
        "http://127.255.0.9",
        "http://[::1]:8000",
        "http://localhost:8000",
        "http://LOCALHOST.:8000",
    ],
)
def test_https_and_loopback_addresses_are_accepted(address: str) -> None:
    assert not insecure_server(address)
    assert server_url(address)


def test_an_enrollment_qr_code_with_a_plain_http_server_is_refused_in_a_sentence() -> None:
    rogue = EnrollmentLink("http://evil.example", CODE).text()
    with pytest.raises(EnrollmentLinkError) as raised:
        parse_enrollment_link(rogue)
    assert str(raised.value) == INSECURE_SERVER_SENTENCE
    assert rogue.startswith("gatehouse-enroll:1?")  # the format stays version 1
    lab = parse_enrollment_link(rogue, allow_insecure_http=True)
    assert lab == EnrollmentLink("http://evil.example", CODE)
