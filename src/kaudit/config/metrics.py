"""The `metrics:` section: where a long-running kaudit process (`kaudit run`, `kaudit
gateway`, `kaudit console`) serves its Prometheus metrics (`/metrics`) and its health
(`/healthz`, `/readyz`), and the limits readiness is judged by."""

from __future__ import annotations

from pydantic import Field

from kaudit.config.fields import ConfigModel, HostPort


class MetricsConfig(ConfigModel):
    """`/metrics`, `/healthz` and `/readyz` on one HTTP port (kaudit.ops)."""

    listen: HostPort = "127.0.0.1:9464"
    """Where the endpoints are served; 0.0.0.0:9464 for a scraper or a kubelet on
    another host."""
    exporter_stuck_seconds: float = Field(default=300.0, gt=0)
    """A destination that has failed without delivering anything for this long makes
    `/readyz` fail."""
    broker_timeout_seconds: float = Field(default=2.0, gt=0)
    """How long `/readyz` waits for the gateway's upstream broker to accept a TCP
    connection."""
    lag_refresh_seconds: float = Field(default=15.0, gt=0)
    """How often an exporter's lag (events behind the log) is measured again for
    `/metrics`: measuring reads the log (local) or asks the brokers (Kafka)."""
