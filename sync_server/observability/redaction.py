"""Secrets out of every text that is logged or shown as an error: ``redact`` is the one place
that knows what a secret in a URL looks like.

A dependency's URL carries its credentials: a broker's or a database's password, and an RPC
provider's API key in the query (``?api-key=…``) or in the path (``/v2/<key>``, or a token as
the whole path). Errors quote these URLs — httpx's ``HTTPStatusError`` names the full request
URL — so ``redact`` runs over each rendered log line (``sync_server.observability.logs``) and
over every error a background loop keeps in its stats (``sync_server.background.describe``).
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://[user[:password]@]host[:port] and its path, up to a query, a fragment, a quote or a
# space (JSON log lines escape quotes with a backslash: that ends a URL too).
_URL = re.compile(
    r"""(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)"""
    r"""(?:(?P<user>[^\s/?#@:'"<>\\]*)(?P<password>:[^\s/?#@'"<>\\]*)?@)?"""
    r"""(?P<host>[^\s/?#'"<>\\]*)"""
    r"""(?P<path>/[^\s?#'"<>\\]*)?"""
)
# A path segment that can be a key or a token: 16 or more characters of the kinds keys are
# written with. Names in a path (``v2``, ``solana``, ``rpc``, a vhost) are shorter.
_TOKEN_SEGMENT = re.compile(r"[A-Za-z0-9_~.%+=-]{16,}")
# ?api-key=…, &token=…, access_token=… in a query string
_SECRET_PARAMETER = re.compile(
    r"(?P<name>[?&][^=\s&]*(?:key|token|secret|password|auth)[^=\s&]*=)[^&\s'\"\\]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the secrets of its URLs masked: the password of ``user:password@`` (all of
    a lone ``token@``), path segments that look like keys, and the values of query parameters
    named like keys, tokens, secrets or passwords. The rest (scheme, host, port, short path
    names, other parameters) stays, so a line still says which dependency it is about."""
    if "://" not in text and "=" not in text:  # most lines (every access line): nothing to do
        return text
    return _SECRET_PARAMETER.sub(rf"\g<name>{MASK}", _URL.sub(_mask_url, text))


def _mask_url(match: re.Match[str]) -> str:
    user, password = match.group("user"), match.group("password")
    if user is None:
        userinfo = ""
    elif password is None:  # scheme://token@host: the name is the secret
        userinfo = f"{MASK}@"
    else:
        userinfo = f"{user}:{MASK}@"
    path = match.group("path") or ""
    if path:
        path = "/".join(
            MASK if _TOKEN_SEGMENT.fullmatch(segment) else segment for segment in path.split("/")
        )
    return f"{match.group('scheme')}{userinfo}{match.group('host')}{path}"
