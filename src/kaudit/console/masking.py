"""Masking of inspected messages: the `console.masking` rules hide JSON fields, header
values and text matching a pattern on the topics they name, unless the user holds
TOPIC_UNMASK; and how a message is shown (text, JSON or hex)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from typing import Any

import orjson

from kaudit.config.console import MaskRule

__all__ = ["MASK", "Masker", "render_bytes"]

MASK = "****"


class Masker:
    """The rules of one topic, applied to message bytes."""

    def __init__(self, rules: Sequence[MaskRule], topic: str) -> None:
        self.rules = [r for r in rules if any(fnmatch.fnmatchcase(topic, t) for t in r.topics)]
        self.fields = {f for r in self.rules for f in r.fields}
        self.headers = [h for r in self.rules for h in r.headers]
        self.patterns = [re.compile(r.pattern) for r in self.rules if r.pattern]

    def __bool__(self) -> bool:
        return bool(self.rules)

    def header(self, name: str, value: bytes) -> bytes:
        if any(fnmatch.fnmatchcase(name.lower(), h.lower()) for h in self.headers):
            return MASK.encode()
        return value

    def value(self, data: bytes | None) -> bytes | None:
        if data is None or not self.rules:
            return data
        if self.fields:
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict | list):
                data = orjson.dumps(self._mask_json(parsed, ""))
        if self.patterns:
            text = data.decode("utf-8", errors="replace")
            for pattern in self.patterns:
                text = pattern.sub(MASK, text)
            data = text.encode()
        return data

    def _mask_json(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                here = f"{path}.{key}" if path else str(key)
                hidden = key in self.fields or here in self.fields
                out[key] = MASK if hidden else self._mask_json(item, here)
            return out
        if isinstance(value, list):
            return [self._mask_json(item, path) for item in value]
        return value


def render_bytes(data: bytes | None, mode: str) -> Any:
    """`data` shown as `text` (UTF-8), `json` (parsed, or text when it is not JSON) or
    `hex`."""
    if data is None:
        return None
    if mode == "hex":
        return data.hex()
    if mode == "json":
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return data.decode("utf-8", errors="replace")
