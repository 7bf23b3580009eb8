"""Fixtures of the alert tests: the local HTTP peers and the SMTP server
(alert_servers.py), and configurations pointing the seed's rules at them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

# The TLS and port helpers of the destination tests (tests/exporters).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "exporters"))

import pytest
from alert_servers import AlertReceiver, SmtpServer


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    server = AlertReceiver()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path_factory.mktemp("smtp"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
