"""`kaudit demo`: kaudit end to end on this machine (`kaudit.demo`)."""

from __future__ import annotations

from pathlib import Path

import click

from kaudit.cli.common import handle_errors


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("kaudit-demo"),
    show_default=True,
)
@click.option("--count", type=click.IntRange(min=1), default=5000, show_default=True)
@click.option(
    "--kafka/--no-kafka",
    default=True,
    show_default=True,
    help="Also record into a local Apache Kafka's __oprtr_audit_log topic.",
)
@click.option(
    "--console/--no-console",
    default=True,
    show_default=True,
    help="Then serve the web console on the local Kafka until Ctrl-C (needs --kafka).",
)
@handle_errors
def demo(directory: Path, count: int, kafka: bool, console: bool) -> None:
    """Record a realistic week of Kafka audit events into a local log and show how to
    look at them."""
    from kaudit.demo import run_demo

    run_demo(directory, count, kafka=kafka, console=console)
