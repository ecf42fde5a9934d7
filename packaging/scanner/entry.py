"""The packaged scanner's entry point: ``gatehouse-scanner`` as pip installs it (scanner_app.cli).

``--self-test`` is answered here too, before the command line and the GUI are set up, so that
a build whose window cannot start still says which part is missing.
"""

from __future__ import annotations

import sys


def run() -> int:
    if sys.argv[1:2] == ["--self-test"]:
        from scanner_app.ui.selftest import run_self_test  # noqa: PLC0415 - before Qt and click

        return run_self_test()
    from scanner_app.cli import main  # noqa: PLC0415

    main()  # a click command: it exits with its own status
    return 0


if __name__ == "__main__":
    sys.exit(run())
