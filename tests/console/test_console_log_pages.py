"""The audit log's API and pages over a signed, indexed log of generated traffic: the
same filter gives the same events as `kaudit search`, page after page; bad input is a
400 saying what was wrong; exports are audited; only admins read the audit log and a
user reads only their own events."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from kaudit.cli import main
from kaudit.store.query import store_destination
from support.asgi_server import serve
from support.console import (
    ConsoleHarness,
    console_config,
    harness,
    local_user,
    page_csrf,
    password_of,
)
from support.logpages import fill, index, log_pages_config


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleHarness]:
    """root (admin) and alice; 300 generated events, indexed."""
    tmp = tmp_path_factory.mktemp("log-pages")
    config = log_pages_config(tmp, users=[local_user("root", "ops"), local_user("alice", "dev")])
    fill(config, 300)
    index(config)
    yield from harness(config)


def _search(console: ConsoleHarness, *options: str, source: str | None = None) -> list[str]:
    """The event ids `kaudit search` prints (of one source: it has no such option)."""
    store = store_destination(console.config)
    assert store is not None
    path = str(store.index_path(console.config.data_path))
    result = CliRunner().invoke(main, ["search", path, "-o", "jsonl", "-n", "0", *options])
    assert result.exit_code == 0, result.output
    events = [orjson.loads(line) for line in result.output.splitlines()]
    return [e["event_id"] for e in events if source is None or e["context"]["source"] == source]


FILTERS: list[dict[str, str]] = [
    {"type": "topic.*"},
    {"actor": "alice"},
    {"result": "denied"},
    {"resource": "orders", "type": "records.*"},
    {"q": "billing"},
    {"since": "1h", "type": "acl.*", "result": "success"},
    {"cluster": "nothing-*"},
    {"source": "sdk", "type": "auth.*"},
]


@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: "&".join(f"{k}={v}" for k, v in f.items()))
def test_every_page_of_a_filter_lists_what_kaudit_search_lists(
    console: ConsoleHarness, flt: dict[str, str]
) -> None:
    client = console.login("root")
    seen: list[str] = []
    params: dict[str, Any] = {**flt, "size": 25}
    while True:
        answer = client.get("/api/v1/audit/events", params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        seen += [e["event_id"] for e in body["events"]]
        if body["next"] is None:
            break
        params["after"] = body["next"]
    options = [f"--{'query' if k == 'q' else k}={v}" for k, v in flt.items() if k != "source"]
    if "since" not in flt:
        options.append("--since=7d")
    assert seen == _search(console, *options, source=flt.get("source"))
    assert flt.get("cluster") or seen  # the generated traffic has events for each filter


BAD = [
    ("events?since=yesterday-ish", "since 'yesterday-ish' is neither"),
    ("events?since=99999999999d", "reaches outside the years 1 to 9999"),
    ("events?since=2026-01-02&until=2026-01-01", "is not before until"),
    ("events?result=maybe", "not one of success, failure, denied"),
    ("events?size=7", "size '7' is not one of"),
    ("events?after=page-two", "page cursor"),
    ("events?q=***", "no words to look for"),
    ("events?source=kafka", "source 'kafka' is not one of"),
    ("flows?period=forever", "is not a duration"),
    ("overview?period=0s", "between 1s and 366d"),
    ("export.xml", "export format 'xml'"),
]
PAGES = {
    "events": "/audit",
    "flows": "/map",
    "overview": "/overview",
    "export.xml": "/audit/export.xml",
}


@pytest.mark.parametrize(("url", "said"), BAD, ids=[u for u, _ in BAD])
def test_bad_input_is_a_400_that_says_what_is_accepted(
    console: ConsoleHarness, url: str, said: str
) -> None:
    client = console.login("root")
    answer = client.get(f"/api/v1/audit/{url}")
    assert answer.status_code == 400, answer.text
    assert said in answer.json()["message"]
    path, _, query = url.partition("?")
    page = client.get(f"{PAGES[path]}?{query}")
    assert page.status_code == 400
    assert said.replace("'", "&#39;") in page.text


def test_an_export_is_the_search_as_csv_and_is_audited(console: ConsoleHarness) -> None:
    client = console.login("root")
    answer = client.get("/audit/export.csv", params={"type": "acl.*"})
    assert answer.status_code == 200
    assert answer.headers["content-disposition"].startswith("attachment;")
    store = store_destination(console.config)
    assert store is not None
    cli = CliRunner().invoke(
        main,
        [
            "search",
            str(store.index_path(console.config.data_path)),
            "-o",
            "csv",
            "-n",
            "0",
            "--type",
            "acl.*",
            "--since",
            "7d",
        ],
    )
    assert answer.text == cli.output and answer.text.count("\n") > 2
    lines = client.get("/audit/export.jsonl", params={"type": "acl.*"}).text.splitlines()
    exported = console.events("audit.exported")
    assert [e["details"]["request"]["format"] for e in exported[-2:]] == ["csv", "jsonl"]
    last = exported[-1]
    assert last["details"]["user"]["login"] == "root"
    assert last["details"]["request"]["filter"] == {"type": "acl.*", "since": "7d"}
    assert last["details"]["outcome"] == {"events": len(lines)}


def test_only_admins_read_the_audit_log_and_users_only_their_own_events(
    console: ConsoleHarness,
) -> None:
    alice = console.login("alice")
    for url in (
        "/audit",
        "/api/v1/audit/events",
        "/overview",
        "/map",
        "/audit/export.csv",
        "/api/v1/audit/flows",
    ):
        assert alice.get(url).status_code == 403, url
    console.login("root")
    logins = [e for e in console.events("auth.login") if e["context"]["source"] == "console"]
    own = next(e for e in logins if e["details"]["user"]["login"] == "alice")
    other = next(e for e in logins if e["details"]["user"]["login"] == "root")
    index(console.config)
    assert alice.get(f"/api/v1/audit/events/{own['event_id']}").status_code == 200
    assert alice.get(f"/api/v1/audit/events/{other['event_id']}").status_code == 403
    mine = alice.get("/api/v1/me/events").json()
    assert mine and {e["details"]["user"]["login"] for e in mine} == {"alice"}


def test_an_event_has_a_verified_proof_kaudit_verify_proof_accepts(
    console: ConsoleHarness, tmp_path: Path
) -> None:
    client = console.login("root")
    event = client.get("/api/v1/audit/events", params={"size": 25}).json()["events"][-1]
    detail = client.get(f"/api/v1/audit/events/{event['event_id']}").json()
    assert detail["integrity"]["status"] == "verified", detail["integrity"]
    assert detail["event"] == event
    proof = tmp_path / "proof.json"
    proof.write_bytes(client.get(f"/events/{event['event_id']}/proof").content)
    key = console.config.audit.integrity.checkpoints.key_file
    assert key is not None
    pub = key.removesuffix(".key") + ".pub"
    checked = CliRunner().invoke(main, ["verify-proof", str(proof), "--public-key", pub])
    assert checked.exit_code == 0 and "is included at index" in checked.output


def test_the_overview_verifies_the_log_on_request(console: ConsoleHarness) -> None:
    client = console.login("root")
    assert client.get("/api/v1/audit/overview").json()["last_verify"] is None
    assert client.post("/overview/verify").status_code == 303
    overview = client.get("/api/v1/audit/overview").json()
    assert overview["last_verify"]["ok"] is True, overview["last_verify"]
    assert overview["checkpoint"]["size"] >= 300
    assert overview["top_principals"] and overview["top_refusals"]
    hours = overview["by_result"]
    assert sum(sum(counts.values()) for _, counts in hours) > 0


def test_without_checkpoints_or_an_index_an_event_is_never_shown_verified(
    tmp_path: Path,
) -> None:
    config = console_config(tmp_path, users=[local_user("root", "ops")],
                            rbac={"admin_roles": ["ops"], "policies": []})  # fmt: skip
    for h in harness(config):
        client = h.login("root")
        h.session.flush()
        events = client.get("/api/v1/audit/events").json()["events"]  # a scan of the log
        assert events
        detail = client.get(f"/api/v1/audit/events/{events[0]['event_id']}").json()
        assert detail["integrity"]["status"] == "unchecked"
        assert "no signed checkpoint" in detail["integrity"]["message"]
        page = client.get(f"/events/{events[0]['event_id']}")
        assert "cannot be checked" in page.text and "badge-verified" not in page.text


def _login_over_http(base: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30, follow_redirects=False)
    token = page_csrf(client.get("/login").text)
    answer = client.post("/login", data={"username": username, "password": password_of(username),
                                         "csrf_token": token})  # fmt: skip
    assert answer.status_code == 303, answer.text[:300]
    client.headers["X-CSRF-Token"] = client.get("/api/v1/me").json()["csrf_token"]
    return client


def test_the_live_tail_ends_when_its_session_ends(console: ConsoleHarness) -> None:
    with serve(console.app) as base:
        root = _login_over_http(base, "root")
        try:
            with root.stream("GET", "/audit/tail") as tail:
                assert tail.status_code == 200
                lines = tail.iter_lines()
                assert next(lines) == "retry: 1000"
                assert root.post("/logout").status_code == 303
                events = [ln for ln in itertools.islice(lines, 40) if ln.startswith("event:")]
                # Only rows of events written meanwhile (the logout's own) come before it.
                assert events and events[-1] == "event: end", events
            refused = root.get("/audit/tail")
            assert refused.status_code in (303, 401, 403)
        finally:
            root.close()
