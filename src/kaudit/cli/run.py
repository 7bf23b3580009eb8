"""`kaudit run` and `kaudit gateway`: the long-running services (`kaudit.service`)."""

from __future__ import annotations

import click

from kaudit.cli.common import (
    config_option,
    handle_errors,
    load,
    say_what_runs,
    stop_on_signals,
)


def _say(message: str) -> None:
    click.echo(message, err=True)


@click.command()
@config_option
@click.option("--once", is_flag=True, help="Deliver what is in the log now, then exit.")
@handle_errors
def run(config_path: str | None, once: bool) -> None:
    """Run what the configuration asks for: the gateway (`gateway:`) and the exporters
    (each destination with its own cursor); and apply audit.retention: when starting and
    hourly, or once at the end with --once."""
    from kaudit.service import run as run_service

    config = load(config_path)
    say_what_runs("run", config_path, config)
    run_service(config, once=once, say=_say)


@click.command()
@click.option("--upstream", help="The cluster's bootstrap servers, HOST:PORT[,HOST:PORT...].")
@click.option("--listen", help="Where clients connect, HOST:PORT (brokers follow on PORT+1+id).")
@config_option
@handle_errors
def gateway(upstream: str | None, listen: str | None, config_path: str | None) -> None:
    """Run the audit gateway: a Kafka proxy that audits every request (KIP-567)."""
    from kaudit.service import gateway_config, serve_gateway

    config = gateway_config(load(config_path), upstream=upstream, listen=listen)
    say_what_runs("gateway", config_path, config)
    with stop_on_signals() as stop:  # one that comes before the gateway serves stops it too
        serve_gateway(config, _say, stop=stop)
    _say("kaudit gateway: stopped")  # after its log was closed, with the final checkpoint
