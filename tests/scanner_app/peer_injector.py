"""A peer that pushes whatever it is given (test_peer_gates.py's attacker).

Run inside a namespace of the venue network with a certified device's data folder: it joins the
other gates as that device (a real ``PeerNode``, so the handshake is the real one), waits until
it hears ``--expect`` of them, then pushes each envelope of ``--envelopes`` (one hex text a line)
as if it were its own, in order, and prints one JSON line: ``{"heard": n, "pushed": k}``.
The gates must judge each envelope themselves: the node's ``announce`` does not check.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from scanner_app.core.peers import PeerConfig, PeerNode
from scanner_app.core.store import LocalStore


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--envelopes", type=Path, required=True)
    parser.add_argument("--peer", action="append", default=[])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--wait", type=float, default=30.0)
    args = parser.parse_args()
    envelopes = [
        bytes.fromhex(line) for line in args.envelopes.read_text().splitlines() if line.strip()
    ]
    store = LocalStore.open(args.data_dir)
    node = PeerNode(
        store, PeerConfig(port=args.port, static_peers=tuple(args.peer), discover=False)
    )
    node.start()
    try:
        deadline = time.monotonic() + args.wait
        while node.peers_heard() < args.expect and time.monotonic() < deadline:
            time.sleep(0.05)
        heard = node.peers_heard()
        for envelope in envelopes:
            node.announce(envelope)
            time.sleep(0.05)
        time.sleep(1.0)  # let the last pushes leave before the node closes
        print(json.dumps({"heard": heard, "pushed": len(envelopes)}), flush=True)
    finally:
        node.stop()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
