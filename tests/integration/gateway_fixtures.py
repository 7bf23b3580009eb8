"""A real gateway in front of the run's real broker, recording to a local log in tmp.

`gateway_factory(**options)` starts one on free loopback ports (a bootstrap port and the
broker ports after it) with the given `gateway:` / `audit:` options; `.events()` makes
the produce/fetch windows close, waits until everything is durable and returns what the
log holds, decoded. Imported by the gateway test modules (see their `pytestmark`); the
topics and ACLs they start from are made with `support.kafka`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from kaudit.config import load_config_text
from kaudit.dev.kafka import KafkaInfo
from kaudit.dev.ports import free_port_block
from kaudit.gateway import GatewayThread, build_gateway
from kaudit.log.segments import LogReader
from kaudit.session import AuditSession


@dataclass
class RunningGateway:
    bootstrap: str
    session: AuditSession
    thread: GatewayThread
    log_dir: Path

    @property
    def gateway(self) -> Any:
        return self.thread.gateway

    def client(self, direct: dict[str, str]) -> dict[str, str]:
        """confluent-kafka settings `direct` with the gateway as bootstrap server."""
        return {**direct, "bootstrap.servers": self.bootstrap}

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        self.thread.call(self.gateway.flush_records)
        self.session.flush(10)
        reader = LogReader(self.log_dir)
        events: list[dict[str, Any]] = []
        position = reader.start()
        while True:
            lines, position = reader.read(position)
            if not lines:
                break
            events.extend(orjson.loads(line) for line in lines)
        if event_type is not None:
            events = [e for e in events if e["event_type"] == event_type]
        return events

    def log_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in sorted(self.log_dir.iterdir()) if p.is_file())

    closed: bool = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.thread.stop()
        self.session.close()


GatewayFactory = Callable[..., RunningGateway]


@pytest.fixture
def gateway_factory(kafka: KafkaInfo, tmp_path: Path) -> Iterator[GatewayFactory]:
    started: list[RunningGateway] = []

    def start(
        gateway: dict[str, Any] | None = None,
        audit: dict[str, Any] | None = None,
        upstream: str | None = None,
        auditors: list[Any] | None = None,
    ) -> RunningGateway:
        port = free_port_block(4)
        data_dir = tmp_path / f"gw-{len(started)}"
        document = {
            "data_dir": str(data_dir),
            "audit": {"failure_policy": "fail_open", **(audit or {})},
            "gateway": {
                "upstream": upstream or kafka.sasl_bootstrap_servers,
                "listen": f"127.0.0.1:{port}",
                "records_window_seconds": 3600,
                **(gateway or {}),
            },
        }
        if auditors is not None:
            document["auditors"] = auditors
        config = load_config_text(yaml.safe_dump(document), source="test", env={})
        session = AuditSession(config, source="gateway")
        thread = GatewayThread(build_gateway(config, session)).start()
        running = RunningGateway(f"127.0.0.1:{port}", session, thread, config.log_dir)
        started.append(running)
        return running

    yield start
    for running in started:
        running.close()


@pytest.fixture
def gateway(gateway_factory: GatewayFactory) -> RunningGateway:
    """A fail_open gateway over the broker's SASL listener."""
    return gateway_factory()


def one(events: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    """The single event whose dotted fields equal `match` (fails listing what there was)."""

    def field(event: dict[str, Any], dotted: str) -> Any:
        value: Any = event
        for part in dotted.split("__"):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    found = [e for e in events if all(field(e, k) == v for k, v in match.items())]
    summary = textwrap.shorten(
        str([(e["event_type"], e["resource"]["id"], e["action"]["result"]) for e in events]),
        2000,
    )
    assert len(found) == 1, f"{len(found)} events match {match}; recorded: {summary}"
    return found[0]
