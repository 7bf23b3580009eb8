"""Behind uvicorn, X-Forwarded-For is believed only from `console.trusted_proxies`: a
local process cannot forge the source address that login limits and `actor.ip_address`
rest on. The console runs on a real uvicorn server on a free local port."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest
from pydantic import ValidationError

from kaudit.console.serve import ConsoleServer
from kaudit.dev.ports import free_port_block
from kaudit.log.segments import LogReader
from kaudit.session import AuditSession
from support.console import console_config, local_user, page_csrf

FORGED = "203.0.113.9"


def _failed_login_address(tmp_path: Path, **console: object) -> str | None:
    config = console_config(
        tmp_path,
        users=[local_user("alice", "dev")],
        listen=f"127.0.0.1:{free_port_block(1)}",
        **console,
    )
    with AuditSession(config, source="console") as session:
        server = ConsoleServer(config, session.recorder)
        server.start()
        try:
            with httpx.Client(base_url=server.url) as client:
                token = page_csrf(client.get("/login").text)
                client.post(
                    "/login",
                    data={"username": "alice", "password": "wrong", "csrf_token": token},
                    headers={"X-Forwarded-For": FORGED},
                )
        finally:
            server.stop()
        session.flush()
        events = [orjson.loads(line) for _, line in LogReader(config.log_dir).iter_lines()]
    failed = [e for e in events if e["event_type"] == "auth.failed"]
    assert len(failed) == 1, events
    address: str | None = failed[0]["actor"]["ip_address"]
    return address


def test_forwarded_for_from_an_untrusted_local_process_is_ignored(tmp_path: Path) -> None:
    assert _failed_login_address(tmp_path) == "127.0.0.1"


def test_forwarded_for_from_a_trusted_proxy_is_believed(tmp_path: Path) -> None:
    assert _failed_login_address(tmp_path, trusted_proxies=["127.0.0.1/32"]) == FORGED


def test_a_trusted_proxy_must_be_an_address_or_network(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"'proxy\.local' is not an IP address or network"):
        console_config(tmp_path, trusted_proxies=["proxy.local"])
