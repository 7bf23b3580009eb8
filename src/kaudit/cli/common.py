"""What every command shares: exit codes, turning kaudit's errors into a message and
an exit code, the `-c/--config` option, and times and durations read from options with
their errors as click's (a usage error, exit 2)."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from typing import NoReturn, ParamSpec, TypeVar

import click

from kaudit.config import Config, load_config
from kaudit.config.secrets import mask
from kaudit.errors import ConfigError, KauditError, TimeFormatError, UsageError
from kaudit.ops.logs import announce, json_lines
from kaudit.timeparse import parse_duration, parse_when

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILED = 1
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    if json_lines():
        announce(f"kaudit: error: {message}", event="kaudit.error", level=logging.ERROR)
    else:
        click.echo(f"kaudit: error: {mask(message)}", err=True)
    sys.exit(code)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn kaudit's errors into a message and an exit code instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            if json_lines():
                issues = [str(issue) for issue in exc.issues]
                announce(f"{exc.source}: invalid configuration", event="kaudit.config_invalid",
                         level=logging.ERROR, issues=issues)  # fmt: skip
                sys.exit(EXIT_USAGE)
            click.echo(f"{exc.source}: invalid configuration", err=True)
            for issue in exc.issues:
                click.echo(f"  {mask(str(issue))}", err=True)
            sys.exit(EXIT_USAGE)
        except UsageError as exc:
            fail(str(exc), EXIT_USAGE)
        except KauditError as exc:
            fail(str(exc))
        except BrokenPipeError:
            sys.stderr.close()  # the reader (head, jq) went away: not an error
            sys.exit(0)

    return wrapper


def load(config_path: str | None) -> Config:
    """The configuration in `config_path`, or the built-in defaults without one."""
    return load_config(config_path) if config_path else Config()


config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="kaudit YAML configuration file (default: built-in defaults).",
)


def duration_arg(text: str) -> float:
    """Seconds in an option's value (`timeparse.parse_duration`)."""
    try:
        return parse_duration(text)
    except TimeFormatError as exc:
        raise click.BadParameter(str(exc)) from None


def when_arg(text: str | None) -> datetime | None:
    """The time in a `kaudit verify --since/--until` value (`timeparse.parse_when`)."""
    if text is None:
        return None
    try:
        return parse_when(text)
    except TimeFormatError as exc:
        raise click.BadParameter(str(exc)) from None
