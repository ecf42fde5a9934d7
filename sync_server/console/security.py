"""The console's cookie, CSRF and request-origin rules (docs/console.md, docs/security.md).

* The session cookie carries a random token (the database keeps its hash): ``HttpOnly`` (no
  script reads it), ``SameSite=Lax`` (a cross-site POST never carries it), ``Secure`` unless
  the console is served on a loopback address over plain HTTP (a developer's machine), and
  scoped to ``/console``. It authenticates console pages only: the JSON API under ``/v1``
  takes bearer tokens and never reads it.
* Every unsafe console request (POST) must carry a CSRF token, in the form's ``_csrf`` field
  or an ``X-CSRF-Token`` header: signed in, a hash of the session's own token (so it cannot
  be guessed, set or reused across sessions); before signing in (the sign-in and
  set-password forms), a random value that also sits in a ``SameSite=Strict`` cookie
  (double submit). On top, a request whose ``Origin`` is not the console's own, or that the
  browser marks ``Sec-Fetch-Site: cross-site``, is refused whatever it carries.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from typing import Any, Final

from litestar import Request
from litestar.datastructures import Cookie

SESSION_COOKIE: Final = "gatehouse_console"
PRE_SESSION_COOKIE: Final = "gatehouse_console_csrf"
CSRF_FIELD: Final = "_csrf"
CSRF_HEADER: Final = "x-csrf-token"
COOKIE_PATH: Final = "/console"
_MAX_TOKEN: Final = 200


def on_loopback(request: Request[Any, Any, Any]) -> bool:
    """Whether the console is being served on this computer over plain HTTP (the only case
    its cookies go without ``Secure``)."""
    if request.url.scheme != "http":
        return False
    host = (request.url.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def session_cookie(request: Request[Any, Any, Any], token: str, max_age: int) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=token,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        secure=not on_loopback(request),
        samesite="lax",
    )


def ended_session_cookie(request: Request[Any, Any, Any]) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value="",
        max_age=0,
        path=COOKIE_PATH,
        httponly=True,
        secure=not on_loopback(request),
        samesite="lax",
    )


def _clean(value: str | None) -> str | None:
    return value if value and len(value) <= _MAX_TOKEN else None


def session_token(request: Request[Any, Any, Any]) -> str | None:
    return _clean(request.cookies.get(SESSION_COOKIE))


def session_csrf(token: str) -> str:
    """The CSRF token of the session whose cookie token is ``token``."""
    return hashlib.sha256(b"gatehouse/console-csrf\0" + token.encode()).hexdigest()


def csrf_for_page(request: Request[Any, Any, Any]) -> tuple[str, Cookie | None]:
    """The CSRF token a page's forms carry, and the cookie to set with it (a new pre-session
    value), if any."""
    token = session_token(request)
    if token is not None:
        return session_csrf(token), None
    existing = _clean(request.cookies.get(PRE_SESSION_COOKIE))
    if existing is not None:
        return existing, None
    fresh = secrets.token_urlsafe(32)
    return fresh, Cookie(
        key=PRE_SESSION_COOKIE,
        value=fresh,
        path=COOKIE_PATH,
        httponly=True,
        secure=not on_loopback(request),
        samesite="strict",
    )


def cross_site(request: Request[Any, Any, Any]) -> bool:
    """Whether the browser says this request comes from another site."""
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    own = f"{request.url.scheme}://{request.url.netloc}"
    return origin.lower() != own.lower()


def csrf_valid(request: Request[Any, Any, Any], sent: str | None) -> bool:
    """Whether ``sent`` is the CSRF token this request's cookies call for."""
    if not sent or len(sent) > _MAX_TOKEN:
        return False
    expected: list[str] = []
    token = session_token(request)
    if token is not None:
        expected.append(session_csrf(token))
    pre = _clean(request.cookies.get(PRE_SESSION_COOKIE))
    if pre is not None:
        expected.append(pre)
    return any(hmac.compare_digest(sent.encode(), want.encode()) for want in expected)
