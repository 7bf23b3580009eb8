"""kaudit's Prometheus metrics: the one registry a process serves on `/metrics`, and the
collectors that read the counters the recorder, the gateway, the exporters and integrity
keep anyway.

Nothing on a hot path calls prometheus-client. The parts keep plain integers (and
`Latency` bucket counts) where they already are; at scrape time a collector reads them and
builds the metric families. So counting stays an attribute increment on the gateway's
event loop and the recorder's writer thread, and a process that is never scraped pays
nothing more. The parts are watched with `watch_*`, which returns a function that stops
watching (a closed recorder or gateway leaves the registry with it).

Labels are few and bounded: `api` (Kafka API names), `result`, `direction`,
`destination` (configured names), `rule` (configured alert rules), `notifier` (kinds).
Never a client id, principal or topic, which clients choose.

The alerts engine counts through `alert_fired(rule)` and `notification_failed(notifier)`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from kaudit.ops.latency import LATENCY_BOUNDS, Latency
from kaudit.version import __version__

__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BOUNDS",
    "REGISTRY",
    "ExporterSource",
    "GatewayCounters",
    "Latency",
    "RecorderSource",
    "alert_fired",
    "notification_failed",
    "render",
    "watch_checkpoints",
    "watch_exporters",
    "watch_gateway",
    "watch_recorder",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=False)
"""What `/metrics` serves: kaudit's collectors, and the process's CPU, memory, file
descriptors and garbage collector (prometheus-client's own collectors)."""
for _standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_standard)


def render() -> bytes:
    """The registry in Prometheus's text format (`CONTENT_TYPE`)."""
    return generate_latest(REGISTRY)


