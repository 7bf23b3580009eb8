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
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from kaudit.config import Config
from kaudit.errors import UsageError

if TYPE_CHECKING:
    from kaudit.monitoring import Monitoring
    from kaudit.session import AuditSession

Say = Callable[[str], None]
"""Where messages for the person running kaudit go."""


def run(config: Config, *, once: bool, say: Say, retries: int | None = None) -> None:
    """`kaudit run`: the gateway, the console and the exporters the configuration asks
    for, and retention when starting and hourly; with `once`, deliver what is in the log
    now, then apply retention and return (a destination still failing after `retries`
    is given up on: DeliveryIncompleteError). UsageError when there is nothing to run."""
    from kaudit.monitoring import monitoring

    if not once:
        start_retention(config)
    # Set by SIGINT/SIGTERM from before the console serves, so none is lost in between.
    stop = threading.Event()
    if not once:
        _stop_on_signals(stop)
    with (
        monitoring(config, say) if not once else contextlib.nullcontext() as mon,
        serving_console(config, say, once=once, stop=stop, mon=mon) as console_session,
        reading_broker_auditor(
            config, console_session, say, once=once, stop=stop, mon=mon
        ) as auditor_session,
        alerting(config, say, once=once, session=auditor_session, stop=stop, mon=mon) as session,
    ):
        counts = run_exporters(
            config, once=once, say=say, session=session, stop=stop, mon=mon, retries=retries
        )
        if not counts:
            if config.gateway is not None and not once:
                serve_gateway(config, say, session, stop, mon=mon)
            elif session is not None:
                stop.wait()
            else:
                raise UsageError(
                    "no destination configured (audit.destination or audit.destinations)"
                )
    # One line once everything is closed (the log with its final checkpoint).
    sent = ", ".join(f"{name}: {n} {'event' if n == 1 else 'events'}" for name, n in counts.items())
    if once:
        say(f"kaudit run: delivered {sent}")
        apply_retention_once(config, say)
    else:
        say("kaudit run: stopped" + (f"; sent {sent}" if sent else ""))


def _stop_on_signals(stop: threading.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())


