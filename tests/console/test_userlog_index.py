"""The user log over an indexed log with thousands of other events: it shows exactly the
signed-in user's own console events (never those of an account with the same login, id
or display name under another provider, nor another user's with the same display name),
page after page, and it reads them through the index, a few rows a page, not the log."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from kaudit.console.audit import RequestInfo
from kaudit.console.identity import ConsoleUser
from kaudit.console.userlog import user_page
from kaudit.store.browse import Cursor
from kaudit.store.query import Filter, Hit, IndexSearch, store_destination
from support.console import ConsoleHarness, harness, local_user
from support.logpages import fill, index, log_pages_config

OTHER_EVENTS = 3000
MINE = 30

ME = ConsoleUser(provider="local", login="alice", id="alice", name="Alice")
SAME_ID_OTHER_PROVIDER = ConsoleUser(provider="oidc:local", login="alice", id="alice", name="Alice")
SAME_NAME = ConsoleUser(provider="local", login="bob", id="bob", name="Alice")


class CountingSearch(IndexSearch):
    """The real index search, counting the rows it hands back."""

    rows_read = 0

    def search(self, flt: Filter, limit: int | None) -> list[Hit]:
        found = super().search(flt, limit)
        self.rows_read += len(found)
        return found


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleHarness]:
    """alice and bob (whose display name is also Alice); 3,000 generated events, and
    console events of alice, of an OIDC account with alice's login and id, and of bob,
    mixed; indexed."""
    tmp = tmp_path_factory.mktemp("user-log-index")
    config = log_pages_config(
        tmp, users=[local_user("alice", "dev"), local_user("bob", "dev", name="Alice")]
    )
    fill(config, OTHER_EVENTS)
    for h in harness(config):
        audit = h.app.state.console.recorder
        for n in range(MINE * 4):
            user = (ME, SAME_ID_OTHER_PROVIDER, SAME_NAME, SAME_NAME)[n % 4]
            audit.auth(
                "auth.login", provider=user.provider, login=user.login, user=user,
                info=RequestInfo(request_id=f"r{n}", source_address="192.0.2.1"),
                result="success",
            )  # fmt: skip
        h.events()  # waits until written
        index(config)
        yield h


def _own_ids(console: ConsoleHarness, user: ConsoleUser) -> list[str]:
    """The user's console events, newest first, read from the log itself."""
    own = [
        e["event_id"]
        for e in console.events()
        if e["context"].get("source") == "console"
        and (e["details"].get("user") or {}).get("provider") == user.provider
        and (e["details"].get("user") or {}).get("id") == user.id
    ]
    return own[::-1]


def _rows(html: str) -> list[str]:
    return [part.split('"', 1)[0] for part in html.split('<a href="/events/')[1:]]


def test_the_page_lists_only_the_users_own_events(console: ConsoleHarness) -> None:
    client = console.login("alice")
    index(console.config)  # the login just recorded is alice's too
    answer = client.get("/my-log")
    assert answer.status_code == 200
    expected = _own_ids(console, ME)
    assert len(expected) == MINE + 1
    assert _rows(answer.text) == expected
    assert isinstance(console.app.state.log_view.search(), IndexSearch)
    api = client.get("/api/v1/me/events").json()
    assert [e["event_id"] for e in api] == expected
    bob = console.login("bob")
    index(console.config)
    assert _rows(bob.get("/my-log").text) == _own_ids(console, SAME_NAME)
    assert bob.get("/my-log?after=nonsense").status_code == 400


def _pages(search: IndexSearch, user: ConsoleUser, size: int) -> Sequence[list[Any]]:
    pages: list[list[Any]] = []
    after: Cursor | None = None
    while True:
        found = user_page(search, user.provider, user.id, days=7, size=size, after=after)
        pages.append([h.fields.event_id for h in found.hits])
        if found.next is None:
            return pages
        after = found.next


def test_keyset_pages_read_the_index_not_the_whole_log(console: ConsoleHarness) -> None:
    store = store_destination(console.config)
    assert store is not None
    search = CountingSearch(store.index_path(console.config.data_path))
    try:
        total = search.index.count()
        assert total > OTHER_EVENTS
        pages = _pages(search, SAME_ID_OTHER_PROVIDER, 7)
        assert [i for p in pages for i in p] == _own_ids(console, SAME_ID_OTHER_PROVIDER)
        assert all(len(p) == 7 for p in pages[:-1]) and len(pages) > 3
        # The words of the provider and id find the user's events and the few that share
        # them, not the thousands of others.
        assert search.rows_read < 10 * MINE < total / 10
        # Only the last `days`: none of these events is in a window that starts now.
        assert user_page(search, ME.provider, ME.id, days=0, size=7).hits == []
    finally:
        search.close()
