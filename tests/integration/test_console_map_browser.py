"""The client–topic map in a real browser: a producer and a consumer run through the
gateway against the real broker, and the map the console draws from the gateway's
indexed log shows both, with their clients, the topic, and the records between them;
a node links to its events in the audit log."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from gateway_fixtures import RunningGateway
from playwright.sync_api import expect

from kaudit.console.serve import ConsoleServer
from kaudit.dev.ports import free_port_block
from kaudit.session import AuditSession
from support.browser import browser_page
from support.console import local_user, password_of
from support.kafka import create_topic
from support.logpages import index, log_pages_config

pytestmark = pytest.mark.kafka


def test_the_map_shows_the_producer_and_consumer_that_ran_through_the_gateway(
    gateway: RunningGateway,
    admin_config: dict[str, str],
    sasl_config: Callable[..., dict[str, str]],
    unique_topic: str,
    tmp_path: Path,
) -> None:
    create_topic(admin_config, unique_topic)
    admin = sasl_config("admin")
    producer = Producer(gateway.client({**admin, "client.id": "map-writer"}))
    for i in range(300):
        producer.produce(unique_topic, b"m" * 100, key=str(i).encode())
    assert producer.flush(30) == 0
    consumer = Consumer(gateway.client({**admin, "client.id": "map-reader",
                                        "group.id": f"g-{unique_topic}",
                                        "auto.offset.reset": "earliest"}))  # fmt: skip
    consumer.subscribe([unique_topic])
    received, deadline = 0, time.monotonic() + 30
    while received < 300 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            received += 1
    consumer.close()
    assert received == 300
    assert gateway.events("records.consumed")  # windows closed, everything durable

    # The console reads the gateway's log (and records its own events elsewhere).
    config = log_pages_config(
        tmp_path, users=[local_user("root", "ops")], data_dir=gateway.log_dir.parent,
        listen=f"127.0.0.1:{free_port_block(1)}",
    )  # fmt: skip
    index(config)
    own = log_pages_config(tmp_path / "console", users=[local_user("root", "ops")])
    with AuditSession(own, source="console") as session:
        server = ConsoleServer(config, session.recorder)
        server.start()
        try:
            url = server.url.rstrip("/")
            with browser_page("console-map") as page:
                page.goto(f"{url}/map")
                page.fill("input[name=username]", "root")
                page.fill("input[name=password]", password_of("root"))
                page.click("form.login button")
                expect(page.locator("h1")).to_have_text("Client–topic map")
                svg = page.locator("svg.map")
                expect(svg.locator(".node.producer")).to_contain_text(["User:admin · map-writer"])
                expect(svg.locator(".node.consumer")).to_contain_text(["User:admin · map-reader"])
                expect(svg.locator(".node.topic title")).to_have_text([unique_topic])
                produced = page.locator("tr.flow.produce", has_text=unique_topic)
                expect(produced).to_contain_text("map-writer")
                expect(produced.locator("td").nth(5)).to_have_text("300")
                consumed = page.locator("tr.flow.consume", has_text=unique_topic)
                expect(consumed.locator("td").nth(5)).to_have_text("300")

                # The search box narrows the map; a node opens its events.
                page.fill("input[name=focus]", "map-reader")
                page.keyboard.press("Enter")
                expect(svg.locator(".node.producer")).to_have_count(0)
                svg.locator(".node.topic", has_text=unique_topic).click()
                expect(page.locator("h1")).to_have_text("Audit log")
                expect(page.locator("#audit-rows tbody tr.event").first).to_contain_text(
                    unique_topic
                )
        finally:
            server.stop()
