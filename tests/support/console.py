"""The console under test: a configuration, the app on an audit session of its own, and
an HTTP client that logs in and carries the CSRF token as a browser's page would.

`console_config` builds a `Config` with a `console:` section (local users whose
passwords are their names reversed, an RBAC policy); `ConsoleHarness` opens the session
and the app, and reads back what was recorded (`events`). Clients are Starlette's
TestClient: real HTTP semantics (cookies, redirects) in process.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from starlette.testclient import TestClient

from kaudit.config import Config
from kaudit.console.app import build_app
from kaudit.console.auth.local import hash_password
from kaudit.log.segments import LogReader
from kaudit.session import AuditSession

_HASHES: dict[str, str] = {}

SEED_POLICY = {
    # The seed's sample policy (Kpow): INSPECT, EDIT and PRODUCE on the cluster, for all.
    "resource": ["cluster", "*"],
    "effect": "Allow",
    "actions": ["TOPIC_INSPECT", "TOPIC_EDIT", "TOPIC_PRODUCE"],
    "role": "*",
}


def password_of(username: str) -> str:
    return username[::-1] + "-pw"


def local_user(username: str, *roles: str, name: str | None = None) -> dict[str, Any]:
    """A `console.users` entry; the password is `password_of(username)`."""
    if username not in _HASHES:
        _HASHES[username] = hash_password(password_of(username))
    return {
        "username": username,
        "password_hash": _HASHES[username],
        "name": name or username.title(),
        "email": f"{username}@example.com",
        "roles": list(roles),
    }


def console_config(
    tmp_path: Path,
    *,
    clusters: Sequence[Mapping[str, Any]] | None = None,
    users: Sequence[Mapping[str, Any]] = (),
    rbac: Mapping[str, Any] | None = None,
    **console: Any,
) -> Config:
    """A configuration with a local audit log in `tmp_path` and a `console:` section."""
    section: dict[str, Any] = {
        "clusters": list(
            clusters
            or [{"name": "offline", "id": "offline-id", "bootstrap_servers": ["127.0.0.1:9"]}]
        ),
        "users": list(users),
        **console,
    }
    if rbac is not None:
        section["rbac"] = dict(rbac)
    return Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "audit": {"log": {"type": "local"}},
            "console": section,
        }
    )


class ConsoleHarness:
    """The console app on its own audit session; `client()` gives a fresh browser."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.session = AuditSession(config, source="console")
        self.app = build_app(config, self.session.recorder)

    def client(self, **kwargs: Any) -> TestClient:
        return TestClient(self.app, **{"follow_redirects": False, **kwargs})

    def login(
        self, username: str, password: str | None = None, client: TestClient | None = None
    ) -> TestClient:
        """A client logged in as `username`, with its CSRF token in `client.headers`."""
        client = client or self.client()
        token = page_csrf(client.get("/login").text)
        answer = client.post(
            "/login",
            data={
                "username": username,
                "password": password or password_of(username),
                "csrf_token": token,
            },
        )
        assert answer.status_code == 303, (answer.status_code, answer.text[:500])
        me = client.get("/api/v1/me")
        assert me.status_code == 200, me.text
        client.headers["X-CSRF-Token"] = me.json()["csrf_token"]
        return client

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """Every event recorded so far (waits until written), optionally of one type."""
        self.session.flush()
        found = [orjson.loads(line) for _, line in LogReader(self.config.log_dir).iter_lines()]
        return [e for e in found if event_type is None or e["event_type"] == event_type]

    def event_for(self, response: Any) -> dict[str, Any]:
        """The one event a response's request was recorded as (by its request id)."""
        request_id = response.headers["x-request-id"]
        matching = [e for e in self.events() if e["context"]["correlation_id"] == request_id]
        assert len(matching) == 1, (request_id, matching)
        return matching[0]

    def close(self) -> None:
        self.app.state.console.service.clusters.close()
        self.session.close()


def page_csrf(html: str) -> str:
    """The CSRF token of a page's forms."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def harness(config: Config) -> Iterator[ConsoleHarness]:
    h = ConsoleHarness(config)
    try:
        yield h
    finally:
        h.close()
