"""The enrollment link: what an enrollment QR code says, so a scanner enrolls without typing.

A manager's screen (or ``gatehouse-server demo``) shows one QR code holding the sync server's
address and a one-time enrollment code::

    gatehouse-enroll:1?server=https%3A%2F%2Fgates.example.org&code=ENR-7KQ2-M9XD-4WPA

* ``gatehouse-enroll:`` says what the code is for, so a ticket code (``GH1...``) or a web
  address held up by mistake gets a sentence saying so, not a failed request;
* ``1`` is the format version: a later incompatible format gets a new number, and this scanner
  says it needs an update instead of guessing;
* ``server`` and ``code`` are query parameters, percent-encoded (``urllib.parse.quote``); other
  parameters are ignored, so optional ones can be added without a new version.

The server must be ``https://``: a plain ``http://`` address is accepted only for this computer
(``localhost``, 127.0.0.0/8, ``::1``), where nothing crosses a network, or when a lab setup
passes ``allow_insecure_http`` (issue 14: a rogue QR code would otherwise point a gate at an
attacker who reads every code and answers as the server).

It lives in ``shared`` because both sides write or read it: the server prints it, the scanner
parses it. The parser is total: any text gives an ``EnrollmentLink`` or raises
``EnrollmentLinkError`` whose message is a sentence for the person holding the scanner.

The enrollment code's own shape (``ENR-XXXX-XXXX-XXXX``, Crockford base32) is checked here the
way the server reads it (``sync_server/domain/devices/codes.py``; a test keeps the two in step),
so a typo is caught before the request and not by a round trip.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote, urlsplit

SCHEME: Final = "gatehouse-enroll"
VERSION: Final = "1"
#: A QR code of version 10 at level M holds about 213 bytes; a link is far shorter. Anything
#: much longer is not one of ours (and is not worth parsing).
MAX_LINK_CHARS: Final = 2000

_CODE_PREFIX: Final = "ENR"
_CODE_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_BODY_CHARS: Final = 12
_CONFUSABLE: Final = str.maketrans({"I": "1", "L": "1", "O": "0"})
_NOT_ALPHANUMERIC: Final = re.compile(r"[^0-9A-Z]+")
_CODE_BODY: Final = re.compile(f"[{_CODE_ALPHABET}]{{{_CODE_BODY_CHARS}}}")

CODE_EXAMPLE: Final = "ENR-7KQ2-M9XD-4WPA"
URL_EXAMPLE: Final = "https://gates.example.org"
#: What a scanner says when it refuses a plain-http server that is not on this computer.
INSECURE_SERVER_SENTENCE: Final = (
    "This server address is not secure (http://). Ask your manager for the https:// address."
)


class EnrollmentLinkError(ValueError):
    """Text that is not a usable enrollment link, address or code; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class EnrollmentLink:
    """A server address and an enrollment code, both already checked and normalised."""

    server_url: str
    code: str

    def text(self) -> str:
        """The link as a QR code carries it."""
        return (
            f"{SCHEME}:{VERSION}?server={quote(self.server_url, safe='')}"
            f"&code={quote(self.code, safe='')}"
        )


def enrollment_code(text: str) -> str:
    """``text`` as the grouped enrollment code ``ENR-XXXX-XXXX-XXXX``.

    Forgiving the way the server is: case, spaces and dashes do not matter, the ``ENR`` prefix
    may be left out, and I, L, O count as 1, 1, 0. Raises ``EnrollmentLinkError`` for anything
    else.
    """
    compact = _NOT_ALPHANUMERIC.sub("", text.upper())
    if not compact:
        raise EnrollmentLinkError(
            f"Type the enrollment code a manager gave you (it looks like {CODE_EXAMPLE})."
        )
    if len(compact) == len(_CODE_PREFIX) + _CODE_BODY_CHARS and compact.startswith(_CODE_PREFIX):
        compact = compact[len(_CODE_PREFIX) :]
    compact = compact.translate(_CONFUSABLE)
    if not _CODE_BODY.fullmatch(compact):
        raise EnrollmentLinkError(
            f"This is not an enrollment code: one looks like {CODE_EXAMPLE} "
            "(ENR and 12 letters and digits)."
        )
    groups = [compact[i : i + 4] for i in range(0, _CODE_BODY_CHARS, 4)]
    return "-".join([_CODE_PREFIX, *groups])


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and the loopback addresses (127.0.0.0/8, ::1): traffic that never
    leaves this computer."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def insecure_server(address: str) -> bool:
    """True when ``address`` (an absolute URL) would carry the device's token and every scanned
    code in clear over a network: ``http://`` to a host that is not on this computer.

    A rogue enrollment QR code pointing at ``http://`` would otherwise let anyone on the venue
    network read the codes and answer as the server; a scanner refuses such an address unless
    a lab setup explicitly allows it.
    """
    parts = urlsplit(address.strip())
    return parts.scheme.lower() != "https" and not is_loopback_host(parts.hostname or "")


