"""Operating kaudit: Prometheus metrics (`metrics`), liveness and readiness (`health`),
the HTTP port that serves both (`http`), and the format of its own log lines (`logs`).

Below the recorder in the layers, so the recorder, the gateway, the exporters and the
alerts can keep their counters in its types; it knows those parts only by small
protocols, and imports nothing of kaudit but the configuration and the version.
"""
