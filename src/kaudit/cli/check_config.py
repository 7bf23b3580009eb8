"""`kaudit check-config FILE`: is a configuration valid, and what does it configure."""

from __future__ import annotations

import sys

import click

from kaudit.cli.common import EXIT_USAGE, handle_errors, plural
from kaudit.config import load_config
from kaudit.config.secrets import mask


@click.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--offline",
    is_flag=True,
    help="Check the file alone: not the environment variables, files, keys, "
    "certificates and directories it names.",
)
@handle_errors
def check_config(file: str, offline: bool) -> None:
    """Validate a configuration file, and that it can run here: the environment
    variables it names are set, its files exist with safe permissions, keys and
    certificates load, URLs are well formed (--offline: the file alone). Exit 0 when
    valid, 2 listing every error when not."""
    config = load_config(file)
    if not offline:
        from kaudit.reports.readiness import readiness_problems

        problems = readiness_problems(config)
        if problems:
            click.echo(f"kaudit: error: {file}: valid, but cannot run here", err=True)
            for problem in problems:
                click.echo(f"  {mask(str(problem))}", err=True)
            sys.exit(EXIT_USAGE)
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
            f"{plural(len(config.console.users), 'local user')}, "
            f"{plural(len(rbac.policy.policies), 'RBAC policy', 'RBAC policies')}"
        )
