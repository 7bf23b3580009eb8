"""The `kaudit` command group: every command of the command line, registered here."""

from __future__ import annotations

import logging

import click

from kaudit.cli.alerts import alerts
from kaudit.cli.broker_audit import broker_audit
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
from kaudit.cli.reload import reload_command
from kaudit.cli.run import gateway, run
from kaudit.cli.search import report, retention, search
from kaudit.cli.verify import prove, verify, verify_proof_command
from kaudit.ops.logs import LOG_FORMATS
from kaudit.ops.logs import configure as configure_logging


@click.group(
    cls=KauditGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG
)
@click.version_option(None, "-V", "--version", package_name="kaudit", message="kaudit %(version)s")
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    envvar="KAUDIT_LOG_FORMAT",
    show_default=True,
    help="kaudit's own log lines on stderr: text, or one JSON object per line "
    "(env KAUDIT_LOG_FORMAT).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    envvar="KAUDIT_LOG_LEVEL",
    show_default=True,
    help="The least severe log lines shown (env KAUDIT_LOG_LEVEL).",
)
def main(log_format: str, log_level: str) -> None:
    """kaudit: a tamper-evident audit trail for Apache Kafka."""
    _log_to_stderr(log_format, log_level)


def _log_to_stderr(log_format: str, log_level: str) -> None:
    """Log lines on stderr (kaudit.ops.logs), with every secret of the configuration
    masked; by default warnings and errors as text, as Python's last-resort handler
    prints them, and nothing of ours where a harness handles log records already."""
    if logging.getLogger().handlers and (log_format, log_level) == ("text", "warning"):
        return
    configure_logging(log_format, log_level)


for _command in (
    alerts,
    broker_audit,
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
    reload_command,
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
