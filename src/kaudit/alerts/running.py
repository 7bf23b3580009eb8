"""The alert engine as `kaudit run` runs it: on a thread of its own, and replaced when a
configuration reload changes the alert rules.

A reload stops the running engine (it keeps the state and cursor it saved last) and
starts a new one with the new rules, which resumes from them as after a restart: no
event is judged twice and none is skipped. Windows of rules that kept their name carry
on; a rule that is gone leaves its state unread. The new rules are compiled when the
reload is prepared, so rules that do not compile refuse the whole reload and the running
engine goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kaudit.alerts.engine import AlertEngine
from kaudit.alerts.ruleset import compile_rules
from kaudit.config import Config

log = logging.getLogger("kaudit.alerts")


def alert_settings(config: Config) -> tuple[Any, Any]:
    """What a reload compares to decide whether the alerts change."""
    return (config.audit.alerts, config.audit.builtin_alerts)


class _RulesSwap:
    """A reload's new alert rules, compiled; the engine is replaced on commit."""

    def __init__(self, running: RunningAlerts, config: Config) -> None:
        self._running, self._config = running, config

    def commit(self) -> None:
        self._running.replace(self._config)

    def abort(self) -> None:
        pass


class RunningAlerts:
    """One engine at a time on its thread; `build` makes an engine for a configuration."""

    def __init__(self, config: Config, build: Callable[[Config], AlertEngine]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._closed = False
        self.engine = build(config)
        self._stop = threading.Event()
        self._thread = self._start()

    def _start(self) -> threading.Thread:
        thread = threading.Thread(target=self.engine.run, args=(self._stop,), name="alerts")
        thread.start()
        return thread

    def prepare_reload(self, old: Config, new: Config) -> _RulesSwap | None:
        """The change of rules `new` brings, compiled (raises when they do not)."""
        if alert_settings(old) == alert_settings(new):
            return None
        compile_rules(new.audit.alerts, new.audit.builtin_alerts)
        return _RulesSwap(self, new)

    def replace(self, config: Config) -> None:
        """Stop the running engine and start one with `config`'s rules."""
        with self._lock:
            if self._closed:
                return
            self._end()
            try:
                self.engine = self._build(config)
            except Exception:
                # Its rules compiled when prepared: what failed is its state or its log.
                log.exception("alerts: the engine with the reloaded rules did not start")
                self._closed = True
                return
            self._stop = threading.Event()
            self._thread = self._start()
            names = ", ".join(rule.name for rule in self.engine.rules)
            log.warning("alerts: rules reloaded (%s)", names)

    def _end(self) -> None:
        self._stop.set()
        self._thread.join()
        self.engine.close()

    def close(self) -> None:
        """Stop the engine and wait for it."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._end()
