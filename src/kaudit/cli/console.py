"""`kaudit console`: the web console (`kaudit.console`), and `kaudit console
hash-password` for the password hashes of its local users."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from kaudit.cli.common import config_option, handle_errors, load
from kaudit.errors import UsageError
from kaudit.ops.logs import announce


@click.group(invoke_without_command=True)
@config_option
@click.option("--listen", help="Where the console listens, HOST:PORT (default: console.listen).")
@click.pass_context
@handle_errors
def console(ctx: click.Context, config_path: str | None, listen: str | None) -> None:
    """Serve the web console of the configuration's `console:` section until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    from kaudit.config.load import with_overrides
    from kaudit.console.serve import ConsoleServer
    from kaudit.monitoring import monitoring
    from kaudit.session import AuditSession, describe_log

    config = load(config_path)
    if config.console is None:
        raise UsageError("no console section in the configuration (see console: in the docs)")
    if listen:
        config = with_overrides(config, "console", {"listen": listen}, "command line")
    base = Path(config_path).resolve().parent if config_path else None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with (
        monitoring(config, lambda line: announce(line, event="kaudit.status")) as mon,
        AuditSession(config, source="console") as session,
    ):
        mon.watch_recorder(session.recorder)
        server = ConsoleServer(config, session.recorder, base_dir=base)
        server.start()
        announce(
            f"kaudit console: {server.url} recording to {describe_log(config)} (Ctrl-C to stop)",
            event="kaudit.status",
        )
        try:
            stop.wait()
        finally:
            server.stop()


@console.command("hash-password")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from standard input.")
@handle_errors
def hash_password_command(from_stdin: bool) -> None:
    """Print an argon2id hash of a password, for console.users[].password_hash."""
    from kaudit.console.auth.local import hash_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise UsageError("the password is empty")
    click.echo(hash_password(password))
