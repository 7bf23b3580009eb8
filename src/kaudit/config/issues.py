"""Configuration errors in the user's terms: the dotted path of the key and the message.

This module owns the wording of configuration errors. `validation_issue` follows a
pydantic error's location through the model to the path as the user wrote it
(`audit.destinations[1].path`, without the tags pydantic adds for unions) and says what
was wrong and what is accepted. `format_path`, `show` and `unknown_key` are shared with
the loader's own checks so that every message reads alike.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, Union, cast, get_args, get_origin, get_type_hints

from pydantic import BaseModel, Discriminator, SecretStr, Tag
from pydantic_core import ErrorDetails

from kaudit.config.fields import TypeSwitch
from kaudit.config.model import Config
from kaudit.errors import ConfigIssue

__all__ = [
    "PathPart",
    "accepted_keys",
    "format_path",
    "path_key",
    "show",
    "unknown_key",
    "validation_issue",
]

PathPart = str | int


# ---------------------------------------------------------------------------- paths


def path_key(key: object) -> str:
    """A mapping key as it appears in a path (YAML keys need not be strings)."""
    return key if isinstance(key, str) else str(key)


_PLAIN_KEY = re.compile(r"[^.\[\]\s\"]+")


def format_path(parts: Sequence[PathPart]) -> str:
    """`("audit", "destinations", 1, "path")` as `audit.destinations[1].path`.

    Keys that would make the path ambiguous (dots, brackets, spaces) are quoted:
    `auditors[0].config["sasl.jaas.config"]`.
    """
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += '["' + part.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    return text


@dataclass(frozen=True, slots=True)
class _Located:
    """Where a pydantic error location points in the model.

    `parts` is the path as the user wrote it (union tags removed), `owner` the model
    whose key the last part is, `leaf` the annotation the location ends on.
    """

    parts: list[PathPart]
    owner: type[BaseModel] | None
    leaf: Any


@cache
def _hints(model: type[BaseModel]) -> dict[str, Any]:
    return get_type_hints(model, include_extras=True)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _strip(annotation: Any) -> Any:
    """`annotation` without `| None` and without metadata other than a tagged union's."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated and not _is_tagged(annotation):
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _is_tagged(annotation: Any) -> bool:
    return get_origin(annotation) is Annotated and any(
        isinstance(m, Discriminator) for m in annotation.__metadata__
    )


def _switch(annotation: Any) -> TypeSwitch | None:
    if get_origin(annotation) is not Annotated:
        return None
    return next((m for m in annotation.__metadata__ if isinstance(m, TypeSwitch)), None)


def _variants(annotation: Any) -> dict[str, Any]:
    """A tagged union's members by tag."""
    base, *metadata = get_args(annotation)
    if get_origin(base) in (Union, types.UnionType):
        members = [get_args(m) for m in get_args(base) if get_origin(m) is Annotated]
    else:
        # A union of one member collapses into the outer Annotated, tag included.
        members = [(base, *metadata)]
    found: dict[str, Any] = {}
    for member, *member_metadata in members:
        tag = next((m for m in member_metadata if isinstance(m, Tag)), None)
        if tag is not None:
            found[tag.tag] = member
    return found


def _locate(loc: Sequence[PathPart]) -> _Located:
    """Follow `loc` through the model, dropping the tags pydantic adds for unions."""
    annotation: Any = Config
    owner: type[BaseModel] | None = None
    parts: list[PathPart] = []
    remaining = list(loc)
    while remaining:
        annotation = _strip(annotation)
        part = remaining[0]
        origin = get_origin(annotation)
        if _is_tagged(annotation):
            variants = _variants(annotation)
            if isinstance(part, str) and part in variants:
                annotation = variants[part]
                remaining.pop(0)
                continue
            break
        if _is_model(annotation):
            owner = annotation
            if not isinstance(part, str) or part not in annotation.model_fields:
                break
            annotation = _hints(annotation)[part]
        elif origin in (list, tuple) and isinstance(part, int):
            annotation = get_args(annotation)[0]
        elif origin is dict:
            annotation = get_args(annotation)[1]
        else:
            break
        parts.append(part)
        remaining.pop(0)
    if remaining:
        # Past what the model describes (free-form mappings, an unknown key): keep the
        # rest of the location as it is.
        parts.extend(remaining)
        annotation = Any
    return _Located(parts, owner, _strip(annotation))


# ---------------------------------------------------------------------------- messages


class _Hidden:
    """Stands for the value of a secret field in an error message."""


_HIDDEN = _Hidden()


def show(value: object) -> str:
    """A value as the user wrote it in YAML, short enough for one line (a secret's as
    `***`)."""
    if value is _HIDDEN:
        return "***"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def accepted_keys(model: type[BaseModel] | None) -> list[str]:
    """The keys `model` accepts; at the top level also `enterprise`, the alias of `audit`."""
    if model is None:
        return []
    keys = list(model.model_fields)
    if model is Config:
        keys.append("enterprise")
    return keys


