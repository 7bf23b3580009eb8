"""Looking at what was recorded: `kaudit search` (`kaudit.store`), `kaudit report`
(`kaudit.reports.compliance`) and `kaudit retention apply` (`kaudit.store.retention`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import click
import orjson

from kaudit.cli.common import config_option, handle_errors, load
from kaudit.errors import SearchError

P = ParamSpec("P")
R = TypeVar("R")

_FILTER_OPTIONS = [
    click.option(
        "--since",
        help="From this time: ISO 8601 (2026-11-01, 2026-11-01T10:00Z) "
        "or back from now (30m, 24h, 7d).",
    ),
    click.option("--until", help="Before this time (same forms as --since)."),
    click.option("--type", "type_glob", help="Event type or glob (topic.deleted, 'acl.*')."),
    click.option("--actor", help="Actor id (User:alice) or name (alice); globs allowed."),
    click.option("--resource", help="type:id (topic:orders) or id (orders); globs allowed."),
    click.option("--result", type=click.Choice(["success", "failure", "denied", "unknown"])),
    click.option("--cluster", help="Cluster id (context.cluster_id); globs allowed."),
    click.option(
        "--source",
        "source_filter",
        help="Where it was recorded (context.source: gateway, console, sdk, ingest); globs.",
    ),
    click.option("--query", "-q", help="Free text: every word must occur (word* for a prefix)."),
]


def _filter_options(fn: Callable[P, R]) -> Callable[P, R]:
    for option in reversed(_FILTER_OPTIONS):
        fn = option(fn)
    return fn


@click.command()
@click.argument("source", required=False)
@config_option
@_filter_options
@click.option(
    "--format",
    "-o",
    "fmt",
    type=click.Choice(["table", "json", "jsonl", "csv"]),
    help="Output (default: table on a terminal, else jsonl).",
)
@click.option(
    "--count-by",
    type=click.Choice(
        ["type", "category", "actor", "resource", "result", "cluster", "day", "source", "hour"]
    ),
    help="Count matching events by this instead of listing them.",
)
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="At most this many events (0: all).",
)
@handle_errors
def search(
    source: str | None,
    config_path: str | None,
    since: str | None,
    until: str | None,
    type_glob: str | None,
    actor: str | None,
    resource: str | None,
    result: str | None,
    cluster: str | None,
    source_filter: str | None,
    query: str | None,
    fmt: str | None,
    count_by: str | None,
    limit: int,
) -> None:
    """Find audit events, newest first, or count them (--count-by).

    Searches SOURCE when given: a search index file, a log or data directory, a JSON
    Lines file, - or kafka://… (as `kaudit tail` reads them, by scanning: slower, same
    answers), or a Parquet export (s3://bucket/prefix or its local folder). Without it:
    the index of the configured `store` destination, else the configured log.
    """
    from kaudit.store.output import write_search
    from kaudit.store.query import parse_filter

    try:
        flt = parse_filter(
            since=since,
            until=until,
            type=type_glob,
            actor=actor,
            resource=resource,
            result=result,
            cluster=cluster,
            query=query,
            source=source_filter,
        )
    except SearchError as exc:
        raise click.UsageError(str(exc)) from None
    fmt = fmt or ("table" if sys.stdout.isatty() else "jsonl")
    out = sys.stdout.buffer
    write_search(source, load(config_path), flt, out, fmt=fmt, count_by=count_by, limit=limit)


@click.command()
@click.argument("source", required=False)
@config_option
@click.option("--period", help="The month, YYYY-MM (default: last month).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "html", "csv", "json"]),
    default="md",
    show_default=True,
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not stdout."
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Listed denied events and changes (newest); counts are always complete.",
)
@handle_errors
def report(
    source: str | None,
    config_path: str | None,
    period: str | None,
    fmt: str,
    out: Path | None,
    max_rows: int,
) -> None:
    """The compliance report of a month: operations by category and result, denied
    access, ACL and config changes, top actors, events per day, integrity status.

    Reads SOURCE, the configured index or the configured log, as `kaudit search` does.
    """
    from kaudit.files import open_private
    from kaudit.reports.compliance import previous_month, report_on
    from kaudit.timeparse import parse_period

    period = period or previous_month()
    try:
        parse_period(period)
    except SearchError as exc:
        raise click.UsageError(str(exc)) from None
    data = report_on(source, load(config_path), period, fmt=fmt, max_rows=max_rows)
    if out is not None:
        with open_private(out) as f:  # audit data: 0640, like the log it comes from
            f.write(data)
        click.echo(f"wrote {out}", err=True)
    else:
        sys.stdout.buffer.write(data)


@click.group()
def retention() -> None:
    """How long audit data is kept (audit.retention)."""


@retention.command("apply")
@config_option
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@handle_errors
def retention_apply(config_path: str | None, dry_run: bool) -> None:
    """Remove log segments, index entries and rotated export files older than
    max_days (never anything younger than min_days); prints what went, as JSON."""
    from kaudit.store.retention import apply_retention

    done = apply_retention(load(config_path), dry_run=dry_run)
    click.echo(orjson.dumps(done.to_dict(), option=orjson.OPT_INDENT_2).decode())
