"""`kaudit check-config FILE`: is a configuration valid, and what does it configure."""

from __future__ import annotations

import click

from kaudit.cli.common import handle_errors
from kaudit.config import load_config


@click.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False))
@handle_errors
def check_config(file: str) -> None:
    """Validate a configuration file: exit 0 when valid, 2 listing every error when not."""
    config = load_config(file)
    if config.console is not None:
        from pathlib import Path

        from kaudit.console.rbac import load_rbac

        # A Kpow RBAC file is read now, so its errors are reported like the file's own.
        rbac = load_rbac(config.console, Path(file).resolve().parent)
    destinations = config.audit.all_destinations
    click.echo(f"{file}: valid")
    click.echo(
        f"  data_dir: {config.data_dir} (log: {config.audit.log.type}, "
        f"failure_policy: {config.audit.failure_policy})"
    )
    for d in destinations:
        click.echo(f"  destination: {d.display_name} (format {d.format})")
    if config.console is not None:
        click.echo(
            f"  console: {config.console.listen}, clusters "
            f"{', '.join(c.name for c in config.console.clusters)}, "
            f"{len(config.console.users)} local users, {len(rbac.policy.policies)} RBAC policies"
        )
