"""Writing and reading events: `kaudit generate` (synthetic traffic, `kaudit.generate`),
`kaudit emit` (one event, `kaudit.session`) and `kaudit tail` (`kaudit.reading`)."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from typing import Any

import click
import orjson

from kaudit.cli.common import (
    EXIT_INTERRUPTED,
    config_option,
    duration_arg,
    handle_errors,
    load,
    plural,
    say_what_runs,
    stop_on_signals,
)
from kaudit.events.formats import FORMATS


@click.command()
@config_option
@click.option("--count", "-n", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option(
    "--spread",
    default="0s",
    show_default=True,
    help="Spread event times over this window ending now (e.g. 7d, 24h, 30m, 0s).",
)
@handle_errors
def generate(config_path: str | None, count: int, seed: int, spread: str) -> None:
    """Write COUNT realistic synthetic events through the recorder.

    SIGINT or SIGTERM stops it early: the events recorded so far stay, with the final
    checkpoint, and it exits 130."""
    from kaudit.generate import generate as run_generate
    from kaudit.session import describe_log
    from kaudit.session import open as open_session

    spread_s = duration_arg(spread)
    config = load(config_path)
    started = time.perf_counter()
    recorded = 0
    with stop_on_signals() as stop:
        say_what_runs("generate", config_path, config)
        with (
            open_session(config) as session,
            click.progressbar(length=count, label="recording", file=sys.stderr) as bar,
        ):

            def progress(n: int) -> None:
                nonlocal recorded
                recorded += n
                bar.update(n)
                if stop.is_set():
                    raise _Stopped

            with contextlib.suppress(_Stopped):
                run_generate(session, count, seed=seed, spread_seconds=spread_s, progress=progress)
            session.flush()
            dropped = session.recorder.metrics()["kaudit_events_dropped_total"]
        # The session is closed: its final checkpoint is written.
        interrupted = stop.is_set() and recorded < count
    elapsed = time.perf_counter() - started
    click.echo(
        ("stopped: " if interrupted else "")
        + f"recorded {plural(recorded, 'event')} in {elapsed:.2f}s into "
        + describe_log(config)
        + (f" ({dropped} dropped)" if dropped else ""),
        err=True,
    )
    if interrupted:
        sys.exit(EXIT_INTERRUPTED)


class _Stopped(Exception):
    """SIGINT/SIGTERM came: generating ends at the next progress report."""


@click.command()
@click.argument("source", required=False)
@config_option
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they come.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="native", show_default=True)
@click.option("--type", "type_glob", help="Only event types matching this glob (e.g. 'acl.*').")
@click.option("--lines", "-n", type=click.IntRange(min=0), help="Only the last N events.")
@handle_errors
def tail(
    source: str | None,
    config_path: str | None,
    follow: bool,
    fmt: str,
    type_glob: str | None,
    lines: int | None,
) -> None:
    """Print audit events as JSON Lines (jq-friendly).

    SOURCE is a log directory, a data directory, a JSON Lines file (.gz too), - for
    stdin, or kafka://[user[:password]@]host:port/topic[?mechanism=M&protocol=P] (events
    repeated by at-least-once delivery are shown once); without it, the log of the
    configuration given with -c (or ./kaudit-data).
    """
    from kaudit.reading import tail_lines, write_lines

    config = load(config_path) if config_path or source is None else None
    stream = tail_lines(source, config, follow=follow, type_glob=type_glob, last=lines)
    # Following ends only by Ctrl-C or SIGTERM: that is its normal end, so quietly, exit 0.
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, signal.default_int_handler) for sig in stops}
    try:
        write_lines(stream, fmt, sys.stdout.buffer)
    except KeyboardInterrupt:
        with contextlib.suppress(BrokenPipeError):
            sys.stdout.flush()
        if not follow:
            sys.exit(EXIT_INTERRUPTED)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command()
@click.argument("event_type")
@config_option
@click.option("--actor", required=True, help="Who: a principal or user id.")
@click.option("--resource", required=True, help="What: TYPE:ID, e.g. backup:nightly-42.")
@click.option(
    "--result",
    type=click.Choice(["success", "failure", "denied", "unknown"]),
    default="success",
    show_default=True,
)
@click.option("--operation", help="The action's operation (default: from the event type).")
@click.option("--details", help="Details as a JSON object.")
@handle_errors
def emit(
    event_type: str,
    config_path: str | None,
    actor: str,
    resource: str,
    result: str,
    operation: str | None,
    details: str | None,
) -> None:
    """Record one event (for shell scripts, e.g. a backup job)."""
    from kaudit.session import open as open_session

    parsed: Any = None
    if details:
        try:
            parsed = orjson.loads(details)
        except orjson.JSONDecodeError as exc:
            raise click.BadParameter(f"--details is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise click.BadParameter("--details must be a JSON object")
    try:
        with open_session(load(config_path), source="cli") as session:
            session.emit(
                event_type,
                actor=actor,
                resource=resource,
                result=result,
                action=operation,
                details=parsed,
                durable=True,
            )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