def server_url(text: str, *, allow_insecure_http: bool = False) -> str:
    """``text`` as a sync server's base address: ``https`` (or ``http`` to this computer, or to
    anywhere when ``allow_insecure_http``), a host, maybe a port and a path prefix (a reverse
    proxy), no query; without the trailing slash.

    Raises ``EnrollmentLinkError`` with a sentence saying what is wrong.
    """
    address = text.strip()
    if not address:
        raise EnrollmentLinkError(
            f"Type the address of the Gatehouse server, such as {URL_EXAMPLE}."
        )
    if any(c.isspace() for c in address):
        raise EnrollmentLinkError("A server address cannot contain spaces.")
    try:
        parts = urlsplit(address)
        port = parts.port  # raises ValueError for a port that is not a number or out of range
    except ValueError as error:
        raise EnrollmentLinkError(f"This server address cannot be used: {error}.") from error
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise EnrollmentLinkError(
            f"A server address starts with https:// or http://, such as {URL_EXAMPLE}."
        )
    if not parts.hostname:
        raise EnrollmentLinkError(
            f"The server address has no host name after {scheme}://, such as {URL_EXAMPLE}."
        )
    if parts.username is not None or parts.password is not None:
        raise EnrollmentLinkError("A server address must not contain a user name or password.")
    if parts.query or parts.fragment or address.endswith(("?", "#")):
        raise EnrollmentLinkError(
            "A server address ends with its host name (and maybe a port or a path), without ? or #."
        )
    if port == 0:
        raise EnrollmentLinkError("The server address has port 0, which no server listens on.")
    normalised = f"{scheme}://{parts.netloc}{parts.path}".rstrip("/")
    if not allow_insecure_http and insecure_server(normalised):
        raise EnrollmentLinkError(INSECURE_SERVER_SENTENCE)
    return normalised


def parse_enrollment_link(text: str, *, allow_insecure_http: bool = False) -> EnrollmentLink:
    """Read the text of an enrollment QR code. Never raises anything but
    ``EnrollmentLinkError``, whose message says what the text is instead. A link to a plain
    ``http://`` server off this computer is refused (``server_url``) unless
    ``allow_insecure_http``."""
    stripped = text.strip()
    if not stripped:
        raise EnrollmentLinkError("The QR code is empty.")
    if len(stripped) > MAX_LINK_CHARS:
        raise EnrollmentLinkError("This QR code is not an enrollment code (it is far too long).")
    head, colon, rest = stripped.partition(":")
    if not colon or head.lower() != SCHEME:
        raise EnrollmentLinkError(_what_else(stripped))
    version, question, query = rest.partition("?")
    if version != VERSION:
        if version.isdigit():
            raise EnrollmentLinkError(
                f"This enrollment QR code has format {version}; this scanner reads format "
                f"{VERSION}. Update the scanner app."
            )
        raise EnrollmentLinkError("This enrollment QR code is damaged (no format number).")
    if not question or not query:
        raise EnrollmentLinkError(
            "This enrollment QR code has no server address and no code in it."
        )
    fields = _fields(query)
    missing = [name for name in ("server", "code") if not fields.get(name)]
    if missing:
        raise EnrollmentLinkError(
            f"This enrollment QR code has no {' and no '.join(missing)} in it."
        )
    try:
        link = EnrollmentLink(
            server_url=server_url(fields["server"], allow_insecure_http=True),
            code=enrollment_code(fields["code"]),
        )
    except EnrollmentLinkError as error:
        raise EnrollmentLinkError(f"The enrollment QR code is wrong: {error}") from error
    if not allow_insecure_http and insecure_server(link.server_url):
        raise EnrollmentLinkError(INSECURE_SERVER_SENTENCE)
    return link


def _fields(query: str) -> dict[str, str]:
    """A link's query parameters, each named once and percent-decoded."""
    fields: dict[str, str] = {}
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        if not equals:
            raise EnrollmentLinkError(f"This enrollment QR code is damaged (near {pair[:30]!r}).")
        if name in fields:
            raise EnrollmentLinkError(f"This enrollment QR code names its {name} twice.")
        try:
            fields[name] = unquote(value, errors="strict")
        except UnicodeDecodeError as error:
            raise EnrollmentLinkError(
                f"This enrollment QR code is damaged (its {name} is not readable text)."
            ) from error
    return fields


def _what_else(text: str) -> str:
    """A sentence for a QR code that is not an enrollment link, naming what it looks like."""
    upper = text.upper()
    if upper.startswith("GH") and upper[2:3].isdigit():
        return "This is a ticket's QR code, not an enrollment code."
    if upper.startswith(("HTTP://", "HTTPS://")):
        return (
            "This QR code is a web address, not an enrollment code. Type the server address "
            "and the code instead, or ask for the enrollment QR code."
        )
    try:
        enrollment_code(text)
    except EnrollmentLinkError:
        return "This QR code is not a Gatehouse enrollment code."
    return "This QR code holds only an enrollment code: type the server address as well."


__all__ = [
    "CODE_EXAMPLE",
    "INSECURE_SERVER_SENTENCE",
    "MAX_LINK_CHARS",
    "SCHEME",
    "URL_EXAMPLE",
    "VERSION",
    "EnrollmentLink",
    "EnrollmentLinkError",
    "enrollment_code",
    "insecure_server",
    "is_loopback_host",
    "parse_enrollment_link",
    "server_url",
]
