"""The seed's `webhook` destination: batches of events POSTed as one JSON array.

Each request carries `X-Kaudit-Timestamp` (Unix seconds) and, with `secret` set,
`X-Kaudit-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, so the receiver
can check the sender and refuse replays of old requests. `Idempotency-Key` is the same
for the same events, so a receiver can drop the copies that at-least-once delivery
produces. 5xx, 408, 429, timeouts and refused connections are retried (`retry_attempts`
quick tries, then the runner's backoff, with the cursor held); 401/403/404 too, since
fixing the credentials or the URL makes them succeed; any other 4xx refuses the content
and the batch goes to the dead-letter file.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time

from kaudit.config.model import WebhookDestination
from kaudit.exporters.http import make_client, post_with_retries
from kaudit.exporters.records import Progress, batch_key

SIGNATURE_HEADER = "X-Kaudit-Signature"
TIMESTAMP_HEADER = "X-Kaudit-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class WebhookExporter:
    """POSTs the runner's batch in requests of at most `batch_size` events."""

    def __init__(self, destination: WebhookDestination) -> None:
        self.destination = destination
        self.name = destination.display_name
        self.url = destination.url.get_secret_value()
        headers = {key: value.get_secret_value() for key, value in destination.headers.items()}
        self.client = make_client(destination.timeout, headers)
        self._progress = Progress()

    def send(self, records: list[bytes]) -> None:
        size = self.destination.batch_size
        chunks = [records[i : i + size] for i in range(0, len(records), size)]
        # A retry of the same batch resumes after the requests already accepted.
        done = self._progress.start(batch_key(records))
        for number, chunk in enumerate(chunks):
            if number < done:
                continue
            body = b"[" + b",".join(chunk) + b"]"
            key = batch_key(chunk)
            post_with_retries(
                self.client,
                f"webhook destination {self.name}",
                self.url,
                body,
                functools.partial(self._headers, body, key),
                self.destination.retry_attempts,
            )
            self._progress.advance(number + 1)
        self._progress.finish()

    def _headers(self, body: bytes, key: str) -> dict[str, str]:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            TIMESTAMP_HEADER: timestamp,
        }
        if self.destination.secret:
            key = self.destination.secret.get_secret_value()
            headers[SIGNATURE_HEADER] = sign(key, timestamp, body)
        return headers

    def close(self) -> None:
        self.client.close()
