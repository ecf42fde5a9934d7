"""A small venue network made of Linux network namespaces, for peer-sync tests.

``VenueNetwork.make(n)`` makes ``n`` namespaces (one per gate), joined by a bridge that lives in
a namespace of its own (the host's own network is never touched), each gate at 10.A.B.N/24 on
``eth0`` with multicast on and a route for 224.0.0.0/4 (mDNS). Nothing routes to the host: a
sync server on the host's loopback cannot be reached from a gate.

Names carry the creating process's id (``gh-<pid>-<tag>-...``): ``remove_leftovers`` deletes
those of processes that no longer run (a crashed run), never a running test's. ``close``
deletes everything made (deleting a namespace deletes the veth ends in it), also after a
failure.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "gh-"
_NAME = re.compile(r"^gh-(\d+)-[0-9a-f]+-\w+$")


class NamespacesUnavailable(Exception):
    """Network namespaces cannot be made here (not root, no ``ip``, a container without the
    capability)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=20,
    )


def namespaces() -> list[str]:
    try:
        listed = _ip("netns", "list", check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split()[0] for line in listed.splitlines() if line.strip()]


def remove_leftovers() -> list[str]:
    """Delete namespaces an earlier run of this test left behind (its process is gone)."""
    removed = []
    for name in namespaces():
        found = _NAME.match(name)
        if found is None:
            continue
        if Path(f"/proc/{found.group(1)}").exists():
            continue  # a running test's
        _ip("netns", "del", name, check=False)
        removed.append(name)
    return removed


@dataclass
class VenueNetwork:
    tag: str
    subnet: str  # "10.A.B"
    gates: list[str] = field(default_factory=list)
    bridge_ns: str = ""

    @classmethod
    def make(cls, count: int) -> VenueNetwork:
        """Raises ``NamespacesUnavailable`` where namespaces cannot be made (nothing is left
        behind)."""
        if os.geteuid() != 0:
            raise NamespacesUnavailable("not root")
        remove_leftovers()
        tag = f"{os.getpid()}-{secrets.token_hex(3)}"
        subnet = f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}"
        network = cls(tag=tag, subnet=subnet)
        try:
            network._build(count)
        except (OSError, subprocess.SubprocessError) as error:
            network.close()
            detail = getattr(error, "stderr", "") or str(error)
            raise NamespacesUnavailable(f"ip failed: {detail.strip()}") from error
        return network

    def _build(self, count: int) -> None:
        self.bridge_ns = f"{PREFIX}{self.tag}-br"
        _ip("netns", "add", self.bridge_ns)
        _ip("-n", self.bridge_ns, "link", "set", "lo", "up")
        _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        # Multicast goes to every port (mDNS queries have no IGMP join to snoop on).
        _ip("-n", self.bridge_ns, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
        _ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        for number in range(1, count + 1):
            gate_ns = f"{PREFIX}{self.tag}-{number}"
            _ip("netns", "add", gate_ns)
            self.gates.append(gate_ns)
            port = self.port_of(number)
            _ip(
                "-n", self.bridge_ns, "link", "add", port, "type", "veth",
                "peer", "name", "eth0", "netns", gate_ns,
            )  # fmt: skip
            _ip("-n", self.bridge_ns, "link", "set", port, "master", "br0")
            _ip("-n", self.bridge_ns, "link", "set", port, "up")
            _ip("-n", gate_ns, "link", "set", "lo", "up")
            _ip("-n", gate_ns, "addr", "add", f"{self.address(number)}/24", "dev", "eth0")
            _ip("-n", gate_ns, "link", "set", "eth0", "multicast", "on", "up")
            _ip("-n", gate_ns, "route", "add", "224.0.0.0/4", "dev", "eth0")

    @staticmethod
    def port_of(number: int) -> str:
        return f"p{number}"

    def address(self, number: int) -> str:
        return f"{self.subnet}.{number}"

    def namespace(self, number: int) -> str:
        return self.gates[number - 1]

    def cut(self, number: int) -> None:
        """Unplug gate ``number``'s cable (its bridge port goes down)."""
        _ip("-n", self.bridge_ns, "link", "set", self.port_of(number), "down")

    def rejoin(self, number: int) -> None:
        _ip("-n", self.bridge_ns, "link", "set", self.port_of(number), "up")

    def run_in(self, number: int, command: list[str]) -> list[str]:
        """``command`` run inside gate ``number``'s namespace."""
        return ["ip", "netns", "exec", self.namespace(number), *command]

    def close(self) -> None:
        for name in [*self.gates, self.bridge_ns]:
            if name:
                _ip("netns", "del", name, check=False)
        self.gates = []
        self.bridge_ns = ""
