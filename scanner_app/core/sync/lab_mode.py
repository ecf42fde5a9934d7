"""Lab mode: the one switch that lets a scanner talk to a plain-http server on the network.

A gate sends its device token and every scanned code to its server, and takes verify keys from
it: over plain http off this computer, anyone on the venue network reads them and can answer as
the server. So a scanner refuses such an address (``shared.enrollment_link.insecure_server``)
unless this process runs with ``GATEHOUSE_SCANNER_ALLOW_INSECURE_HTTP=1`` — set by hand for a
lab, or by ``gatehouse-scanner --insecure-http-for-lab``. The app's status bar and the command
line then show ``WARNING`` on every start.

Light on purpose (no httpx): the command line reads it before it imports anything else.
"""

from __future__ import annotations

import os
from typing import Final

ENV_VAR: Final = "GATEHOUSE_SCANNER_ALLOW_INSECURE_HTTP"
WARNING: Final = (
    "LAB MODE: this scanner accepts insecure http:// servers. Never use it at a real gate."
)


def insecure_http_allowed() -> bool:
    """True when this process was told to accept plain-http servers (a lab only)."""
    return os.environ.get(ENV_VAR, "").strip() == "1"


def allow_insecure_http() -> None:
    """Turn lab mode on for this process and the programs it starts."""
    os.environ[ENV_VAR] = "1"
