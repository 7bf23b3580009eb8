"""What every command shares: exit codes, stopping on SIGINT/SIGTERM, turning kaudit's
errors into a message and an exit code, the `-c/--config` option, and times and
durations read from options with their errors as click's (a usage error, exit 2)."""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from kaudit.config import Config, load_config, load_config_text
from kaudit.config.secrets import mask
from kaudit.errors import ConfigError, KauditError, TimeFormatError, UsageError
from kaudit.ops.logs import announce, json_lines
from kaudit.timeparse import parse_duration, parse_when

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
"""A command stopped by SIGINT or SIGTERM before it finished what it was asked (the
shell's 128 + SIGINT); what was recorded until then is kept, with its final checkpoint.
Commands that run until stopped (`run`, `gateway`, `console`, `tail -f`) exit 0."""

EXIT_CODES_HELP = (
    "Exit codes: 0 done (or stopped by SIGINT/SIGTERM, for commands that run until "
    "stopped); 1 failed (verify: tampered); 2 usage or configuration error; "
    "130 interrupted before finishing."
)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT and SIGTERM (a terminal's Ctrl-C, systemd's stop, both sent to the whole
    process group) set the event instead of interrupting whatever runs, so that the
    command stops at a point of its choosing and closes the log cleanly; the previous
    handlers come back afterwards."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
            click.echo(f"kaudit: error: {exc.source}: invalid configuration", err=True)
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


def plural(n: int, word: str, words: str | None = None) -> str:
    """`n` and `word` as that many are called: 1 checkpoint, 2 checkpoints."""
    return f"{n} {word if n == 1 else (words or f'{word}s')}"


def say_what_runs(command: str, config_path: str | None, config: Config) -> None:
    """One line at the start of a command that writes or serves: which configuration,
    data directory and audit log it uses."""
    from kaudit.session import describe_log

    announce(
        f"kaudit {command}: config {config_path or '(built-in defaults)'}, data directory "
        f"{config.data_path}, log {describe_log(config)}",
        event="kaudit.status",
    )


def load(
    config_path: str | None, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> Config:
    """The configuration in `config_path`, or the built-in defaults without one, with
    `overrides` (command-line options, by section) replacing or filling in its keys."""
    if config_path:
        return load_config(config_path, overrides=overrides)
    return load_config_text("", "command line", overrides=overrides) if overrides else Config()


config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help=(
        "kaudit YAML configuration file (default: built-in defaults). Every setting "
        "without an option of its own lives there (examples/ in the repository); "
        "options override or fill in the file's values."
    ),
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
