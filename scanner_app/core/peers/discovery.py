"""Gates of one event find each other with no configuration: mDNS / DNS-SD (python-zeroconf).

Each node advertises ``_gatehouse-gate._tcp.local.`` on its port, with TXT ``p`` (protocol),
``e`` (the event tag, hex) and ``d`` (device id, hex) — no names, no gate, nothing personal —
and browses the same type; a service of our event tag and another device id is handed to the
node to dial. The TXT says who a service claims to be; the node believes only the HELLO's
certificate and proof, so a false advertisement costs a refused connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Final

import ifaddr
from zeroconf import DNSQuestionType, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from shared.peers import PROTOCOL

log = logging.getLogger(__name__)

SERVICE_TYPE: Final = "_gatehouse-gate._tcp.local."
RESOLVE_TIMEOUT_MS: Final = 3000
RESOLVE_ATTEMPTS: Final = 5


def _addresses() -> list[str]:
    """This machine's IPv4 addresses, loopback last (a peer on another machine cannot use it)."""
    found = [
        str(ip.ip)
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if isinstance(ip.ip, str)
    ]
    return sorted(set(found), key=lambda address: address.startswith("127."))


class Discovery:
    """Advertise this node and report the other nodes of its event (on the node's loop)."""

    def __init__(
        self,
        *,
        port: int,
        listen_host: str,
        device_id: uuid.UUID,
        tag: bytes,
        found: Callable[[tuple[str, int]], None],
    ) -> None:
        self.port = port
        #: Advertised: the one address listened on, or every address of this machine.
        self.addresses = _addresses() if listen_host in ("", "0.0.0.0") else [listen_host]  # noqa: S104
        self.device_id = device_id
        self.tag = tag
        self.found = found
        self._zeroconf: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._resolving: set[asyncio.Task[None]] = set()
        self._announcing: Awaitable[object] | None = None

    async def start(self) -> None:
        """Raises ``OSError`` where multicast cannot be used."""
        azc = AsyncZeroconf(ip_version=IPVersion.V4Only)
        self._zeroconf = azc
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"gate-{self.device_id.hex}.{SERVICE_TYPE}",
            port=self.port,
            parsed_addresses=self.addresses,
            properties={"p": str(PROTOCOL), "e": self.tag.hex(), "d": self.device_id.hex},
        )
        # Answers the announcement broadcasts' task, which runs on (awaited or cancelled in stop).
        self._announcing = await azc.async_register_service(self._info)
        self._browser = AsyncServiceBrowser(azc.zeroconf, SERVICE_TYPE, handlers=[self._changed])

    async def stop(self) -> None:
        for task in list(self._resolving):
            task.cancel()
        announcing = self._announcing
        if isinstance(announcing, asyncio.Future):
            announcing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await announcing
        azc = self._zeroconf
        self._zeroconf = None
        if azc is None:
            return
        with contextlib.suppress(Exception):  # shutting down: nothing left to tell anyone
            if self._browser is not None:
                await self._browser.async_cancel()
            if self._info is not None:
                goodbye = await azc.async_unregister_service(self._info)
                async with asyncio.timeout(3):  # the goodbye broadcasts (under a second)
                    await goodbye
        await azc.async_close()

    def _changed(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            return  # the connection ends by itself; the dialer keeps trying its address
        task = asyncio.ensure_future(self._resolve(zeroconf, service_type, name))
        self._resolving.add(task)
        task.add_done_callback(self._resolving.discard)

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        info = AsyncServiceInfo(service_type, name)
        # Multicast answers (QM): a unicast answer reaches only one of the processes that share
        # port 5353 on a machine (two gates on one laptop, the tests). Tried a few times: an
        # answer lost on a busy Wi-Fi would otherwise wait for the record's next refresh.
        for attempt in range(RESOLVE_ATTEMPTS):
            if await info.async_request(
                zeroconf, RESOLVE_TIMEOUT_MS, question_type=DNSQuestionType.QM
            ):
                break
            await asyncio.sleep(attempt + 1)
        else:
            return
        properties = info.properties or {}
        if (
            properties.get(b"p") != str(PROTOCOL).encode()
            or properties.get(b"e") != self.tag.hex().encode()
            or properties.get(b"d") == self.device_id.hex.encode()
            or not info.port
        ):
            return
        addresses = info.parsed_addresses(IPVersion.V4Only)
        if addresses:
            self.found((addresses[0], info.port))
