"""`kaudit alerts test`: a log replayed against the rules, sending nothing.

Every line of SOURCE (a log directory, a data directory, a JSON Lines file, `-` or a
`kafka://` topic, as `kaudit tail` reads them) from `since` on is judged by a fresh
`Evaluator` with its own state (the running engine's state is not touched), windows
sliding by event time only. What would have fired and resolved is returned in log
order, with the event time it would have happened at.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import msgspec
import orjson

from kaudit.alerts.rules import Evaluator, event_time
from kaudit.alerts.ruleset import compile_rules
from kaudit.alerts.state import AlertRecord
from kaudit.config import Config

__all__ = ["replay", "would_fire"]


class _Type(msgspec.Struct, gc=False):
    event_type: Any = None


_decode = msgspec.json.Decoder(_Type).decode


def replay(
    config: Config, lines: Iterable[bytes], since: datetime | None = None
) -> Iterator[AlertRecord]:
    """The alerts the configured rules raise over `lines` (events before `since` are
    skipped), ending with the resolutions due by the last event's time."""
    evaluator = Evaluator(compile_rules(config.audit.alerts, config.audit.builtin_alerts))
    floor = since.timestamp() if since is not None else None
    for line in lines:
        if not line.strip():
            continue
        try:
            event_type = _decode(line).event_type
        except msgspec.MsgspecError:
            continue
        candidates = evaluator.candidates(event_type)
        if candidates is None:
            continue
        event = orjson.loads(line)
        at = event_time(event)
        if at is None or (floor is not None and at < floor):
            continue
        yield from evaluator.sweep(at)  # what resolved before this event
        yield from evaluator.judge(event, candidates)
    yield from evaluator.sweep()


def would_fire(alert: AlertRecord) -> dict[str, Any]:
    """One line of `kaudit alerts test`'s output."""
    info = alert.data["alert"]
    return {
        "at": info["at"],
        "rule": alert.rule,
        "status": alert.status,
        "severity": info["severity"],
        "group": info["group"],
        "count": alert.count,
        "event_ids": info["event_ids"],
        "notify": list(alert.targets),
    }
