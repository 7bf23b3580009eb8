"""How the `kaudit` command group behaves as a whole: every error, click's own usage
errors included, is one line starting `kaudit: error:`; an interrupt is one line too;
the exit codes are those of `kaudit.cli.common` and `--help` lists them."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from kaudit.cli.common import EXIT_CODES_HELP, EXIT_INTERRUPTED

COMPLETION_HELP = (
    'Shell completion: eval "$(_KAUDIT_COMPLETE=bash_source kaudit)" in ~/.bashrc '
    "(zsh_source for ~/.zshrc, fish_source for fish)."
)


class KauditGroup(click.Group):
    """click's group with kaudit's wording of errors (click says `Error:`)."""

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        extra["standalone_mode"] = False
        try:
            result = super().main(args, prog_name, **extra)
        except click.UsageError as exc:
            if exc.ctx is not None:
                click.echo(exc.ctx.get_usage(), err=True)
                click.echo(f"Try '{exc.ctx.command_path} --help' for help.", err=True)
            click.echo(f"kaudit: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"kaudit: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("kaudit: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        # Without standalone mode click returns what it would have exited with.
        sys.exit(result if isinstance(result, int) else 0)


EPILOG = f"{EXIT_CODES_HELP}\n\n{COMPLETION_HELP}"
