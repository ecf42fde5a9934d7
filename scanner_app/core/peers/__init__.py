"""The gate's peer node (issue 18): admissions shared between the gates of one event over the
venue's network, for when the server cannot be reached (docs/peer-sync.md)."""

from scanner_app.core.peers.node import DEFAULT_PORT, PeerConfig, PeerNode

__all__ = ["DEFAULT_PORT", "PeerConfig", "PeerNode"]
