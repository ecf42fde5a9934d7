"""The scanner's HTTP client for the sync server (``docs/api.md``, ``docs/sync-protocol.md``).

Every call either returns the decoded answer or raises one of three errors, so the sync engine
decides with three cases and no HTTP details:

* ``ServerUnavailable`` — try again later: no connection, a timeout, 5xx, 429 (with the
  server's ``Retry-After`` when it sent one) or an answer that does not decode;
* ``DeviceRejected`` — 401: the server refuses this device's token. Only its ``revoked``
  (the server's ``device_revoked`` problem: a manager switched the device off) means the
  device must stop admitting; any other 401 (a token the server does not know: a restored
  backup, a rotated secret, the wrong server) leaves the gate working offline until it is
  enrolled again;
* ``RequestRefused`` — any other 4xx: the server will never accept this request as sent.

A client is never made for a plain ``http://`` server off this computer (``InsecureServer``,
before any connection): the device's token and every scanned code would cross the venue
network in clear. A lab allows it explicitly (``lab_mode``).
"""

from __future__ import annotations

import uuid
from typing import TypeVar

import httpx
import msgspec

from scanner_app.core.sync.lab_mode import insecure_http_allowed
from shared import wire
from shared.enrollment_link import INSECURE_SERVER_SENTENCE, insecure_server

MSGPACK = "application/msgpack"
_T = TypeVar("_T")


class SyncError(Exception):
    """Base of the client's errors; ``str()`` is a sentence for the status bar."""


