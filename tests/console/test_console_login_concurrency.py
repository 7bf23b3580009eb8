"""A local login checks its password off the event loop and counts against the limits
before the check: the console answers other requests while argon2 runs, and concurrent
wrong passwords cannot all slip past the per-user limit. The console runs on a real
uvicorn server; the user's hash is made slow (argon2 time cost) to widen the window."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher

from kaudit.console.serve import ConsoleServer
from kaudit.dev.ports import free_port_block
from kaudit.session import AuditSession
from support.console import console_config, page_csrf

PER_USER = 2


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ConsoleServer]:
    slow = PasswordHasher(time_cost=40, memory_cost=65536, parallelism=1).hash("right")
    config = console_config(
        tmp_path,
        users=[{"username": "slow", "password_hash": slow, "roles": ["dev"]}],
        listen=f"127.0.0.1:{free_port_block(1)}",
        login_limits={"max_failures_per_user": PER_USER, "max_failures_per_address": 100},
    )
    with AuditSession(config, source="console") as session:
        served = ConsoleServer(config, session.recorder)
        served.start()
        try:
            yield served
        finally:
            served.stop()


def _wrong_login(url: str) -> int:
    with httpx.Client(base_url=url, timeout=120) as client:
        token = page_csrf(client.get("/login").text)
        data = {"username": "slow", "password": "wrong", "csrf_token": token}
        return client.post("/login", data=data).status_code


def test_the_console_answers_while_a_password_is_checked(server: ConsoleServer) -> None:
    limiter = server.app.state.console.limiter
    login = threading.Thread(target=_wrong_login, args=(server.url,))
    login.start()
    deadline = time.monotonic() + 60
    while not len(limiter):  # the attempt is counted before its password is checked
        assert time.monotonic() < deadline, "the login attempt was never counted"
        time.sleep(0.005)
    answer = httpx.get(f"{server.url}healthz", timeout=60)
    in_flight = login.is_alive()
    login.join()
    assert answer.status_code == 200
    assert in_flight, "healthz waited for the password check"


def test_concurrent_wrong_passwords_stay_within_the_limit(server: ConsoleServer) -> None:
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda _: _wrong_login(server.url), range(6)))
    assert sorted(codes) == [401] * PER_USER + [429] * (6 - PER_USER)
