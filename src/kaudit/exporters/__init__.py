"""Exporters: each reads the audit log through its own durable cursor and delivers to one
destination, so a destination that is down loses nothing and catches up when it returns.

`base` is the contract a destination implements, `runner` drives one exporter from the
log, `feeds` are where it reads (local segments or the Kafka log topic), `metrics` what
it counts, and `registry` builds the runners a configuration asks for. The other modules
are the destinations (file, kafka, s3, cloudwatch, syslog, webhook, slack) and what some
of them share (`records`, `aws`, `http`); the `store` destination's exporter lives with
the search index, in `kaudit.store.exporter`.

Exporters read the log: they may import `kaudit.log`, `kaudit.integrity`,
`kaudit.events`, `kaudit.config`, `kaudit.errors` and `kaudit.retry`. They never import
`kaudit.store` or `kaudit.reports` (those build on exporters), the sources (gateway,
console), the session, the recorder or the CLI.
"""

from kaudit.exporters.base import Exporter
from kaudit.exporters.registry import build_exporter, drain_all, runners_for
from kaudit.exporters.runner import ExporterRunner

__all__ = ["Exporter", "ExporterRunner", "build_exporter", "drain_all", "runners_for"]
