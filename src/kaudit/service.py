"""What `kaudit run` and `kaudit gateway` run: the audit gateway (`gateway:`), the web
console (`console:`), the exporters (each destination in a thread of its own, with its
own cursor) and `audit.retention` — until SIGINT or SIGTERM, or once.

At the top of the layers, beside `kaudit.demo`: it starts sources (the gateway) as well
as the exporters and retention, which read the log. Messages for the person running it
go to `say` (the command line prints them on stderr).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from kaudit.config import Config
from kaudit.errors import UsageError

if TYPE_CHECKING:
    from kaudit.session import AuditSession

Say = Callable[[str], None]
"""Where messages for the person running kaudit go."""


def run(config: Config, *, once: bool, say: Say) -> None:
    """`kaudit run`: the gateway, the console and the exporters the configuration asks
    for, and retention when starting and hourly; with `once`, deliver what is in the log
    now, then apply retention and return. UsageError when there is nothing to run."""
    if not once:
        start_retention(config)
    # Set by SIGINT/SIGTERM from before the console serves, so none is lost in between.
    stop = threading.Event()
    with serving_console(config, say, once=once, stop=stop) as session:
        counts = run_exporters(config, once=once, say=say, session=session, stop=stop)
        if not counts:
            if config.gateway is not None and not once:
                serve_gateway(config, say, session, stop)
                return
            if session is not None:
                stop.wait()
                return
            raise UsageError("no destination configured (audit.destination or audit.destinations)")
    for name, n in counts.items():
        say(f"{name}: {n} events")
    if once:
        apply_retention_once(config, say)


def _stop_on_signals(stop: threading.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())


@contextlib.contextmanager
def serving_console(
    config: Config, say: Say, *, once: bool, stop: threading.Event
) -> Iterator[AuditSession | None]:
    """The console of `console:` served meanwhile, with the audit session it records
    through (which the gateway shares: one writer per log); None without a console.
    SIGINT/SIGTERM set `stop` from before it serves."""
    if config.console is None or once:
        yield None
        return
    _stop_on_signals(stop)
    from kaudit.console.serve import ConsoleServer
    from kaudit.session import AuditSession

    with AuditSession(config, source="gateway" if config.gateway else "console") as session:
        server = ConsoleServer(config, session.recorder)
        server.start()
        say(f"kaudit console: {server.url}")
        try:
            yield session
        finally:
            server.stop()


def run_exporters(
    config: Config,
    *,
    once: bool,
    say: Say,
    session: AuditSession | None = None,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Run every destination's exporter until SIGINT/SIGTERM (serving the gateway
    meanwhile when one is configured), or with `once` until each has caught up with the
    log; events sent per destination, empty when none is configured."""
    from kaudit.exporters import drain_all
    from kaudit.exporters.pool import ExporterPool
    from kaudit.ops import reload

    if once:
        return drain_all(config)
    pool = ExporterPool(config)
    if not pool.names:
        return {}
    stop = stop if stop is not None else threading.Event()
    _stop_on_signals(stop)
    pool.start()
    unregister = reload.register("exporters", pool.prepare_reload)
    say(f"kaudit: exporting to {', '.join(pool.names)} (Ctrl-C to stop)")
    try:
        if config.gateway is not None:
            serve_gateway(config, say, session, stop)  # returns on SIGINT/SIGTERM
            stop.set()
        while not stop.wait(0.5):
            pass
    finally:
        stop.set()
        unregister()
        sent = pool.close()
    return sent


def gateway_config(config: Config, *, upstream: str | None, listen: str | None) -> Config:
    """`config` with the command line's `--upstream` and `--listen` in its `gateway:`
    section; UsageError when neither names an upstream cluster."""
    from kaudit.config.load import with_overrides

    overrides = {key: value for key, value in (("upstream", upstream), ("listen", listen)) if value}
    if config.gateway is None and not upstream:
        raise UsageError("no upstream: pass --upstream HOST:PORT or set gateway.upstream")
    if overrides:
        config = with_overrides(config, "gateway", overrides, "command line")
    return config


def serve_gateway(
    config: Config,
    say: Say,
    session: AuditSession | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve the configured gateway until SIGINT/SIGTERM, saying where it listens;
    recording through `session` when given (shared with the console); not at all when
    `stop` (set by this process's signal handlers) was set while it was being built."""
    from kaudit.gateway import Gateway, run_gateway
    from kaudit.session import describe_log

    def ready(gw: Gateway) -> None:
        known = sorted(gw.brokers.known())
        serving = (
            f" (serving {', '.join(f'{n}:{gw.brokers.port_for(n)}' for n in known)})"
            if known
            else " (each opens when a response first names its broker)"
        )
        say(
            f"kaudit gateway: listening on {gw.config.listen} for "
            f"{','.join(gw.config.upstream)}, brokers from port "
            f"{gw.brokers.broker_ports_start}{serving}; recording to {describe_log(config)} "
            "(Ctrl-C to stop)"
        )

    run_gateway(config, ready=ready, session=session, stopped=stop)


def start_retention(config: Config) -> None:
    """Apply `audit.retention` now and hourly, in the background (when it has max_days)."""
    from kaudit.store.retention import RetentionWorker

    if config.audit.retention.max_days is not None:
        # A daemon thread: it stops with the process, mid-removal at worst, which
        # leaves whole files and committed transactions only.
        RetentionWorker(config).start(threading.Event())


def apply_retention_once(config: Config, say: Say) -> None:
    """Apply `audit.retention` once, saying what it removed, if anything."""
    from kaudit.store.retention import apply_retention

    done = apply_retention(config)
    removed = len(done.segments) + done.index_events + len(done.files)
    if removed:
        say(
            f"retention: removed {len(done.segments)} log segments, {done.index_events} "
            f"indexed events, {len(done.files)} rotated files (before {done.cutoff})"
        )
