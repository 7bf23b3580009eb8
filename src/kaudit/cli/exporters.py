"""`kaudit exporters status`: each destination's cursor and lag (`kaudit.exporters.status`)."""

from __future__ import annotations

import click
import orjson

from kaudit.cli.common import config_option, handle_errors, load


@click.group()
def exporters() -> None:
    """Inspect exporters."""


@exporters.command("status")
@config_option
@handle_errors
def exporters_status(config_path: str | None) -> None:
    """Each destination's cursor and how many events it is behind (JSON)."""
    from kaudit.exporters.status import exporter_status

    rows = exporter_status(load(config_path))
    click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
