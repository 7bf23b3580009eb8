"""Operating kaudit: Prometheus metrics (`metrics`), liveness and readiness (`health`),
the HTTP port that serves both (`http`), the format of its own log lines (`logs`), and
reloading the configuration of a running process (`reload`).

Below the recorder in the layers, so the recorder, the gateway, the exporters and the
alerts can keep their counters in its types; it knows those parts only by small
protocols, and imports nothing of kaudit but the configuration and the version.
"""
