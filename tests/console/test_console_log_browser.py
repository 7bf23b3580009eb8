"""The audit log pages in a real browser (headless Chromium) over a signed, indexed log:
the filter form lists what `kaudit search` lists, an event emitted after the page
loaded arrives in the live tail within 2 s (and waits, counted, while paused), an event
changed in the log reads FAILED, and a user's log holds only their own events. Keyboard
and both widths (1280 px, a phone) are checked; any CSP violation fails the test."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from playwright.sync_api import Page, expect

from kaudit.cli import main
from kaudit.config import Config
from kaudit.console.serve import ConsoleServer
from kaudit.dev.ports import free_port_block
from kaudit.log.segments import LogReader, segment_name
from kaudit.session import AuditSession
from kaudit.store.query import store_destination
from support.browser import browser_page
from support.console import local_user, password_of
from support.logpages import fill, index, log_pages_config


@dataclass
class Served:
    url: str
    config: Config
    session: AuditSession


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("log-browser")
    config = log_pages_config(
        tmp,
        users=[local_user("root", "ops", name="Root Admin"), local_user("alice", "dev")],
        listen=f"127.0.0.1:{free_port_block(1)}",
    )
    fill(config, 200)
    index(config)
    with AuditSession(config, source="console") as session:
        server = ConsoleServer(config, session.recorder)
        server.start()
        try:
            yield Served(server.url.rstrip("/"), config, session)
        finally:
            server.stop()


def _login(page: Page, url: str, user: str, then: str) -> list[str]:
    """Log in on the way to `then` (the cluster is offline: the home page would wait
    for it); the list that collects script errors and CSP violations."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(f"{url}{then}")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password_of(user))
    page.click("form.login button")
    page.wait_for_load_state()
    return problems


def _search_ids(config: Config, *options: str) -> list[str]:
    store = store_destination(config)
    assert store is not None
    path = str(store.index_path(config.data_path))
    result = CliRunner().invoke(main, ["search", path, "-o", "jsonl", "-n", "50", *options])
    assert result.exit_code == 0, result.output
    return [orjson.loads(line)["event_id"] for line in result.output.splitlines()]


def _row_ids(page: Page) -> list[str]:
    rows = page.locator("#audit-rows tbody tr.event")
    return [rows.nth(i).get_attribute("data-event-id") or "" for i in range(rows.count())]


def _no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"] + 1 if page.viewport_size else True, width


def test_an_admin_filters_follows_and_checks_events(served: Served) -> None:
    with browser_page("log-pages-admin") as page:
        page.set_viewport_size({"width": 1280, "height": 900})
        problems = _login(page, served.url, "root", "/overview")
        page.click("header nav >> text=Audit log")
        expect(page.locator("h1")).to_have_text("Audit log")
        _no_sideways_scroll(page)

        # The filter form by keyboard: the same rows as `kaudit search`.
        page.focus("input[name=type]")
        page.keyboard.type("topic.*")
        page.locator("select[name=result]").select_option("success")
        page.focus("input[name=actor]")
        page.keyboard.type("alice")
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(r"type=topic\.(\*|%2A)"))
        expected = _search_ids(served.config, "--type", "topic.*", "--result", "success",
                               "--actor", "alice", "--since", "7d")  # fmt: skip
        assert expected and _row_ids(page) == expected

        # A filter that cannot be read says why, on the page.
        page.goto(f"{served.url}/audit?since=last+tuesday")
        expect(page.locator("#filter-problem")).to_contain_text("neither a time nor a duration")

        # The live tail: an event emitted after the page loaded shows within 2 s.
        page.goto(f"{served.url}/audit")
        expect(page.locator("#live-state")).to_have_text("Live: new events appear at the top.")
        topic = f"live-{uuid.uuid4().hex[:8]}"
        emitted = time.monotonic()
        served.session.emit("topic.created", actor="User:live", resource=f"topic:{topic}")
        newest = page.locator("#audit-rows tbody tr.event").first
        expect(newest).to_contain_text(topic, timeout=2000)
        assert time.monotonic() - emitted < 2.5
        page.click("#live-toggle")
        held = f"held-{uuid.uuid4().hex[:8]}"
        served.session.emit("topic.deleted", actor="User:live", resource=f"topic:{held}")
        expect(page.locator("#live-waiting")).to_have_text("1 new event waiting")
        expect(page.locator("#audit-rows")).not_to_contain_text(held)
        page.click("#live-toggle")
        expect(page.locator("#audit-rows tbody tr.event").first).to_contain_text(held)

        # An event's badge: verified, then FAILED once its line is changed in the log.
        line = next(x for _, x in LogReader(served.config.log_dir).iter_lines()
                    if b'"result":"success"' in x)  # fmt: skip
        event_id = orjson.loads(line)["event_id"]
        page.goto(f"{served.url}/events/{event_id}")
        expect(page.locator("#integrity-badge")).to_have_text("verified")
        expect(page.locator("a[download]")).to_contain_text("Download the inclusion proof")
        segment = Path(served.config.log_dir) / segment_name(0)
        with open(segment, "r+b") as f:
            at = f.read().index(line)
            f.seek(at + line.index(b'"result":"success"'))
            f.write(b'"result":"failure"')
        page.reload()
        expect(page.locator("#integrity-badge")).to_have_text("FAILED")

        # A phone's width: everything reachable without sideways scrolling of the page.
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{served.url}/audit")
        _no_sideways_scroll(page)
        page.goto(f"{served.url}/overview")
        expect(page.locator("svg.chart").first).to_be_visible()
        _no_sideways_scroll(page)
    problems = [p for p in problems if "status of 400" not in p]  # the unreadable filter
    assert problems == [], problems


def test_a_users_log_holds_only_their_own_events(served: Served) -> None:
    with browser_page("log-pages-user") as page:
        problems = _login(page, served.url, "alice", "/audit")
        expect(page.locator("h1")).to_have_text("Refused")
        index(served.config)  # her login, as the store destination's exporter does
        page.click("header nav >> text=My log")
        expect(page.locator("h1")).to_have_text("My log")
        rows = page.locator("tr.event")
        expect(rows.first).to_be_visible()
        shown = {rows.nth(i).get_attribute("data-request-id") for i in range(rows.count())}
        served.session.flush()
        logged = [orjson.loads(x) for _, x in LogReader(served.config.log_dir).iter_lines()]
        alices = {e["context"]["correlation_id"] for e in logged
                  if (e["details"] or {}).get("user", {}).get("login") == "alice"}  # fmt: skip
        assert shown and shown <= alices
        index(served.config)  # as the store destination's exporter does
        rows.first.locator("a").click()
        expect(page.locator("#integrity-badge")).to_be_visible()
    problems = [p for p in problems if "status of 403" not in p]
    assert problems == [], problems
