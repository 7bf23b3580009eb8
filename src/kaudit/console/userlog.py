"""A user's own log: the console events of one user, read back from the audit log."""

from __future__ import annotations

import collections
from typing import Any

import orjson

from kaudit.config import Config
from kaudit.reading import tail_lines

__all__ = ["user_events"]


def user_events(config: Config, provider: str, login: str, limit: int) -> list[dict[str, Any]]:
    """The last `limit` console events of the user `login` of `provider`, newest first."""
    found: collections.deque[dict[str, Any]] = collections.deque(maxlen=limit)
    for line in tail_lines(None, config):
        if b'"console"' not in line:
            continue
        event = orjson.loads(line)
        if (event.get("context") or {}).get("source") != "console":
            continue
        user = (event.get("details") or {}).get("user") or {}
        if user.get("provider") == provider and user.get("login") == login:
            found.append(event)
    return list(reversed(found))
