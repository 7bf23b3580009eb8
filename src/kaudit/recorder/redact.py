"""Redaction: secrets never reach the log.

Values whose key looks sensitive (passwords, secrets, tokens, keys, SASL JAAS configs,
SCRAM credentials) are replaced by `[REDACTED]` anywhere in an event's details, including
config-change entries shaped like `{"field"|"name"|"key": "ssl.key.password", "value" |
"old_value" | "new_value": ...}` where the sensitive name is a sibling of the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"

BUILTIN_SENSITIVE = (
    r"pass(word|wd|phrase)?",
    r"secret",
    r"token",
    r"credential",
    r"api[_.-]?key",
    r"private[_.-]?key",
    r"access[_.-]?key",
    r"sasl\.jaas\.config",
    r"\bjaas\b",
    r"authorization",
    r"scram",
    r"salted",
    r"\bsalt\b",
    r"signing[_.-]?key",
    r"\.key$",
)

# Keys that match a sensitive pattern but name no secret: a delegation token's id (its
# secret is the HMAC, never recorded) and whether a login used a token.
PUBLIC_KEYS = frozenset({"token_id", "delegation_token"})

_NAME_KEYS = ("field", "name", "key", "config", "config_name")
_NAME_SET = frozenset(_NAME_KEYS)
_PLAIN, _SECRET, _NAMER = 0, 1, 2
_VALUE_KEYS = ("value", "old_value", "new_value", "values")


class Redactor:
    """Replaces sensitive values in nested details; `extra` adds key regexes."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self._pattern = re.compile("|".join((*BUILTIN_SENSITIVE, *extra)), re.IGNORECASE)
        self._kinds: dict[object, int] = {}

    def is_sensitive(self, key: str) -> bool:
        return key not in PUBLIC_KEYS and self._pattern.search(key) is not None

    def _kind(self, key: object) -> int:
        """0: an ordinary key; 1: a sensitive key; 2: a key naming another value's field."""
        kind = self._kinds.get(key)
        if kind is None:
            if type(key) is not str:
                return _PLAIN
            kind = _SECRET if self.is_sensitive(key) else _NAMER if key in _NAME_SET else _PLAIN
            if len(self._kinds) < 10_000:
                self._kinds[key] = kind
        return kind

    def details(self, details: Mapping[str, Any]) -> Mapping[str, Any]:
        """`details` with sensitive values redacted: the input itself when nothing needs
        redacting (the common case, checked without copying), else a redacted copy."""
        if type(details) is dict and self._clean(details):
            return details
        return self._mapping(details)

    def _clean(self, obj: dict[Any, Any]) -> bool:
        """True when no value in `obj` (recursively) needs redacting."""
        kinds = self._kinds
        for key, value in obj.items():
            kind = kinds.get(key)
            if kind is None:
                kind = self._kind(key)
            if kind and value is not None:
                if kind == _SECRET:
                    return False
                if type(value) is str and self.is_sensitive(value):
                    return False
            vtype = type(value)
            if vtype is str or vtype is int or vtype is float or vtype is bool or value is None:
                continue
            if vtype is dict:
                if not self._clean(value):
                    return False
            elif vtype is list or vtype is tuple:
                for element in value:
                    if type(element) is dict:
                        if not self._clean(element):
                            return False
                    elif isinstance(element, Mapping | list | tuple):
                        return False
            elif isinstance(value, Mapping):
                return False  # not a plain dict: let _mapping copy it into one
        return True

    def _mapping(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        sibling_secret = any(
            isinstance(obj.get(k), str) and self.is_sensitive(obj[k]) for k in _NAME_KEYS
        )
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if (isinstance(key, str) and self.is_sensitive(key) and value is not None) or (
                sibling_secret and key in _VALUE_KEYS and value is not None
            ):
                out[key] = REDACTED
            else:
                out[key] = self._value(value)
        return out

    def _value(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return self._mapping(value)
        if isinstance(value, list | tuple):
            return [self._value(v) for v in value]
        return value
