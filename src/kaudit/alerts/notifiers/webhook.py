"""A generic webhook: one JSON document per notification, signed like the webhook
destination (`X-Kaudit-Timestamp`, `X-Kaudit-Signature: sha256=<HMAC of
"<timestamp>.<body>">`), with the notification's identity as `Idempotency-Key` so a
receiver can drop the copy a retry after a lost answer produces."""

from __future__ import annotations

import time
from typing import Any

import orjson

from kaudit.alerts.notifiers.base import message_text, post_json
from kaudit.alerts.state import AlertRecord
from kaudit.config.alerts import WebhookNotify
from kaudit.exporters.http import make_client
from kaudit.exporters.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign


class WebhookNotifier:
    def __init__(self, target: WebhookNotify) -> None:
        self.target = target
        headers = {k: v.get_secret_value() for k, v in target.headers.items()}
        self.client = make_client(target.timeout, headers)

    def payload(self, alert: AlertRecord) -> dict[str, Any]:
        return {
            "kind": f"alert.{alert.status}",
            "alert": alert.data["alert"],
            "text": message_text(self.target.template, alert, "plain"),
            "event": {k: v for k, v in alert.data.items() if k not in ("alert", "severity")},
        }

    def send(self, alert: AlertRecord) -> None:
        body = orjson.dumps(self.payload(alert))
        timestamp = str(int(time.time()))
        headers = {
            "Idempotency-Key": f"{alert.dedup_key}-{alert.id}",
            TIMESTAMP_HEADER: timestamp,
        }
        if self.target.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.target.secret.get_secret_value(), timestamp, body)
        post_json(self.client, "webhook alert", self.target.url.get_secret_value(), body, headers)

    def close(self) -> None:
        self.client.close()
