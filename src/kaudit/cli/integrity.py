"""`kaudit rotate-integrity`: change a local log's integrity settings on purpose, the
change recorded beside the log (`kaudit.integrity.settings`)."""

from __future__ import annotations

import click

from kaudit.cli.common import config_option, handle_errors, load


@click.command("rotate-integrity")
@config_option
@handle_errors
def rotate_integrity(config_path: str | None) -> None:
    """Let writers with the configuration's `audit.integrity` settings append to a log
    written with others: the change (from, to, the sequence number it starts at, when)
    is recorded in <data_dir>/log/integrity.json. No writer may be running."""
    from kaudit.integrity.settings import describe, rotate
    from kaudit.log.segments import SegmentLog

    config = load(config_path)
    log = SegmentLog(config.log_dir)  # takes the writer's lock: none other runs meanwhile
    try:
        change = rotate(config.log_dir, config.audit.integrity, next_sequence=log.next_sequence)
    finally:
        log.close()
    click.echo(
        f"kaudit: {config.log_dir}: integrity from {describe(change['from'] or {})} to "
        f"{describe(change['to'])} from sequence {change['from_sequence']} on (recorded in "
        "integrity.json)",
        err=True,
    )
