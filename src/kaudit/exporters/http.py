"""What the webhook and Slack destinations share: one httpx client, and the reading of an
HTTP answer as delivered, worth retrying, or refused for good."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import httpx

from kaudit.config.secrets import mask, shown_url
from kaudit.errors import DestinationHttpError, ExporterError
from kaudit.retry import Backoff
from kaudit.version import __version__

# Answers that mean "not now" or "not you yet": the same request can succeed later
# (after the receiver recovers, or someone fixes the credentials or the URL).
RETRYABLE_STATUS = frozenset({401, 403, 404, 408, 409, 425, 429})


def make_client(timeout: float, headers: Mapping[str, str] | None = None) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": f"kaudit/{__version__}", **(headers or {})},
        follow_redirects=False,
    )


REFUSED_HINT = " (the receiver refused the content: it goes to the dead-letter file)"


def post(
    client: httpx.Client,
    where: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    refused_hint: str = REFUSED_HINT,
) -> httpx.Response:
    """POST `body` and return the (2xx) answer, or raise an ExporterError saying why and
    whether to retry (`refused_hint` says what becomes of content refused for good)."""
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.TimeoutException as exc:
        waited = client.timeout.read
        raise ExporterError(
            f"{where}: no answer from {shown_url(url)} within {waited:g} s ({type(exc).__name__})",
            retryable=True,
        ) from exc
    except httpx.HTTPError as exc:
        raise ExporterError(
            f"{where}: cannot reach {shown_url(url)}: {mask(str(exc))}", retryable=True
        ) from exc
    if response.is_success:
        return response
    detail = response.text[:200].strip()
    status = response.status_code
    retryable = status >= 500 or status in RETRYABLE_STATUS
    if status in (401, 403):
        hint = " (check the credentials in headers)"
    elif status == 429:
        hint = f" (rate limited; Retry-After {response.headers.get('Retry-After', '-')})"
    elif not retryable:
        hint = refused_hint
    else:
        hint = ""
    raise DestinationHttpError(
        f"{where}: {shown_url(url)} answered {status} {response.reason_phrase}{hint}: "
        f"{mask(detail)}",
        status=status,
        retryable=retryable,
        retry_after=_seconds(response.headers.get("Retry-After")),
    )


def _seconds(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from webhooks; the runner's backoff covers it


def post_with_retries(
    client: httpx.Client,
    where: str,
    url: str,
    body: bytes,
    headers: Callable[[], dict[str, str]],
    attempts: int,
) -> None:
    """`post`, tried again up to `attempts` more times (0.25 s, 0.5 s, ... apart, at most
    2 s) when retrying can help; `headers` is called per try (fresh signature time)."""
    attempt = 0
    backoff = Backoff(0.25, 2.0)
    while True:
        try:
            post(client, where, url, body, headers())
            return
        except ExporterError as exc:
            attempt += 1
            if not exc.retryable or attempt > attempts:
                raise
            time.sleep(backoff.next_wait())
