"""A local Solana node for tests and benchmarks: LiteSVM over real HTTP JSON-RPC and WebSocket.

The production code talks to a configured RPC URL and WebSocket URL with the ``solana`` client;
pointed at :class:`LocalSolanaNode` it cannot tell it is not a validator (for the methods in
:mod:`testkit.solana.localledger`). Both endpoints share one port on 127.0.0.1: JSON-RPC is
``POST /``, the PubSub WebSocket is ``GET /`` with an upgrade. Nothing here reaches the internet.

Served by uvicorn (already the server's ASGI server) in a thread of its own, with a bare ASGI
callable: one JSON-RPC endpoint and one WebSocket route need no framework routing, and owning the
connection loop directly makes the outage controls exact:

* :meth:`LocalSolanaNode.pause` makes the node unresponsive (HTTP requests and WebSocket
  handshakes hang, notifications stop) until :meth:`LocalSolanaNode.resume`;
* :meth:`LocalSolanaNode.drop_websockets` closes every WebSocket (code 1012, "service restart"),
  so reconnect-and-backfill paths can be tested; new connections are accepted at once.

WebSocket methods: ``logsSubscribe`` (``"all"``, ``"allWithVotes"`` or ``{"mentions": [key]}``),
``accountSubscribe`` and their ``...Unsubscribe``. Notifications follow each subscription's
commitment (default ``finalized``, as on a real node): a transaction is announced once it has
settled that far, so ``processed`` subscribers hear of it at once and ``finalized`` ones after
:data:`~testkit.solana.localledger.FINALITY_DEPTH` slots. An account notification carries
the account as that transaction left it; a subscription hears only of transactions that land
after it was made.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator, MutableMapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn
from solders.pubkey import Pubkey

from testkit.solana.localledger import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    LandedTransaction,
    LocalLedger,
    RpcError,
    account_json,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger(__name__)

_PARSE_ERROR = -32700
_INTERNAL_ERROR = -32603
_SERVICE_RESTART = 1012
_COMMITMENTS = frozenset({"processed", "confirmed", "finalized"})


@dataclass
class _Subscription:
    id: int
    kind: str  # "logs" or "account"
    commitment: str
    next_position: int  # the first history position not yet considered
    mentions: Pubkey | None = None  # logs: None means every transaction
    account: Pubkey | None = None
    encoding: str = "binary"

    def concerns(self, landed: LandedTransaction) -> bool:
        watched = self.mentions if self.kind == "logs" else self.account
        return watched is None or watched in landed.account_keys


@dataclass(eq=False)  # hashed by identity: connections live in a set
class _Connection:
    send: Send
    subscriptions: dict[int, _Subscription] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False

    async def send_json(self, body: dict[str, Any]) -> None:
        async with self.send_lock:
            if not self.closed:
                await self.send({"type": "websocket.send", "text": json.dumps(body)})

    async def close(self, code: int) -> None:
        async with self.send_lock:
            if not self.closed:
                self.closed = True
                await self.send({"type": "websocket.close", "code": code})


class LocalSolanaNode:
    """LiteSVM served over HTTP JSON-RPC and WebSocket on 127.0.0.1.

    Use as a context manager (``with LocalSolanaNode() as node:``) or call :meth:`start` and
    :meth:`stop`. ``node.ledger`` is the :class:`LocalLedger` for direct control (advance slots,
    inspect history); ``node.rpc_url`` and ``node.ws_url`` are what the client is configured with.
    ``slot_seconds`` makes slots pass on their own (the demo); tests leave it ``None`` and move
    slots with :meth:`advance`.
    """

    def __init__(self, *, slot_seconds: float | None = None) -> None:
        self.ledger = LocalLedger()
        self._slot_seconds = slot_seconds
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without it every answer waits ~40 ms for the
        # client's delayed ACK (Nagle), which no real node makes its clients do.
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._responsive: asyncio.Event | None = None
        self._connections: set[_Connection] = set()
        self._subscription_ids = itertools.count(1)
        self._ready = threading.Event()
        self.ledger.on_change.append(self._wake_all_threadsafe)

    @property
    def rpc_url(self) -> str:
        """The HTTP JSON-RPC endpoint."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """The PubSub WebSocket endpoint."""
        return f"ws://127.0.0.1:{self.port}"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Serve in a background thread; returns once the port accepts requests."""
        config = uvicorn.Config(
            self._asgi,
            interface="asgi3",
            lifespan="off",
            ws="websockets-sansio",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="local-solana", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or not self._server.started:
            raise RuntimeError("the local Solana node did not start")
        return self

    def stop(self) -> None:
        """Stop serving: resume if paused, close WebSockets, shut uvicorn down, join."""
        if self._server is None or self._thread is None:
            return
        if self._loop is not None and self._thread.is_alive():
            self._run(self._shutdown_connections())
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        assert self._server is not None
        asyncio.run(self._main(self._server))

    async def _main(self, server: uvicorn.Server) -> None:
        self._loop = asyncio.get_running_loop()
        self._responsive = asyncio.Event()
        self._responsive.set()
        ticker = None
        if self._slot_seconds is not None:
            ticker = asyncio.create_task(self._tick(self._slot_seconds))
        startup = asyncio.create_task(server.serve(sockets=[self._socket]))
        while not server.started and not startup.done():
            await asyncio.sleep(0.005)
        self._ready.set()
        try:
            await startup
        finally:
            if ticker is not None:
                ticker.cancel()

    async def _tick(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            assert self._responsive is not None
            await self._responsive.wait()
            self.ledger.advance(1)

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    # -- controls for tests -----------------------------------------------------------------

    def advance(self, slots: int = 1) -> int:
        """Move ``slots`` slots on (see :meth:`LocalLedger.advance`); the new slot."""
        return self.ledger.advance(slots)

    def finalize(self) -> int:
        """Advance until everything landed so far is finalized; the new slot."""
        return self.ledger.finalize()

    def pause(self) -> None:
        """Stop responding: requests and handshakes hang and notifications wait, until resume."""
        self._run(self._set_responsive(value=False))

    def resume(self) -> None:
        """Answer again; requests that waited are answered now."""
        self._run(self._set_responsive(value=True))

    def drop_websockets(self) -> int:
        """Close every open WebSocket (code 1012); how many were closed."""
        return int(self._run(self._close_connections()))

    @contextmanager
    def paused(self) -> Iterator[None]:
        """:meth:`pause` for the duration of a ``with`` block."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    async def _set_responsive(self, *, value: bool) -> None:
        assert self._responsive is not None
        if value:
            self._responsive.set()
            self._wake_all()
        else:
            self._responsive.clear()

    async def _close_connections(self) -> int:
        connections = list(self._connections)
        for connection in connections:
            await connection.close(_SERVICE_RESTART)
        return len(connections)

    async def _shutdown_connections(self) -> None:
        await self._set_responsive(value=True)
        await self._close_connections()

    # -- ASGI -------------------------------------------------------------------------------

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        assert self._responsive is not None
        await self._responsive.wait()
        if scope["method"] != "POST":
            await _respond(send, 405, {"error": "the JSON-RPC endpoint takes POST"})
            return
        try:
            request = json.loads(body)
        except ValueError:
            await _respond(send, 200, _error(None, RpcError(_PARSE_ERROR, "Parse error")))
            return
        if isinstance(request, list):
            await _respond(send, 200, [self._answer(item) for item in request])
        else:
            await _respond(send, 200, self._answer(request))

    def _answer(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return _error(None, RpcError(INVALID_REQUEST, "Invalid request"))
        request_id = request.get("id")
        try:
            result = self.ledger.call(request["method"], request.get("params"))
        except RpcError as exc:
            return _error(request_id, exc)
        except Exception as exc:  # a bug here must reach the client as a node's internal error
            logger.exception("local Solana node failed to answer %s", request["method"])
            return _error(request_id, RpcError(_INTERNAL_ERROR, f"Internal error: {exc}"))
        return {"jsonrpc": "2.0", "result": result, "id": request_id}

    async def _websocket(self, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        assert self._responsive is not None
        await self._responsive.wait()
        await send({"type": "websocket.accept"})
        connection = _Connection(send)
        self._connections.add(connection)
        notifier = asyncio.create_task(self._notify(connection))
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text") or (message.get("bytes") or b"").decode()
                await connection.send_json(self._handle_ws(connection, text))
        finally:
            connection.closed = True
            self._connections.discard(connection)
            notifier.cancel()
            with suppress(asyncio.CancelledError):
                await notifier

    def _handle_ws(self, connection: _Connection, text: str) -> dict[str, Any]:
        try:
            request = json.loads(text)
        except ValueError:
            return _error(None, RpcError(_PARSE_ERROR, "Parse error"))
        if not isinstance(request, dict):
            return _error(None, RpcError(INVALID_REQUEST, "Invalid request"))
        request_id = request.get("id")
        params = request.get("params") or []
        try:
            result = self._ws_method(connection, str(request.get("method")), params)
        except RpcError as exc:
            return _error(request_id, exc)
        connection.wake.set()
        return {"jsonrpc": "2.0", "result": result, "id": request_id}

    def _ws_method(self, connection: _Connection, method: str, params: list[Any]) -> Any:
        if method in {"logsUnsubscribe", "accountUnsubscribe"}:
            key = params[0] if params and isinstance(params[0], int) else -1
            subscription = connection.subscriptions.get(key)
            kind = "logs" if method == "logsUnsubscribe" else "account"
            if subscription is None or subscription.kind != kind:
                raise RpcError(INVALID_PARAMS, "Invalid subscription id.")
            del connection.subscriptions[subscription.id]
            return True
        if method == "logsSubscribe":
            subscription = self._logs_subscription(params)
        elif method == "accountSubscribe":
            subscription = self._account_subscription(params)
        else:
            raise RpcError(METHOD_NOT_FOUND, "Method not found")
        connection.subscriptions[subscription.id] = subscription
        return subscription.id

    def _new_subscription(self, kind: str, config: Any) -> _Subscription:
        config = config if isinstance(config, dict) else {}
        commitment = config.get("commitment") or "finalized"
        if commitment not in _COMMITMENTS:
            raise RpcError(INVALID_PARAMS, f"Invalid params: unknown commitment {commitment!r}")
        return _Subscription(
            id=next(self._subscription_ids),
            kind=kind,
            commitment=commitment,
            next_position=self.ledger.history_length(),
            encoding=config.get("encoding") or "binary",
        )

    def _logs_subscription(self, params: list[Any]) -> _Subscription:
        subscription = self._new_subscription("logs", params[1] if len(params) > 1 else None)
        selector = params[0] if params else None
        if isinstance(selector, dict) and isinstance(selector.get("mentions"), list):
            if len(selector["mentions"]) != 1:
                raise RpcError(INVALID_PARAMS, "Invalid Request: Only 1 address supported")
            subscription.mentions = _parse_pubkey(selector["mentions"][0])
        elif selector not in {"all", "allWithVotes"}:
            raise RpcError(INVALID_PARAMS, "Invalid params: unknown logs filter")
        return subscription

    def _account_subscription(self, params: list[Any]) -> _Subscription:
        subscription = self._new_subscription("account", params[1] if len(params) > 1 else None)
        subscription.account = _parse_pubkey(params[0] if params else None)
        if subscription.encoding not in {"binary", "base58", "base64"}:
            raise RpcError(INVALID_PARAMS, "Invalid params: encoding is not supported")
        return subscription

    # -- notifications ----------------------------------------------------------------------

    def _wake_all_threadsafe(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with suppress(RuntimeError):  # the loop closed between the check and the call
                loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for connection in self._connections:
            connection.wake.set()

    async def _notify(self, connection: _Connection) -> None:
        assert self._responsive is not None
        while not connection.closed:
            await connection.wake.wait()
            connection.wake.clear()
            await self._responsive.wait()
            for subscription in list(connection.subscriptions.values()):
                for body in self._due(subscription):
                    await connection.send_json(body)

    def _due(self, subscription: _Subscription) -> list[dict[str, Any]]:
        """Notifications that became due for ``subscription``; moves its position on."""
        bodies = []
        for landed in self.ledger.history(subscription.next_position):
            if not self.ledger.settled(landed, subscription.commitment):
                break  # history is in slot order: nothing later is settled either
            subscription.next_position += 1
            if subscription.concerns(landed):
                bodies.append(self._notification(subscription, landed))
        return bodies

    @staticmethod
    def _notification(subscription: _Subscription, landed: LandedTransaction) -> dict[str, Any]:
        if subscription.kind == "logs":
            method = "logsNotification"
            value: Any = {
                "signature": str(landed.signature),
                "err": landed.err,
                "logs": landed.logs,
            }
        else:
            assert subscription.account is not None
            method = "accountNotification"
            account = landed.post_accounts.get(subscription.account)
            value = account_json(account, subscription.encoding) or {
                "data": ["", "base58"],
                "executable": False,
                "lamports": 0,
                "owner": "11111111111111111111111111111111",
                "rentEpoch": 0,
                "space": 0,
            }
        return {
            "jsonrpc": "2.0",
            "method": method,
            "params": {
                "result": {"context": {"slot": landed.slot}, "value": value},
                "subscription": subscription.id,
            },
        }


def _parse_pubkey(text: Any) -> Pubkey:
    try:
        return Pubkey.from_string(text)
    except (TypeError, ValueError) as exc:
        raise RpcError(INVALID_PARAMS, "Invalid Request: Invalid pubkey provided") from exc


def _error(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": error.to_json(), "id": request_id}


async def _respond(send: Send, status: int, body: Any) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
