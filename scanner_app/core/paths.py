"""Where the scanner keeps its data: the platform's per-user data folder, unless told otherwise
(``--data-dir``, or ``GATEHOUSE_SCANNER_DATA`` for portable installs and tests)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

ENV_VAR = "GATEHOUSE_SCANNER_DATA"


def data_dir(override: Path | None = None) -> Path:
    if override is not None:
        return override
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return Path(from_env)
    return Path(platformdirs.user_data_dir("gatehouse-scanner", "Gatehouse"))
