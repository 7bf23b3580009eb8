"""Kpow's Slack integration as a destination: each user action becomes one readable
message posted to a Slack incoming webhook.

`verbosity` chooses which actions: MUTATIONS (the default, as in Kpow) those that change
something, QUERIES those that only read, ALL both; the event catalog says which is which
(custom event types count as mutations). A message has a plain `text` (what notifications
show) and Block Kit blocks: who did what to which resource, the outcome, and a context
line with the cluster, client, time and event id. Slack allows about one message per
second per webhook, so a 429 is waited out as its Retry-After asks. A console action
reads as Kpow words it: "Action `create-topic: [tx-events]` by *John Smith* succeeded on
cluster `…`".
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from kaudit.config.model import SlackDestination
from kaudit.errors import DestinationHttpError
from kaudit.events.catalog import EventCatalog
from kaudit.events.model import AuditEvent
from kaudit.exporters.http import make_client, post
from kaudit.exporters.records import Progress, batch_key, render_lines

_CATALOG = EventCatalog()
_RESULT = {
    "success": ":white_check_mark: succeeded",
    "denied": ":no_entry: denied",
    "failure": ":x: failed",
}
_MAX_RETRY_AFTER_S = 30.0


def selected(event_type: str, verbosity: str) -> bool:
    """Whether `verbosity` sends events of this type."""
    if verbosity == "ALL":
        return True
    mutation = _CATALOG.get(event_type).mutation if event_type in _CATALOG else True
    return mutation == (verbosity == "MUTATIONS")


def _escape(text: str) -> str:
    # Slack's mrkdwn gives &, < and > meaning; everything else is literal.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_KPOW_OUTCOME = {"success": "succeeded", "failure": "failed", "denied": "was denied"}


def console_text(event: AuditEvent) -> str | None:
    """Kpow's sentence for an action taken in the console, or None for other events."""
    details = event.details or {}
    action = details.get("console_action")
    if event.context.source != "console" or not isinstance(action, str) or event.category == "auth":
        return None
    subjects = ", ".join(_escape(str(s)) for s in details.get("subjects") or ())
    user = details.get("user") or {}
    who = _escape(str(user.get("name") or user.get("login") or event.actor.id))
    outcome = _KPOW_OUTCOME.get(event.action.result, event.action.result)
    cluster = _escape(event.context.cluster_id or "-")
    return f"Action `{_escape(action)}: [{subjects}]` by *{who}* {outcome} on cluster `{cluster}`"


def message(event: AuditEvent, channel: str | None, username: str | None) -> dict[str, Any]:
    """The incoming-webhook payload for one event."""
    who = _escape(event.actor.id)
    what = _escape(event.event_type)
    where = _escape(f"{event.resource.type} {event.resource.id}")
    outcome = _RESULT.get(event.action.result, event.action.result)
    text = f"{who}: {event.event_type} on {event.resource.type} {event.resource.id}"
    headline = f"*{who}* `{what}` on *{where}* — {outcome}"
    kpow = console_text(event)
    if kpow is not None:
        text = headline = kpow
    if event.action.error:
        headline += f"\n> {_escape(event.action.error)}"
    fields = [f"*Operation*\n{_escape(event.action.operation)}"]
    if event.authorization is not None:
        decision = "allowed" if event.authorization.allowed else "denied"
        action = event.authorization.action or ""
        fields.append(f"*Authorization*\n{decision} {_escape(action)}".rstrip())
    if event.actor.ip_address or event.actor.client_id:
        client = " ".join(x for x in (event.actor.client_id, event.actor.ip_address) if x)
        fields.append(f"*Client*\n{_escape(client)}")
    context = [
        f"cluster {_escape(event.context.cluster_id or '-')}",
        _escape(event.timestamp),
        f"event {_escape(event.event_id)}",
    ]
    payload: dict[str, Any] = {
        "text": text[:3000],
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": headline[:3000]}},
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f[:2000]} for f in fields[:10]],
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]},
        ],
        "unfurl_links": False,
    }
    if channel:
        payload["channel"] = channel
    if username:
        payload["username"] = username
    return payload


class SlackExporter:
    """Posts one message per selected event, in log order."""

    native_input = True

    def __init__(self, destination: SlackDestination) -> None:
        self.destination = destination
        self.name = destination.display_name
        self.client = make_client(destination.timeout)
        self._progress = Progress()
        self.posted = 0

    @property
    def _where(self) -> str:
        return f"slack destination {self.name}"

    def send(self, records: list[bytes]) -> None:
        rendered = render_lines(records, "native", self.name, full=True)
        # A retry of the same batch resumes after the messages Slack already took.
        done = self._progress.start(batch_key(records))
        for index, item in enumerate(rendered):
            if index < done:
                continue
            event = item.event
            assert event is not None  # full=True decodes every event
            if selected(event.event_type, self.destination.verbosity):
                payload = message(event, self.destination.channel, self.destination.username)
                self._post(orjson.dumps(payload))
                self.posted += 1
            self._progress.advance(index + 1)
        self._progress.finish()

    def _post(self, body: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        try:
            post(
                self.client, self._where, self.destination.webhook.get_secret_value(), body, headers
            )
        except DestinationHttpError as exc:
            if exc.status != 429 or exc.retry_after is None:
                raise
            time.sleep(min(exc.retry_after, _MAX_RETRY_AFTER_S))
            post(
                self.client, self._where, self.destination.webhook.get_secret_value(), body, headers
            )

    def close(self) -> None:
        self.client.close()
