"""``gatehouse-server``: the sync server's command line."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gatehouse")
def main() -> None:
    """Gatehouse sync server: tickets, check-in and offline sync for the gate scanners."""