class ServerUnavailable(SyncError):
    def __init__(
        self, reason: str, retry_after: float | None = None, *, answered: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        #: The server answered (429, 5xx): it is there, busy or failing, not out of reach.
        self.answered = answered


class InsecureServer(SyncError):
    """The server's address is plain ``http://`` off this computer: refused before any
    connection. ``str()`` is the sentence for staff."""

    def __init__(self) -> None:
        super().__init__(INSECURE_SERVER_SENTENCE)


#: The problem code of a 401 for a revoked device (``sync_server/http/dependencies.py``,
#: ``caller_session``); any other 401 is a token the server does not accept.
DEVICE_REVOKED_CODE = "device_revoked"


class DeviceRejected(SyncError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code

    @property
    def revoked(self) -> bool:
        """The server says a manager revoked this device (not merely that it refuses the
        token)."""
        return self.code == DEVICE_REVOKED_CODE


class RequestRefused(SyncError):
    def __init__(self, status: int, code: str, detail: str, body: str = "") -> None:
        super().__init__(f"{detail} ({status} {code})")
        self.status = status
        self.code = code
        self.detail = detail
        #: The start of the answer's body (a validation problem's field errors name fields).
        self.body = body

    def names_field(self, name: str) -> bool:
        """A validation refusal (400/422) whose answer names the field ``name``: the server
        does not know the field (an older server)."""
        return self.status in {400, 422} and name in self.body


class _Problem(msgspec.Struct):
    code: str = "error"
    detail: str = ""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from our server; the engine's backoff applies


def _check(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    try:
        problem = msgspec.json.decode(response.content, type=_Problem)
    except msgspec.DecodeError:
        problem = _Problem(detail=response.reason_phrase)
    if status == 429:
        raise ServerUnavailable(
            "The server is busy (too many requests).", _retry_after(response), answered=True
        )
    if status >= 500:
        raise ServerUnavailable(
            f"The server has a problem ({status}: {problem.detail or problem.code}).",
            _retry_after(response),
            answered=True,
        )
    if status == 401:
        raise DeviceRejected(problem.code, problem.detail or "The server no longer accepts us.")
    raise RequestRefused(
        status, problem.code, problem.detail, response.content[:4096].decode("utf-8", "replace")
    )


def _decode(response: httpx.Response, kind: type[_T]) -> _T:
    try:
        if response.headers.get("content-type", "").startswith(MSGPACK):
            return msgspec.msgpack.decode(response.content, type=kind)
        return msgspec.json.decode(response.content, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise ServerUnavailable(f"The server's answer could not be read ({error}).") from error


class ServerClient:
    """Talks to one sync server as one enrolled device (or, for ``enroll``, as nobody yet).

    ``timeout`` bounds every call except ``validate``, which takes its own (short) one.
    Raises ``InsecureServer`` for a plain-http server off this computer, unless in lab mode.
    Thread-safe; ``close()`` when done.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 15.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if insecure_server(base_url) and not insecure_http_allowed():
            raise InsecureServer()
        headers = {"User-Agent": "gatehouse-scanner", "Accept-Encoding": "gzip"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(
        self, method: str, path: str, *, timeout: float | None = None, **kwargs: object
    ) -> httpx.Response:
        try:
            response = self._http.request(
                method,
                path,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                **kwargs,  # type: ignore[arg-type]
            )
        except httpx.TimeoutException as error:
            raise ServerUnavailable("The server did not answer in time.") from error
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:
            raise RequestRefused(
                0, "invalid_url", f"The server address is not valid: {error}"
            ) from error
        except httpx.RequestError as error:
            # Transport failures, and answers that cannot be decoded (a broken gzip body).
            raise ServerUnavailable(f"Cannot reach the server ({_cause(error)}).") from error
        _check(response)
        return response

    def enroll(
        self,
        code: str,
        device_name: str,
        peer_public_key: bytes | None = None,
        succeeds: wire.Succession | None = None,
    ) -> wire.EnrolledDevice:
        """Redeem a one-time enrollment code. ``RequestRefused`` (422) for a used, unknown or
        expired code — its ``detail`` says which. ``peer_public_key`` asks the server to
        certify the device's peer key (issue 18); a server older than peer sync refuses the
        field (``RequestRefused.names_field("peer_public_key")``). ``succeeds`` asks it to let
        the new device take over the one this computer was (``EnrolledDevice.succeeds``); a
        server older than that refuses the field (``names_field("succeeds")``)."""
        request = wire.EnrollRequest(
            code=code, device_name=device_name, peer_public_key=peer_public_key, succeeds=succeeds
        )
        # Without a key the field is left out, not sent empty: a server older than peer sync
        # refuses any field it does not know.
        fields = {k: v for k, v in msgspec.to_builtins(request).items() if v is not None}
        body = msgspec.json.encode(fields)
        response = self._send(
            "POST",
            "/v1/devices/enroll",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        return _decode(response, wire.EnrolledDevice)

    def renew(self, refresh_token: str) -> wire.DeviceTokens:
        """Spend the refresh token for a new access token and the next refresh token.
        ``DeviceRejected``: ``device_revoked`` (revoked, or this refresh token was spent
        before), ``refresh_token_invalid`` or ``refresh_token_expired`` (enroll again)."""
        body = msgspec.json.encode(wire.TokenRenewal(refresh_token=refresh_token))
        response = self._send(
            "POST",
            "/v1/devices/token",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        return _decode(response, wire.DeviceTokens)

    def me(self) -> wire.DeviceSelf:
        return _decode(self._send("GET", "/v1/devices/me"), wire.DeviceSelf)

    def heartbeat(self, beat: wire.DeviceHeartbeat) -> None:
        """Tell the server this device's state (204). ``RequestRefused`` (404) from a server
        older than the heartbeat."""
        self._send(
            "POST",
            "/v1/devices/me/heartbeat",
            content=msgspec.json.encode(beat),
            headers={"Content-Type": "application/json"},
        )

    def changes(
        self, cursor: str | None, limit: int, setup_version: int | None = None
    ) -> wire.ChangesPage:
        """One page of the feed. ``setup_version`` is the check-in setup's version this device
        has (None: none): the page carries the event's setup when the server's differs."""
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        if setup_version is not None:
            params["setup_version"] = setup_version
        response = self._send("GET", "/v1/sync/changes", params=params, headers={"Accept": MSGPACK})
        return _decode(response, wire.ChangesPage)

    def upload(self, scans: list[wire.ScanUpload]) -> wire.ScanBatchOutcome:
        response = self._send(
            "POST",
            "/v1/sync/scans",
            content=msgspec.json.encode(wire.ScanBatch(scans=scans)),
            headers={"Content-Type": "application/json"},
        )
        return _decode(response, wire.ScanBatchOutcome)

    def annul(self, scan_id: uuid.UUID, reason: str | None = None) -> None:
        """Undo one of this device's admissions; ``reason`` goes to the ticket's history (a
        server older than the reason ignores the body and undoes it all the same)."""
        if reason is None:
            self._send("POST", f"/v1/scans/{scan_id}/annul")
            return
        self._send(
            "POST",
            f"/v1/scans/{scan_id}/annul",
            content=msgspec.json.encode(wire.AnnulRequest(reason=reason)),
            headers={"Content-Type": "application/json"},
        )

    def recorded(self, scan_id: uuid.UUID) -> wire.Verdict | None:
        """The verdict the server recorded for one of our scans; None when it never got it
        (404), or when the id is another device's scan (409 ``scan_id_taken``): either way the
        server holds no scan of ours under it."""
        try:
            response = self._send("GET", f"/v1/sync/scans/{scan_id}")
        except RequestRefused as error:
            if error.status == 404 or (error.status == 409 and error.code == "scan_id_taken"):
                return None
            raise
        return _decode(response, wire.Verdict)

    def validate(self, request: wire.ValidateRequest, timeout: float) -> wire.Verdict:
        """The server's verdict (200, 409 and 422 all carry one)."""
        try:
            response = self._http.post(
                "/v1/validate",
                content=msgspec.json.encode(request),
                headers={"Content-Type": "application/json"},
                timeout=timeout,
            )
        except httpx.TimeoutException as error:
            raise ServerUnavailable("The server did not answer in time.") from error
        except httpx.RequestError as error:
            raise ServerUnavailable(f"Cannot reach the server ({_cause(error)}).") from error
        if response.status_code in {409, 422}:
            try:
                return msgspec.json.decode(response.content, type=wire.Verdict)
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass  # a 422 problem (e.g. validation), not a verdict
        _check(response)
        return _decode(response, wire.Verdict)


def _cause(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) < 120 else text[:117] + "..."
