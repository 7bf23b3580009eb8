"""The `kaudit` command group: every command of the command line, registered here."""

from __future__ import annotations

import logging

import click

from kaudit.cli.check_config import check_config
from kaudit.cli.console import console
from kaudit.cli.demo import demo
from kaudit.cli.events import emit, generate, tail
from kaudit.cli.exporters import exporters
from kaudit.cli.group import EPILOG, KauditGroup
from kaudit.cli.init import init
from kaudit.cli.integrity import rotate_integrity
from kaudit.cli.keys import keys
from kaudit.cli.local_kafka import local_kafka
from kaudit.cli.run import gateway, run
from kaudit.cli.search import report, retention, search
from kaudit.cli.verify import prove, verify, verify_proof_command
from kaudit.config.secrets import MaskSecrets


@click.group(
    cls=KauditGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG
)
@click.version_option(None, "-V", "--version", package_name="kaudit", message="kaudit %(version)s")
def main() -> None:
    """kaudit: a tamper-evident audit trail for Apache Kafka."""
    _log_to_stderr()


def _log_to_stderr() -> None:
    """Warnings and errors on stderr, as Python's last-resort handler prints them, with
    every secret of the configuration masked."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(MaskSecrets())
        root.addHandler(handler)


for _command in (
    check_config,
    console,
    demo,
    emit,
    exporters,
    gateway,
    generate,
    init,
    keys,
    local_kafka,
    prove,
    report,
    retention,
    rotate_integrity,
    run,
    search,
    tail,
    verify,
    verify_proof_command,
):
    main.add_command(_command)
