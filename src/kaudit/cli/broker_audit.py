"""`kaudit broker-audit`: record what kaudit's broker auditor plugin decided, and report
requests that went around the gateway (`kaudit.brokeraudit`)."""

from __future__ import annotations

import threading

import click

from kaudit.cli.common import config_option, handle_errors, load
from kaudit.config.model import KafkaLog


@click.command("broker-audit")
@config_option
@click.option("--once", is_flag=True, help="Read the decision topic up to its end, then exit.")
@handle_errors
def broker_audit(config_path: str | None, once: bool) -> None:
    """Read the broker auditor's decision topic (`broker_auditor:`) into the audit log,
    as a source of its own (`context.source: broker`), and record
    `access.bypassed_gateway` for client requests no gateway recorded."""
    import signal

    from kaudit.brokeraudit.service import run_broker_audit
    from kaudit.session import AuditSession

    config = load(config_path)
    if isinstance(config.audit.log, KafkaLog):
        # Its own signed stream on the log topic: a writer's stream id and sequence live
        # in its data directory, so this process must not share the gateway's.
        config = config.model_copy(update={"data_dir": str(config.data_path / "broker-audit")})
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with AuditSession(config, source="broker") as session:
        read, bypasses = run_broker_audit(
            config, session.recorder, stop, once=once, say=lambda m: click.echo(m, err=True)
        )
    click.echo(f"broker-audit: {read} decision records, {bypasses} gateway bypasses", err=True)
