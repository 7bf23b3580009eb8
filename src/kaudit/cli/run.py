"""`kaudit run` and `kaudit gateway`: the long-running services (`kaudit.service`)."""

from __future__ import annotations

from typing import Any

import click

from kaudit.cli.common import (
    config_option,
    handle_errors,
    load,
    say_what_runs,
    stop_on_signals,
)
from kaudit.cli.reload import reloading
from kaudit.config import Config
from kaudit.errors import UsageError
from kaudit.ops.logs import announce


def _say(message: str) -> None:
    announce(message, event="kaudit.status")


@click.command()
@config_option
@click.option("--once", is_flag=True, help="Deliver what is in the log now, then exit.")
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="With --once: retries of a failing batch (with backoff) before giving up on its "
    "destination; then it exits 1 saying what was not delivered, its cursor kept there.",
)
@handle_errors
def run(config_path: str | None, once: bool, retries: int) -> None:
    """Run what the configuration asks for: the gateway (`gateway:`) and the exporters
    (each destination with its own cursor); and apply audit.retention: when starting and
    hourly, or once at the end with --once."""
    from kaudit.service import run as run_service

    config = load(config_path)
    say_what_runs("run", config_path, config)
    if once:
        run_service(config, once=once, say=_say, retries=retries)
        return
    with reloading(lambda: load(config_path), config, "kaudit run"):
        run_service(config, once=once, say=_say, retries=retries)


def gateway_overrides(
    upstream: str | None, listen: str | None, config_path: str | None
) -> dict[str, dict[str, Any]]:
    """The `gateway:` keys given on the command line; UsageError when no upstream is
    given there nor can be in a file."""
    if not upstream and not config_path:
        raise UsageError("no upstream: pass --upstream HOST:PORT or set gateway.upstream")
    given = {key: value for key, value in (("upstream", upstream), ("listen", listen)) if value}
    return {"gateway": given}


@click.command()
@click.option("--upstream", help="The cluster's bootstrap servers, HOST:PORT[,HOST:PORT...].")
@click.option("--listen", help="Where clients connect, HOST:PORT (brokers follow on PORT+1+id).")
@config_option
@handle_errors
def gateway(upstream: str | None, listen: str | None, config_path: str | None) -> None:
    """Run the audit gateway: a Kafka proxy that audits every request (KIP-567).

    --upstream and --listen override or fill in gateway.upstream and gateway.listen of
    the file given with -c; every other gateway setting lives there."""
    from kaudit.service import serve_gateway

    def load_again() -> Config:
        return load(config_path, gateway_overrides(upstream, listen, config_path))

    config = load_again()
    say_what_runs("gateway", config_path, config)
    with (
        stop_on_signals() as stop,  # one that comes before the gateway serves stops it too
        reloading(load_again, config, "kaudit gateway"),
    ):
        serve_gateway(config, _say, stop=stop)
    _say("kaudit gateway: stopped")  # after its log was closed, with the final checkpoint
