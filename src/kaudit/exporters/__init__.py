"""Exporters: each reads the audit log through its own durable cursor and delivers to one
destination, so a destination that is down loses nothing and catches up when it returns."""

from kaudit.exporters.base import (
    Exporter,
    ExporterRunner,
    build_exporter,
    drain_all,
    runners_for,
)

__all__ = ["Exporter", "ExporterRunner", "build_exporter", "drain_all", "runners_for"]