def unknown_key(key: object, accepted: Sequence[str]) -> str:
    """The message for `key`, which is not one of `accepted`, suggesting the nearest."""
    text = path_key(key)
    close = difflib.get_close_matches(text, accepted, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?; " if close else ""
    return f"unknown key {text!r} ({hint}accepted keys: {', '.join(accepted)})"


def _literal_choices(located: _Located, error: ErrorDetails) -> str:
    if get_origin(located.leaf) is Literal:
        return ", ".join(str(choice) for choice in get_args(located.leaf))
    return str(error.get("ctx", {}).get("expected", "")).replace("'", "")


def _bound(symbol: str, key: str) -> Callable[[ErrorDetails, _Located], str]:
    def message(error: ErrorDetails, _: _Located) -> str:
        return f"must be {symbol} {error.get('ctx', {}).get(key)}, got {show(error['input'])}"

    return message


def _must_be(what: str) -> Callable[[ErrorDetails, _Located], str]:
    def message(error: ErrorDetails, _: _Located) -> str:
        return f"must be {what}, got {show(error['input'])}"

    return message


def _string(error: ErrorDetails, _: _Located) -> str:
    value = error["input"]
    hint = " (put it in quotes to use it as text)" if isinstance(value, int | float) else ""
    return f"must be a string, got {show(value)}{hint}"


def _mapping(error: ErrorDetails, located: _Located) -> str:
    keys = accepted_keys(located.leaf if _is_model(located.leaf) else None)
    with_keys = f" with keys {', '.join(keys)}" if keys else ""
    return f"must be a mapping{with_keys}, got {show(error['input'])}"


def _too_short(error: ErrorDetails, _: _Located) -> str:
    least = error.get("ctx", {}).get("min_length", 1)
    if least == 1:
        return "must not be empty"
    return f"must have at least {least} characters, got {show(error['input'])}"


_MESSAGES: dict[str, Callable[[ErrorDetails, _Located], str]] = {
    "missing": lambda _, __: "missing required key",
    "extra_forbidden": lambda _, located: unknown_key(
        located.parts[-1], accepted_keys(located.owner)
    ),
    "literal_error": lambda error, located: (
        f"must be one of {_literal_choices(located, error)}, got {show(error['input'])}"
    ),
    "greater_than": _bound(">", "gt"),
    "greater_than_equal": _bound(">=", "ge"),
    "less_than": _bound("<", "lt"),
    "less_than_equal": _bound("<=", "le"),
    "int_type": _must_be("an integer"),
    "int_parsing": _must_be("an integer"),
    "int_from_float": _must_be("an integer"),
    "bool_type": _must_be("true or false"),
    "bool_parsing": _must_be("true or false"),
    "string_type": _string,
    "string_too_short": _too_short,
    "list_type": _must_be("a list"),
    "dict_type": _must_be("a mapping"),
    "model_type": _mapping,
    "model_attributes_type": _mapping,
    "kaudit_auditor_entry": lambda error, _: f"{error['msg']}, got {show(error['input'])}",
}


def validation_issue(error: ErrorDetails, audit_prefix: tuple[PathPart, ...]) -> ConfigIssue:
    """Pydantic's `error` as an issue; `audit_prefix` is where `audit` was written."""
    located = _locate(error["loc"])
    if located.leaf is SecretStr:  # never repeat a secret's value, even a wrong one
        kind = "string_too_short" if error["type"] == "too_short" else error["type"]
        error = cast(ErrorDetails, {**error, "input": _HIDDEN, "type": kind})
    parts = list(located.parts)
    kind = error["type"]
    switch = _switch(located.leaf)
    if kind in ("union_tag_invalid", "union_tag_not_found") and switch is not None:
        message = _type_message(error, switch, sorted(_variants(located.leaf)))
        if isinstance(error["input"], Mapping):
            parts.append("type")
    elif kind in _MESSAGES:
        message = _MESSAGES[kind](error, located)
    elif kind.startswith("kaudit_"):
        message = error["msg"]
    elif kind == "value_error":
        message = error["msg"].removeprefix("Value error, ")
    else:
        text = error["msg"]
        message = f"{text[:1].lower()}{text[1:]}, got {show(error['input'])}"
    if parts[:1] == ["audit"]:
        parts[:1] = audit_prefix
    return ConfigIssue(format_path(parts), message)


def _type_message(error: ErrorDetails, switch: TypeSwitch, tags: list[str]) -> str:
    accepted = ", ".join(tags)
    value = error["input"]
    if not isinstance(value, Mapping):
        return (
            f"must be a mapping with a type key ({switch.kind} types: {accepted}), "
            f"got {show(value)}"
        )
    if error["type"] == "union_tag_not_found" or value.get("type") is None:
        return f"missing required key (accepted {switch.kind} types: {accepted})"
    return f"unknown {switch.kind} type {show(value.get('type'))}; accepted: {accepted}"
