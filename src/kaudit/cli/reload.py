"""`kaudit reload`: have the running kaudit processes of a configuration re-read it
(what SIGHUP does), and say what each did; and `reloading`, with which `kaudit run` and
`kaudit gateway` take SIGHUP (kaudit.ops.reload)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator

import click

from kaudit.cli.common import EXIT_FAILED, config_option, fail, handle_errors, load
from kaudit.config import Config


@contextlib.contextmanager
def reloading(load_again: Callable[[], Config], config: Config, command: str) -> Iterator[None]:
    """Meanwhile, SIGHUP reloads the configuration with `load_again` into the parts of
    this process that registered for it, and `kaudit reload` finds this process."""
    from kaudit.ops import reload

    reloader = reload.Reloader(load_again, config, command=command)
    reload.install(reloader)
    reloader.start()
    try:
        yield
    finally:
        reloader.close()
        reload.install(None)


@click.command("reload")
@config_option
@click.option(
    "--timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for each process to say how its reload went.",
)
@handle_errors
def reload_command(config_path: str | None, timeout: float) -> None:
    """Have the kaudit processes running on this configuration's data_dir re-read it
    (as SIGHUP does): exporters, event selection, redaction, alert rules and gateway API
    settings change without losing events. A configuration that does not load is
    refused with its errors, and the running one stays in force. Exits 1 when a process
    refused it or none is running."""
    from kaudit.ops.reload import read_announcement, running_processes

    config = load(config_path)  # an invalid file is refused here, with its errors
    processes = list(running_processes(config.data_path))
    if not processes:
        fail(f"no kaudit process is running on {config.data_path} (kaudit run, kaudit gateway)")
    refused = 0
    for pid, body in processes:
        before = (body.get("last_reload") or {}).get("at", 0.0)
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        outcome = None
        while time.monotonic() < deadline:
            now = read_announcement(config.data_path, pid)
            last = (now or {}).get("last_reload") or {}
            if last.get("at", 0.0) > before:
                outcome = last
                break
            time.sleep(0.1)
        name = f"{body.get('command', 'kaudit')} (pid {pid})"
        if outcome is None:
            click.echo(f"{name}: no answer within {timeout:g}s", err=True)
            refused += 1
        elif outcome["ok"]:
            changed = ", ".join(outcome["changed"]) or "nothing changed"
            click.echo(f"{name}: reloaded ({changed})")
            if outcome["restart_needed"]:
                click.echo(
                    f"{name}: needs a restart to apply: {', '.join(outcome['restart_needed'])}"
                )
        else:
            refused += 1
            click.echo(f"{name}: refused the configuration, the previous one stays:", err=True)
            for error in outcome["errors"]:
                click.echo(f"  {error}", err=True)
    if refused:
        sys.exit(EXIT_FAILED)
