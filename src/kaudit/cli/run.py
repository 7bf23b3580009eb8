"""`kaudit run` and `kaudit gateway`: the long-running services (`kaudit.service`)."""

from __future__ import annotations

import click

from kaudit.cli.common import config_option, handle_errors, load
from kaudit.cli.reload import reloading
from kaudit.config import Config


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
    if once:
        run_service(config, once=once, say=_say)
        return
    with reloading(lambda: load(config_path), config, "kaudit run"):
        run_service(config, once=once, say=_say)


@click.command()
@click.option("--upstream", help="The cluster's bootstrap servers, HOST:PORT[,HOST:PORT...].")
@click.option("--listen", help="Where clients connect, HOST:PORT (brokers follow on PORT+1+id).")
@config_option
@handle_errors
def gateway(upstream: str | None, listen: str | None, config_path: str | None) -> None:
    """Run the audit gateway: a Kafka proxy that audits every request (KIP-567)."""
    from kaudit.service import gateway_config, serve_gateway

    def load_again() -> Config:
        return gateway_config(load(config_path), upstream=upstream, listen=listen)

    config = load_again()
    with reloading(load_again, config, "kaudit gateway"):
        serve_gateway(config, _say)
