"""`kaudit alerts test` (replay a log against the rules, sending nothing) and `kaudit
alerts status` (each rule's state and last alert, the notification log)."""

from __future__ import annotations

import click
import orjson

from kaudit.cli.common import config_option, handle_errors, load, when_arg
from kaudit.errors import UsageError


@click.group()
def alerts() -> None:
    """Test alert rules and inspect their state."""


@alerts.command("test")
@click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="kaudit YAML configuration file with the rules (audit.alerts).",
)
@click.option(
    "--log",
    "source",
    help="What to replay: a log or data directory, a .jsonl/.jsonl.gz file, - (stdin) or "
    "kafka://host:port/topic (default: the configured log).",
)
@click.option("--since", help="Only events from this time on (ISO 8601, or 30m, 24h, 7d back).")
@handle_errors
def alerts_test(config_path: str, source: str | None, since: str | None) -> None:
    """Replay a log against the rules without sending anything: one JSON line per alert
    that would have fired or resolved, with its time; a count on stderr."""
    from kaudit.alerts import replay, would_fire
    from kaudit.alerts.ruleset import compile_rules
    from kaudit.config.alerts import alert_warnings
    from kaudit.reading import configured_source, iter_lines

    config = load(config_path)
    if not compile_rules(config.audit.alerts, config.audit.builtin_alerts):
        raise UsageError(f"{config_path}: no alert rules (audit.alerts) are enabled")
    for warning in alert_warnings(config.audit.alerts, config.audit.builtin_alerts):
        click.echo(f"warning: {warning}", err=True)
    lines = iter_lines(source if source is not None else configured_source(config))
    fired = resolved = 0
    for alert in replay(config, lines, when_arg(since)):
        click.echo(orjson.dumps(would_fire(alert)).decode())
        if alert.status == "resolved":
            resolved += 1
        else:
            fired += 1
    click.echo(f"{fired} alerts would have fired, {resolved} resolved", err=True)


@alerts.command("status")
@config_option
@handle_errors
def alerts_status(config_path: str | None) -> None:
    """Each rule's state (firing groups, last alert) and the latest notifications (JSON)."""
    from kaudit.alerts.status import alert_status

    click.echo(orjson.dumps(alert_status(load(config_path)), option=orjson.OPT_INDENT_2).decode())
