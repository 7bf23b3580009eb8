"""The console in a real browser (headless Chromium): a local user logs in, creates a
topic, produces a message and inspects it, edits a config, is refused a delete by RBAC
and shown why; then each action is found in the user's log with the right fields. The
page runs under the console's strict CSP: any violation fails the test."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from console_fixtures import cluster_entry
from playwright.sync_api import expect

from kaudit.config import Config
from kaudit.console.serve import ConsoleServer
from kaudit.dev.kafka import KafkaInfo
from kaudit.dev.ports import free_port_block
from kaudit.log.segments import LogReader
from kaudit.session import AuditSession
from support.browser import browser_page
from support.console import console_config, local_user, password_of

pytestmark = pytest.mark.kafka

BUILDER_POLICIES = [
    {"resource": ["cluster", "*"], "effect": "Allow", "role": "builder",
     "actions": ["TOPIC_CREATE", "TOPIC_INSPECT", "TOPIC_EDIT", "TOPIC_PRODUCE"]},
    {"resource": ["cluster", "*", "topic", "*"], "effect": "Deny", "actions": ["TOPIC_DELETE"],
     "role": "builder"},
]  # fmt: skip


@pytest.fixture
def served(kafka: KafkaInfo, tmp_path: Path) -> Iterator[tuple[str, Config, AuditSession]]:
    config = console_config(
        tmp_path,
        clusters=[cluster_entry(kafka)],
        users=[local_user("bea", "builder", name="Bea Builder")],
        rbac={"policies": BUILDER_POLICIES},
        masking=[{"topics": ["payments-*"], "fields": ["card"]}],
        listen=f"127.0.0.1:{free_port_block(1)}",
    )
    with AuditSession(config, source="console") as session:
        server = ConsoleServer(config, session.recorder)
        server.start()
        try:
            yield server.url.rstrip("/"), config, session
        finally:
            server.stop()


def test_a_person_administers_a_topic_and_finds_each_action_in_their_log(
    served: tuple[str, Config, AuditSession],
) -> None:
    url, config, session = served
    topic = f"payments-{uuid.uuid4().hex[:8]}"
    problems: list[str] = []
    with browser_page("console-browser") as page:
        # CSP violations and script errors reach the console; the refused delete's 403
        # is expected and is the only failed load.
        page.on(
            "console",
            lambda m: (
                problems.append(m.text)
                if m.type == "error" and "status of 403" not in m.text
                else None
            ),
        )
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        boosted: list[str] = []  # requests htmx made: it loaded and runs under the CSP
        page.on("request", lambda r: boosted.append(r.url) if r.headers.get("hx-request") else None)
        page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))

        page.goto(f"{url}/")
        expect(page).to_have_url(re.compile(r"/login\?next="))
        page.fill("input[name=username]", "bea")
        page.fill("input[name=password]", password_of("bea"))
        page.click("form.login button")
        expect(page.locator("h1")).to_have_text("Topics of local")

        form = page.locator("form.create-topic")
        form.locator("input[name=name]").fill(topic)
        form.locator("input[name=partitions]").fill("2")
        form.locator("button").click()
        expect(page.locator("h1")).to_have_text(f"Topic {topic}")

        produce = page.locator("form.produce")
        produce.locator("input[name=key]").fill("order-1")
        produce.locator("textarea[name=value]").fill(
            '{"card": "4111-1111", "note": "<script>alert(1)</script>"}'
        )
        produce.locator("button").click()
        expect(page.locator("h1")).to_have_text(f"Message produced: {topic}")

        page.click(f"text=Back to {topic}")
        inspect = page.locator("form.inspect")
        inspect.locator("select[name=render]").select_option("json")
        inspect.locator("button").click()
        expect(page.locator("h1")).to_have_text(f"Messages of {topic}")
        value = page.locator("tr.message-row td.value").inner_text()
        assert "<script>alert(1)</script>" in value  # shown as text, never run
        assert '"card": "****"' in value and "4111" not in value  # masked

        page.goto(f"{url}/clusters/local/topics/{topic}")
        edit = page.locator("form.edit-configs")
        edit.locator("textarea[name=configs]").fill("retention.ms=3600000")
        edit.locator("button").click()
        expect(page.locator("h1")).to_have_text(f"Configs changed: {topic}")
        expect(page.locator("pre.result")).to_contain_text('"new": "3600000"')

        page.goto(f"{url}/clusters/local/topics/{topic}")
        page.locator("form.delete-topic button").click()
        expect(page.locator("h1")).to_have_text("Refused by RBAC")
        expect(page.locator(".reason")).to_contain_text("TOPIC_DELETE is denied by a policy")
        expect(page.locator("pre.policies")).to_contain_text('"effect": "Deny"')

        session.flush()
        page.goto(f"{url}/my-log")
        rows = page.locator("tr.event")
        expect(rows.first).to_be_visible()
        seen = {
            rows.nth(i).locator("td.action").inner_text(): rows.nth(i) for i in range(rows.count())
        }
        for action in ("create-topic", "produce", "inspect", "edit-topic-config", "delete-topic"):
            assert action in seen, (action, list(seen))
            expect(seen[action].locator("td.subjects")).to_have_text(topic)
        expect(seen["delete-topic"].locator("td.result")).to_contain_text("denied")
        expect(seen["delete-topic"].locator("td.rbac")).to_have_text("TOPIC_DELETE denied")
        expect(seen["create-topic"].locator("td.rbac")).to_have_text("TOPIC_CREATE allowed")
        expect(seen["create-topic"].locator("td.request")).to_contain_text('"partitions": 2')
        expect(seen["edit-topic-config"].locator("td.result")).to_have_text("success")
    assert problems == [], problems
    assert any("/produce" in u for u in boosted), boosted

    logged = [orjson.loads(line) for _, line in LogReader(config.log_dir).iter_lines()]
    by_action = {e["details"].get("console_action"): e for e in logged}
    assert by_action["login"]["actor"]["ip_address"] == "127.0.0.1"
    assert "HeadlessChrome" in by_action["create-topic"]["actor"]["user_agent"]
    assert by_action["produce"]["details"]["request"]["key"] == "order-1"
    assert by_action["inspect"]["details"]["outcome"]["masked"] is True
    assert by_action["delete-topic"]["action"]["result"] == "denied"
    assert by_action["delete-topic"]["authorization"]["policies"][0]["effect"] == "Deny"
    assert {e["context"]["cluster_id"] for e in logged if e["event_type"] != "auth.login"} == {
        by_action["create-topic"]["context"]["cluster_id"]
    }
