"""Slack: an incoming webhook, or chat.postMessage with a bot token.

An incoming webhook posts to the channel it was created for (a `channel` in the payload
is ignored; the configuration warns), so where the channel matters a bot token posts
through the Web API's chat.postMessage instead. The text is the rule's `template`
rendered with every value escaped for Slack's mrkdwn. chat.postMessage answers 200 with
`{"ok": false, "error": ...}` when it refuses; `ratelimited` and 429 wait as asked.
"""

from __future__ import annotations

import os

import orjson

from kaudit.alerts.notifiers.base import message_text, post_json
from kaudit.alerts.state import AlertRecord
from kaudit.config.alerts import SlackNotify
from kaudit.config.secrets import register_secret, reveal
from kaudit.errors import NotificationError
from kaudit.exporters.http import make_client

_RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


class SlackNotifier:
    def __init__(self, target: SlackNotify) -> None:
        self.target = target
        self.client = make_client(target.timeout)

    def _credentials(self) -> tuple[str | None, str | None]:
        """(bot token, webhook URL): configured, else from the environment."""
        token = reveal(self.target.token)
        webhook = reveal(self.target.webhook)
        if token is None and webhook is None:
            token = os.environ.get(self.target.token_env) or None
            webhook = os.environ.get(self.target.webhook_env) or None
            register_secret(token)
            register_secret(webhook)
        return token, webhook

    def payload(self, alert: AlertRecord) -> dict[str, object]:
        text = message_text(self.target.template, alert, "slack")
        body: dict[str, object] = {"text": text, "unfurl_links": False}
        if self.target.channel:
            body["channel"] = self.target.channel
        return body

    def send(self, alert: AlertRecord) -> None:
        token, webhook = self._credentials()
        body = self.payload(alert)
        if token is not None:
            self._post_message(token, body)
        elif webhook is not None:
            body.pop("channel", None)  # an incoming webhook ignores it
            post_json(self.client, "slack alert", webhook, orjson.dumps(body))
        else:
            raise NotificationError(
                f"slack alert: no webhook or token configured, and ${self.target.token_env} "
                f"and ${self.target.webhook_env} are unset",
                retryable=True,
            )

    def _post_message(self, token: str, body: dict[str, object]) -> None:
        url = f"{self.target.api_url.rstrip('/')}/chat.postMessage"
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Authorization": f"Bearer {token}",
        }
        response = post_json(
            self.client, "slack chat.postMessage", url, orjson.dumps(body), headers
        )
        # A 2xx answer: Slack says in the body whether it posted.
        try:
            answer = response.json()
        except ValueError:
            return
        if isinstance(answer, dict) and not answer.get("ok", True):
            error = str(answer.get("error", "unknown"))
            raise NotificationError(
                f"slack chat.postMessage refused the message: {error}",
                retryable=error in _RETRYABLE_ERRORS,
            )

    def close(self) -> None:
        self.client.close()