def _histogram(
    name: str, doc: str, series: Iterable[tuple[Sequence[str], Latency]], labels: Sequence[str]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, latency in series:
        family.add_metric(list(values), latency.buckets(), latency.total)
    return family


class _Watched(Collector):
    """A collector over the parts being watched now (added and removed at any time)."""

    def __init__(self, collect: Callable[[], Iterator[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        return self._collect()


def _watch(collector: Collector) -> Callable[[], None]:
    REGISTRY.register(collector)
    lock = threading.Lock()
    watching = [True]

    def unwatch() -> None:
        with lock:
            if watching[0]:
                watching[0] = False
                REGISTRY.unregister(collector)

    return unwatch


# ---------------------------------------------------------------------------- recorder


class RecorderSource(Protocol):
    """What the recorder shows: its counters (`Recorder.metrics()`) and write latency."""

    def metrics(self) -> Mapping[str, int | bool]: ...

    @property
    def write_latency(self) -> Latency: ...


_RECORDER_COUNTERS = {
    "kaudit_events_received": "Events handed to the recorder (kept, filtered out or dropped).",
    "kaudit_events_written": "Events written to the audit log.",
    "kaudit_events_dropped": "Events lost: dropped under fail_open, or never written.",
    "kaudit_events_filtered": "Events not selected by audit.events / exclude_events.",
    "kaudit_log_write_errors": "Failed appends to the audit log (each retried).",
}


def watch_recorder(recorder: RecorderSource) -> Callable[[], None]:
    """Export the recorder's counters, queue and write latency until the returned
    function is called."""

    def collect() -> Iterator[Metric]:
        counts = recorder.metrics()
        for name, doc in _RECORDER_COUNTERS.items():
            yield CounterMetricFamily(name, doc, value=int(counts.get(f"{name}_total", 0)))
        depth = counts["kaudit_queue_depth"]
        yield GaugeMetricFamily("kaudit_queue_depth", "Events queued for the writer.", value=depth)
        yield GaugeMetricFamily(
            "kaudit_queue_capacity",
            "The queue's bound (audit.queue_max_events).",
            value=counts.get("kaudit_queue_capacity", 0),
        )
        yield GaugeMetricFamily(
            "kaudit_log_healthy",
            "1 while the audit log takes writes, 0 while appends fail.",
            value=1 if counts["kaudit_log_healthy"] else 0,
        )
        yield _histogram(
            "kaudit_log_write_seconds",
            "Time to append one batch to the audit log (retries included).",
            [((), recorder.write_latency)],
            (),
        )

    return _watch(_Watched(collect))


# ---------------------------------------------------------------------------- gateway


class GatewayCounters(Protocol):
    """What the gateway counts as it goes (gateway.recording.GatewayMetrics)."""

    requests: int
    audit_calls: int
    audit_failures: int
    refused: int
    connections_total: int
    connections_refused: int
    parked: int
    bytes_from_clients: int
    bytes_from_brokers: int

    @property
    def answered(self) -> Mapping[int, int]:
        """Requests the broker answered and the gateway passed on, per API key."""

    @property
    def outcomes(self) -> Mapping[tuple[int, str], int]:
        """The other ends of a request, per API key and result (refused, failed...)."""

    @property
    def request_latency(self) -> Latency: ...

    @property
    def response_latency(self) -> Latency: ...


def watch_gateway(
    counters: GatewayCounters,
    *,
    open_connections: Callable[[], int],
    api_name: Callable[[int], str],
) -> Callable[[], None]:
    """Export a gateway's counters until the returned function is called; `api_name`
    names an API key (the label; keys with one name are summed), `open_connections`
    counts the open client connections."""

    def collect() -> Iterator[Metric]:
        c = counters
        yield GaugeMetricFamily(
            "kaudit_gateway_connections", "Client connections open now.", value=open_connections()
        )
        yield CounterMetricFamily(
            "kaudit_gateway_connections_accepted",
            "Client connections accepted.",
            value=c.connections_total,
        )
        yield CounterMetricFamily(
            "kaudit_gateway_connections_refused",
            "Client connections refused (gateway.max_connections, per address).",
            value=c.connections_refused,
        )
        requests = CounterMetricFamily(
            "kaudit_gateway_requests",
            "Requests by API and how they ended: answered (the broker's answer passed on), "
            "refused (answered by the gateway, never forwarded), failed (the broker "
            "answered but the audit record was not durable: an error instead), unanswered "
            "(the connection closed first).",
            labels=("api", "result"),
        )
        by_label: dict[tuple[str, str], int] = {}
        for key, n in dict(c.answered).items():
            label = (api_name(key), "answered")
            by_label[label] = by_label.get(label, 0) + n
        for (key, result), n in dict(c.outcomes).items():
            label = (api_name(key), result)
            by_label[label] = by_label.get(label, 0) + n
        for (name, result), n in sorted(by_label.items()):
            requests.add_metric([name, result], n)
        yield requests
        yield CounterMetricFamily(
            "kaudit_gateway_requests_received", "Requests read from clients.", value=c.requests
        )
        yield CounterMetricFamily(
            "kaudit_gateway_requests_refused",
            "Requests the gateway answered with an error itself (unreadable, or the audit "
            "log could not take their record under fail_closed).",
            value=c.refused,
        )
        traffic = CounterMetricFamily(
            "kaudit_gateway_bytes",
            "Bytes passed through, by direction.",
            labels=("direction",),
        )
        traffic.add_metric(["client_to_broker"], c.bytes_from_clients)
        traffic.add_metric(["broker_to_client"], c.bytes_from_brokers)
        yield traffic
        yield CounterMetricFamily(
            "kaudit_gateway_audit_calls", "Audit calls made (one per request).", value=c.audit_calls
        )
        yield CounterMetricFamily(
            "kaudit_gateway_audit_failures",
            "Audit calls the audit session could not take.",
            value=c.audit_failures,
        )
        yield CounterMetricFamily(
            "kaudit_gateway_audit_parked",
            "Audit calls of answered requests kept until the log could take them (fail_closed).",
            value=c.parked,
        )
        yield _histogram(
            "kaudit_gateway_added_latency_seconds",
            "Time the gateway spends on a read before passing it on, by direction "
            "(request: client to broker; response: broker to client); one read in 8 is timed.",
            [(("request",), c.request_latency), (("response",), c.response_latency)],
            ("direction",),
        )

    return _watch(_Watched(collect))


# ---------------------------------------------------------------------------- exporters


class ExporterCounts(Protocol):
    sent: int
    failed: int
    retried: int
    dead_lettered: int
    last_error: str | None
    last_sequence: int | None


class ExporterSource(Protocol):
    """An exporter runner (kaudit.exporters.runner.ExporterRunner), as it is watched."""

    @property
    def name(self) -> str: ...

    @property
    def metrics(self) -> ExporterCounts: ...

    def lag(self) -> int: ...


class _ExporterProgress:
    """When each destination last moved, and its lag, measured at most every
    `lag_refresh_s` (measuring reads the log or asks the brokers)."""

    def __init__(self, runners: Sequence[ExporterSource], lag_refresh_s: float) -> None:
        self.runners = runners
        self.lag_refresh_s = lag_refresh_s
        self._lock = threading.Lock()
        now = time.monotonic()
        self._moved: dict[str, tuple[int, float]] = {r.name: (r.metrics.sent, now) for r in runners}
        self._lags: dict[str, tuple[int | None, float]] = {}

    def lag(self, runner: ExporterSource) -> int | None:
        with self._lock:
            value, measured = self._lags.get(runner.name, (None, float("-inf")))
            if time.monotonic() - measured < self.lag_refresh_s:
                return value
            # The log or brokers unreachable now: the last value stands.
            with contextlib.suppress(Exception):
                value = runner.lag()
            self._lags[runner.name] = (value, time.monotonic())
            return value

    def stuck_for(self, runner: ExporterSource) -> float:
        """Seconds the destination has been failing without delivering anything (0 when
        it is not failing)."""
        now = time.monotonic()
        with self._lock:
            sent, since = self._moved[runner.name]
            m = runner.metrics
            if m.sent != sent or m.last_error is None:
                self._moved[runner.name] = (m.sent, now)
                return 0.0
            return now - since


def watch_exporters(
    runners: Sequence[ExporterSource], *, lag_refresh_s: float = 15.0
) -> tuple[Callable[[], None], Callable[[float], list[str]]]:
    """Export each destination's counters and lag until the first returned function is
    called; the second says which destinations have been stuck (failing, nothing
    delivered) for longer than a number of seconds, for `/readyz`."""
    progress = _ExporterProgress(runners, lag_refresh_s)
    counters = {
        "sent": "Records delivered to the destination.",
        "failed": "Failed deliveries (batches; each retried or dead-lettered).",
        "retried": "Batches tried again after a retryable failure.",
        "dead_lettered": "Records the destination refused, kept in its dead-letter file.",
    }

    def collect() -> Iterator[Metric]:
        for field, doc in counters.items():
            family = CounterMetricFamily(f"kaudit_exporter_{field}", doc, labels=("destination",))
            for r in runners:
                family.add_metric([r.name], getattr(r.metrics, field))
            yield family
        lag = GaugeMetricFamily(
            "kaudit_exporter_lag_events",
            "Events in the log the destination has not yet been sent.",
            labels=("destination",),
        )
        stuck = GaugeMetricFamily(
            "kaudit_exporter_failing_seconds",
            "How long the destination has been failing without delivering anything.",
            labels=("destination",),
        )
        for r in runners:
            behind = progress.lag(r)
            if behind is not None:
                lag.add_metric([r.name], behind)
            stuck.add_metric([r.name], progress.stuck_for(r))
        yield lag
        yield stuck

    def stuck(limit_s: float) -> list[str]:
        return [r.name for r in runners if progress.stuck_for(r) > limit_s]

    return _watch(_Watched(collect)), stuck


# ---------------------------------------------------------------------------- integrity


def watch_checkpoints(last_checkpoint_at: Callable[[], float | None]) -> Callable[[], None]:
    """Export the age of the last signed checkpoint (`last_checkpoint_at`: its Unix time,
    None before the first) until the returned function is called."""

    def collect() -> Iterator[Metric]:
        at = last_checkpoint_at()
        if at is not None:
            yield GaugeMetricFamily(
                "kaudit_checkpoint_age_seconds",
                "Seconds since the last signed integrity checkpoint was written.",
                value=max(0.0, time.time() - at),
            )

    return _watch(_Watched(collect))


# ---------------------------------------------------------------------------- alerts and build

_ALERTS_FIRED = Counter(
    "kaudit_alerts_fired",
    "Alerts fired, by rule.",
    ("rule",),
    registry=REGISTRY,
)
_NOTIFICATIONS_FAILED = Counter(
    "kaudit_alert_notifications_failed",
    "Alert notifications that could not be delivered, by notifier kind.",
    ("notifier",),
    registry=REGISTRY,
)


def alert_fired(rule: str) -> None:
    """Count one alert fired by the rule named `rule` (a configured name)."""
    _ALERTS_FIRED.labels(rule=rule).inc()


def notification_failed(notifier: str) -> None:
    """Count one notification that failed, by notifier kind (slack, email, webhook...)."""
    _NOTIFICATIONS_FAILED.labels(notifier=notifier).inc()


class _BuildInfo(Collector):
    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "kaudit_build_info", "The running kaudit's version.", labels=("version",)
        )
        info.add_metric([__version__], 1)
        yield info


REGISTRY.register(_BuildInfo())
