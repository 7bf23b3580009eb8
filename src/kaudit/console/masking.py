"""Masking of inspected messages: the `console.masking` rules hide JSON fields, header
values and text matching a pattern on the topics they name, unless the user holds
TOPIC_UNMASK; and how a message is shown (text, JSON or hex). Masking fails closed: a
value on a topic with field rules that cannot be read as JSON (after a UTF-8 BOM or the
Confluent wire format's 5-byte prefix is set aside) is hidden whole."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from typing import Any

import orjson

from kaudit.config.console import MaskRule

__all__ = ["MASK", "Masker", "render_bytes"]

MASK = "****"
_BOM = b"\xef\xbb\xbf"
_CONFLUENT_MAGIC = b"\x00"  # then a 4-byte schema id, then the payload


def _json_body(data: bytes) -> Any:
    """The JSON in `data`, past a BOM or a Confluent wire-format prefix, with JSON
    carried inside a JSON string unwrapped; None when there is none."""
    for body in (data.removeprefix(_BOM), data[5:] if data[:1] == _CONFLUENT_MAGIC else None):
        if body is None:
            continue
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            continue
        return _unwrapped(parsed)
    return None


def _unwrapped(value: Any) -> Any:
    if isinstance(value, str):
        try:
            inner = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
        if isinstance(inner, dict | list):
            return inner
    return value


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
        return self._patterned(value)

    def key(self, data: bytes | None) -> bytes | None:
        return None if data is None else self._patterned(data)

    def value(self, data: bytes | None) -> bytes | None:
        if data is None or not self.rules:
            return data
        if self.fields:
            parsed = _json_body(data)
            if isinstance(parsed, dict | list):
                data = orjson.dumps(self._mask_json(parsed, ""))
            elif parsed is None or isinstance(parsed, str):
                # Not JSON fields can be found in: hidden whole rather than shown.
                return MASK.encode()
        return self._patterned(data)

    def _patterned(self, data: bytes) -> bytes:
        if not self.patterns:
            return data
        text = data.decode("utf-8", errors="replace")
        for pattern in self.patterns:
            text = pattern.sub(MASK, text)
        return text.encode()

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
        if isinstance(value, str):
            inner = _unwrapped(value)
            if inner is not value:
                return orjson.dumps(self._mask_json(inner, path)).decode()
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
