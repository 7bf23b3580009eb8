"""Real peers the alert notifiers are tested against.

- `AlertReceiver`: an HTTP server in a thread that plays Slack (incoming webhook and
  chat.postMessage), PagerDuty Events v2, a Teams Workflows webhook and a generic
  webhook. It checks each request the way the service does (required fields, allowed
  values, sizes) and refuses a bad one with 400 as the service would; tests script
  other answers (429 with Retry-After, 500) and assert on the exact payloads kept.
- `SmtpServer`: aiosmtpd in its own process (smtp_server.py) with STARTTLS required
  before AUTH, a login, and each message written to a directory.
"""

from __future__ import annotations

import collections
import http.server
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
from kaudit_destination_servers import free_port, make_pki, serve_posts, wait_for_port

PD_SEVERITIES = {"critical", "error", "warning", "info"}


def check_pagerduty(body: Any) -> str | None:
    """What PagerDuty's Events API v2 would refuse in `body` (None: it takes it)."""
    if not isinstance(body, dict) or not body.get("routing_key"):
        return "routing_key is required"
    action = body.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        return "event_action must be trigger, acknowledge or resolve"
    if action != "trigger":
        return None if body.get("dedup_key") else "dedup_key is required to " + action
    payload = body.get("payload")
    if not isinstance(payload, dict):
        return "payload is required"
    if not payload.get("summary") or len(payload["summary"]) > 1024:
        return "payload.summary is required (at most 1024 characters)"
    if not payload.get("source"):
        return "payload.source is required"
    if payload.get("severity") not in PD_SEVERITIES:
        return "payload.severity must be critical, error, warning or info"
    if len(body.get("dedup_key") or "") > 255:
        return "dedup_key is at most 255 characters"
    return None


def check_slack(body: Any) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"]:
        return "no_text"
    return None


def check_teams(body: Any) -> str | None:
    if not isinstance(body, dict) or body.get("type") != "message":
        return "type must be message"
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or len(attachments) != 1:
        return "one attachment expected"
    card = attachments[0]
    if card.get("contentType") != "application/vnd.microsoft.card.adaptive":
        return "contentType must be an adaptive card"
    content = card.get("content") or {}
    if content.get("type") != "AdaptiveCard" or not content.get("version"):
        return "content must be an AdaptiveCard with a version"
    if not isinstance(content.get("body"), list) or not content["body"]:
        return "the card needs a body"
    return None


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return orjson.loads(self.body)


class AlertReceiver:
    """One local HTTP server for all the HTTP targets, told apart by path."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[Request] = []
        self.script: collections.deque[tuple[int, bytes, dict[str, str]]] = collections.deque()
        self._changed = threading.Condition()
        self._server: http.server.ThreadingHTTPServer | None = None

    def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """Answer the next request so (after the scripted ones before it)."""
        with self._changed:
            self.script.append((status, body, headers or {}))

    def _reply(self, path: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        with self._changed:
            if self.script:
                return self.script.popleft()
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 400, b"invalid JSON", {}
        if path == "/v2/enqueue":
            problem = check_pagerduty(doc)
            if problem:
                return 400, orjson.dumps({"status": "invalid event", "errors": [problem]}), {}
            key = doc.get("dedup_key")
            return 202, orjson.dumps({"status": "success", "dedup_key": key}), {}
        if path == "/api/chat.postMessage":
            problem = check_slack(doc)
            if problem or not doc.get("channel"):
                return 200, orjson.dumps({"ok": False, "error": problem or "channel_not_found"}), {}
            return 200, orjson.dumps({"ok": True, "channel": "C1", "ts": "1.2"}), {}
        if path.startswith("/slack"):
            problem = check_slack(doc)
            return (400, problem.encode(), {}) if problem else (200, b"ok", {})
        if path.startswith("/teams"):
            problem = check_teams(doc)
            return (400, problem.encode(), {}) if problem else (202, b"", {})
        return 200, b"ok", {}

    def start(self) -> None:
        self._server = serve_posts(self.port, self._answer)

    def _answer(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        status, text, extra = self._reply(path, body)
        with self._changed:
            self.requests.append(Request(path, headers, body, status))
            self._changed.notify_all()
        return status, text, extra

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[Request]:
        """The requests once there are at least `count` of them."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.requests) >= count, timeout_s):
                raise AssertionError(f"{len(self.requests)} requests after {timeout_s} s")
            return list(self.requests)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class SmtpServer:
    """aiosmtpd with STARTTLS and AUTH, in its own process."""

    USER = "alerts"
    PASSWORD = "s3cret-smtp-password"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.mail_dir = directory / "mail"
        self.mail_dir.mkdir(parents=True)
        self.pki = make_pki(directory / "pki", "smtp")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        script = Path(__file__).with_name("smtp_server.py")
        env = {**os.environ, "SMTP_USER": self.USER, "SMTP_PASS": self.PASSWORD}
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(self.port), str(self.pki.cert_file),
             str(self.pki.key_file), str(self.mail_dir)],
            env=env,
        )  # fmt: skip
        wait_for_port(self.port, proc=self.proc)

    def messages(self, count: int, timeout_s: float = 30.0) -> list[EmailMessage]:
        """The messages received, once there are `count` (waiting on the directory)."""
        deadline = time.monotonic() + timeout_s
        while True:
            files = sorted(self.mail_dir.glob("*.eml"))
            if len(files) >= count:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(files)} messages after {timeout_s} s")
            time.sleep(0.05)
        return [message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]  # type: ignore[misc]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
