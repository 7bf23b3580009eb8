"""A user's own log: the console events of one user over the last days (seven, as Kpow's
User log), read back from the audit log."""

from __future__ import annotations

import collections
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from kaudit.config import Config
from kaudit.reading import tail_lines

__all__ = ["user_events"]


def user_events(
    config: Config, provider: str, user_id: str, limit: int, days: float | None = None
) -> list[dict[str, Any]]:
    """The last `limit` console events of the user `user_id` of `provider` within `days`
    (default: `console.log_days`), newest first. The provider's stable id (the OIDC `sub`)
    is matched, not the login: two accounts may share a login or email."""
    if days is None:
        days = config.console.log_days if config.console is not None else 7.0
    since = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S")
    found: collections.deque[dict[str, Any]] = collections.deque(maxlen=limit)
    for line in tail_lines(None, config):
        if b'"console"' not in line:
            continue
        event = orjson.loads(line)
        if str(event.get("timestamp", "")) < since:  # ISO 8601 UTC: text order is time order
            continue
        if (event.get("context") or {}).get("source") != "console":
            continue
        user = (event.get("details") or {}).get("user") or {}
        if user.get("provider") == provider and user.get("id") == user_id:
            found.append(event)
    return list(reversed(found))
