"""A user's own log: the console events of one user over the last days (seven, as Kpow's
User log, or `console.log_days`), a page at a time from the search index.

Whose event it is is decided by the provider and the provider's stable id recorded in
the event (`details.user.provider` and `details.user.id`), never by the login or display
name: two accounts may share a login or an email. The index holds neither, so the search
is narrowed by the words of the provider and the id (the event's details are in the
full-text index) and each line found is then checked exactly, as the audit-log pages
check an event's source. The pages are keyset pages (`store.browse.page`): a deep page
costs what the first does, and no page reads the whole log.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from kaudit.config import Config
from kaudit.store.browse import Cursor, Page, page
from kaudit.store.query import Filter, Hit, Search, open_search
from kaudit.store.schema import words

__all__ = ["log_days", "owned_by", "user_events", "user_filter", "user_page"]


def owned_by(provider: str, user_id: str) -> Callable[[bytes], bool]:
    """Whether an event line is a console event of the user `user_id` of `provider`."""

    def keep(line: bytes) -> bool:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(event, dict):
            return False
        context = event.get("context")
        if not isinstance(context, dict) or context.get("source") != "console":
            return False
        details = event.get("details")
        user = details.get("user") if isinstance(details, dict) else None
        if not isinstance(user, dict):
            return False
        return user.get("provider") == provider and user.get("id") == user_id

    return keep


def user_filter(provider: str, user_id: str, days: float) -> Filter:
    """The search that finds at least every event of the user within `days`: the words
    of their provider and id, which their events' details hold."""
    terms = list(dict.fromkeys(words(provider) + words(user_id)))
    since = datetime.now(UTC) - timedelta(days=days)
    return Filter(since=since, query=" ".join(terms) if terms else None)


def user_page(
    search: Search, provider: str, user_id: str, *, days: float, size: int,
    after: Cursor | None = None,
) -> Page:  # fmt: skip
    """One page of the user's console events, newest first, after `after`."""
    return page(
        search, user_filter(provider, user_id, days), size=size, after=after,
        keep=owned_by(provider, user_id),
    )  # fmt: skip


def log_days(config: Config) -> float:
    """How far back a user's log looks (`console.log_days`, else 7)."""
    return config.console.log_days if config.console is not None else 7.0


def user_events(
    config: Config, provider: str, user_id: str, limit: int, days: float | None = None
) -> list[dict[str, Any]]:
    """The last `limit` console events of the user `user_id` of `provider` within `days`
    (default: `console.log_days`), newest first, read with `user_page` from the
    configured search (the index, else a scan of the log)."""
    search = open_search(None, config)
    hits: list[Hit] = []
    after: Cursor | None = None
    try:
        while len(hits) < limit:
            found = user_page(
                search, provider, user_id, days=log_days(config) if days is None else days,
                size=limit - len(hits), after=after,
            )  # fmt: skip
            hits += found.hits
            if found.next is None:
                break
            after = found.next
    finally:
        search.close()
    return [orjson.loads(h.line) for h in hits]
