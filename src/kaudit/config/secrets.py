"""Secrets in the configuration, and keeping them out of everything kaudit says.

This module owns the secret field types (`Secret`, a pydantic `SecretStr` that prints as
`**********`; `SecretUrl`, an http(s) URL whose path and query are the secret, as a
Slack or webhook URL's are) and the process-wide register of secret values: every
secret of a loaded configuration, a `kafka://` source's password, the HMAC key. What
kaudit writes for people (log messages, errors, exporter status, dead-letter reasons)
passes through `mask`, which replaces each registered value with `***`, so a secret that
reached a message by some path (a client library's error text, a URL) still does not
leave.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from pydantic import AfterValidator, BaseModel, SecretStr

from kaudit.config.fields import config_error

__all__ = [
    "MASK",
    "MaskSecrets",
    "Secret",
    "SecretUrl",
    "mask",
    "register_config_secrets",
    "register_secret",
    "reveal",
    "shown_url",
]

MASK = "***"
_SHORTEST = 4  # shorter values would mask ordinary words
_JAAS_SECRET = re.compile(r'(?:password|token)\s*=\s*"([^"]*)"', re.I)
"""The passwords inside a JAAS configuration (`... password="…";`)."""
_SECRET_KEY = re.compile(r"password|secret|token|credential|authorization|jaas|api[._-]?key", re.I)

Secret = SecretStr
"""A secret string: `str()`/`repr()` and dumps to JSON print `**********`;
`reveal(value)` gives it to the code that must use it."""


def _http_url(value: SecretStr) -> SecretStr:
    if not re.match(r"^https?://[^\s/]+", value.get_secret_value()):
        raise config_error("url", "must be an http:// or https:// URL")
    return value


SecretUrl = Annotated[SecretStr, AfterValidator(_http_url)]
"""An http(s) URL that is itself a secret (an incoming-webhook URL): shown, when at all,
as `shown_url` (its scheme and host)."""

_lock = threading.Lock()
_secrets: set[str] = set()
_ordered: list[str] = []


def reveal(value: SecretStr | str | None) -> str | None:
    """The value of a secret field, for the code that must use it."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value


def shown_url(url: str) -> str:
    """A URL as messages may show it: its scheme and host, never its path, query or
    credentials (where a webhook URL keeps its secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}"


def register_secret(value: str | SecretStr | None) -> None:
    """Mask `value` (and its URL-encoded form; for a URL, its path and query too; for a
    JAAS configuration, the passwords in it too) in everything `mask` sees from now on."""
    text = reveal(value)
    if not text or len(text) < _SHORTEST:
        return
    forms = {text, quote(text, safe="")}
    forms.update(p for p in _JAAS_SECRET.findall(text) if len(p) >= _SHORTEST)
    if "://" in text:
        parts = urlsplit(text)
        forms.update(p for p in (parts.path, parts.query) if len(p) > 1)
    with _lock:
        new = forms - _secrets
        if new:
            _secrets.update(new)
            _ordered[:] = sorted(_secrets, key=len, reverse=True)


def register_config_secrets(node: Any) -> None:
    """Register every secret in a loaded configuration: `Secret` fields, and the values
    of settings maps (librdkafka `client_config`, HTTP `headers`) whose key names a
    password, secret, token, key or JAAS configuration."""
    if isinstance(node, SecretStr):
        register_secret(node)
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            register_config_secrets(getattr(node, name))
    elif isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and _SECRET_KEY.search(str(key)):
                register_secret(value)
            else:
                register_config_secrets(value)
    elif isinstance(node, list | tuple):
        for item in node:
            register_config_secrets(item)


def mask(text: str) -> str:
    """`text` with every registered secret replaced by `***`."""
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class MaskSecrets(logging.Filter):
    """A logging filter that masks registered secrets in each record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _ordered:
            message = record.getMessage()
            masked = mask(message)
            if masked != message:
                record.msg, record.args = masked, None
            if record.exc_info and not record.exc_text:
                record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
            elif record.exc_text:
                record.exc_text = mask(record.exc_text)
        return True