@contextlib.contextmanager
def serving_console(
    config: Config, say: Say, *, once: bool, stop: threading.Event, mon: Monitoring | None = None
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
        if mon is not None:
            mon.watch_recorder(session.recorder)
        server = ConsoleServer(config, session.recorder)
        server.start()
        say(f"kaudit console: {server.url}")
        try:
            yield session
        finally:
            server.stop()


@contextlib.contextmanager
def reading_broker_auditor(
    config: Config,
    session: AuditSession | None,
    say: Say,
    *,
    once: bool,
    stop: threading.Event,
    mon: Monitoring | None = None,
) -> Iterator[AuditSession | None]:
    """With a `broker_auditor:` section, its decision reader and bypass detector in a
    thread meanwhile, recording through `session` (opened here when there is none, then
    shared with the gateway: one writer per log); `session` unchanged otherwise."""
    if config.broker_auditor is None or once:
        yield session
        return
    _stop_on_signals(stop)
    from kaudit.brokeraudit.service import run_broker_audit

    with contextlib.ExitStack() as stack:
        session = _shared_session(stack, config, session, "broker", mon)
        thread = threading.Thread(
            target=run_broker_audit,
            args=(config, session.recorder, stop),
            kwargs={"say": say},
            name="broker-audit",
        )
        with _running(thread, stop):
            yield session


@contextlib.contextmanager
def alerting(
    config: Config,
    say: Say,
    *,
    once: bool,
    session: AuditSession | None,
    stop: threading.Event,
    mon: Monitoring | None = None,
) -> Iterator[AuditSession | None]:
    """The alert engine judging the log meanwhile, when rules are configured (not with
    `once`), recording `alert.fired` through `session`, or through a session of its own
    that it yields for the gateway to share (one writer per log)."""
    from kaudit.alerts import AlertEngine, has_rules
    from kaudit.alerts.running import RunningAlerts
    from kaudit.ops import reload

    if once or not has_rules(config):
        yield session
        return
    _stop_on_signals(stop)
    with contextlib.ExitStack() as stack:
        session = _shared_session(stack, config, session, "alerts", mon)
        recording = session

        def record(event_type: str, fields: Mapping[str, Any]) -> None:
            recording.emit(event_type, durable=True, **fields)

        hooks: dict[str, Any] = {}
        if mon is not None:
            from kaudit.ops import metrics

            hooks = {
                "on_fired": metrics.alert_fired,
                "on_notification_failed": metrics.notification_failed,
            }

        def build(settings: Config) -> AlertEngine:
            return AlertEngine(settings, record=record, **hooks)

        running = RunningAlerts(config, build)
        stack.callback(running.close)
        stack.callback(reload.register("alerts", running.prepare_reload))
        names = ", ".join(rule.name for rule in running.engine.rules)
        say(f"kaudit alerts: {len(running.engine.rules)} rules ({names})")
        yield session


def _shared_session(
    stack: contextlib.ExitStack,
    config: Config,
    session: AuditSession | None,
    source: str,
    mon: Monitoring | None,
) -> AuditSession:
    """`session`, or one opened on `stack` when there is none yet (recording as `source`
    unless a gateway will share it: one writer per log), its recorder watched by `mon`."""
    if session is not None:
        return session
    from kaudit.session import AuditSession

    opened = stack.enter_context(
        AuditSession(config, source="gateway" if config.gateway else source)
    )
    if mon is not None:
        mon.watch_recorder(opened.recorder)
    return opened


@contextlib.contextmanager
def _running(thread: threading.Thread, stop: threading.Event) -> Iterator[None]:
    """`thread` started, and on the way out stopped (`stop`) and waited for."""
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_exporters(
    config: Config,
    *,
    once: bool,
    say: Say,
    session: AuditSession | None = None,
    stop: threading.Event | None = None,
    mon: Monitoring | None = None,
    retries: int | None = None,
) -> dict[str, int]:
    """Run every destination's exporter until SIGINT/SIGTERM (serving the gateway
    meanwhile when one is configured), or with `once` until each has caught up with the
    log; events sent per destination, empty when none is configured."""
    from kaudit.exporters import drain_all
    from kaudit.exporters.pool import ExporterPool
    from kaudit.ops import reload

    if once:
        return drain_all(config, retries)
    pool = ExporterPool(config)
    if not pool.names:
        return {}
    if mon is not None:
        mon.watch_exporters(pool.runners)
        if session is None and config.gateway is None:
            mon.watch_log_directory()
    stop = stop if stop is not None else threading.Event()
    _stop_on_signals(stop)
    pool.start()
    unregister = reload.register("exporters", pool.prepare_reload)
    say(f"kaudit: exporting to {', '.join(pool.names)} (Ctrl-C to stop)")
    try:
        if config.gateway is not None:
            serve_gateway(config, say, session, stop, mon=mon)  # returns on SIGINT/SIGTERM
            stop.set()
        while not stop.wait(0.5):
            pass
    finally:
        stop.set()
        unregister()
        sent = pool.close()
    return sent


def serve_gateway(
    config: Config,
    say: Say,
    session: AuditSession | None = None,
    stop: threading.Event | None = None,
    mon: Monitoring | None = None,
) -> None:
    """Serve the configured gateway until SIGINT/SIGTERM, saying where it listens;
    recording through `session` when given (shared with the console); not at all when
    `stop` (set by this process's signal handlers) was set while it was being built.
    Its metrics and readiness go to `mon`, else to a monitoring of its own."""
    from kaudit.gateway import Gateway, run_gateway
    from kaudit.monitoring import monitoring
    from kaudit.session import AuditSession, describe_log

    if mon is None:
        with monitoring(config, say) as own:
            serve_gateway(config, say, session, stop, mon=own)
        return
    if session is None:
        with AuditSession(config, source="gateway") as own_session:
            mon.watch_recorder(own_session.recorder)
            serve_gateway(config, say, own_session, stop, mon=mon)
        return

    def ready(gw: Gateway) -> None:
        mon.watch_gateway(gw)
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
