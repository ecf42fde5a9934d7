"""The scanners' sync protocol: offline scan uploads and the changes feed."""
