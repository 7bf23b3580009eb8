"""Reading a configuration: YAML, `${VAR}` substitution, the `enterprise:` alias, validation.

This module owns the way from text to a `Config` and the wording of every configuration
error: each problem becomes a `ConfigIssue` naming the dotted path of the key, what was
wrong and what is accepted, and all of them are raised together as one `ConfigError`.
It reads the file it is given and nothing else.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml
from pydantic import BaseModel, Discriminator, Tag, ValidationError
from pydantic_core import ErrorDetails

from kaudit.config.model import Config, TypeSwitch
from kaudit.errors import ConfigError, ConfigIssue

__all__ = ["load_config", "load_config_text"]

PathPart = str | int


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, substitute and validate the configuration file at `path`.

    `env` defaults to the process environment. Raises `ConfigError` listing every
    problem, including a file that cannot be read.
    """
    source = os.fspath(path)
    try:
        # utf-8-sig: editors on Windows put a byte-order mark in front of YAML files.
        text = Path(source).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue("", "file not found")], source) from None
    except IsADirectoryError:
        raise ConfigError([ConfigIssue("", "is a directory, not a file")], source) from None
    except UnicodeDecodeError as exc:
        issue = ConfigIssue("", f"not UTF-8 text (byte {exc.start}: {exc.reason})")
        raise ConfigError([issue], source) from exc
    except OSError as exc:
        issue = ConfigIssue("", f"cannot read the file: {exc.strerror or exc}")
        raise ConfigError([issue], source) from exc
    return load_config_text(text, source, env)


def load_config_text(
    text: str, source: str = "<string>", env: Mapping[str, str] | None = None
) -> Config:
    """Parse, substitute and validate configuration `text`; `source` names it in errors.

    An empty document is the all-defaults configuration.
    """
    document = _parse(text, source)
    if document is None:
        document = {}
    if not isinstance(document, dict):
        accepted = ", ".join([*Config.model_fields, "enterprise"])
        issue = ConfigIssue(
            "", f"the top level must be a mapping with keys {accepted}, got {_show(document)}"
        )
        raise ConfigError([issue], source)

    issues: list[ConfigIssue] = []
    data = _substitute(document, env if env is not None else os.environ, (), issues)
    substitution_paths = {issue.path for issue in issues}
    data, audit_prefix = _apply_enterprise_alias(data, issues)

    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            issue = _issue(error, audit_prefix)
            # A value whose variable is unset still holds the `${...}` text; the type
            # error it causes repeats the substitution issue at the same path.
            if issue.path not in substitution_paths:
                issues.append(issue)
    else:
        if not issues:
            return config
    raise ConfigError(issues, source)


def with_overrides(config: Config, section: str, values: Mapping[str, Any], source: str) -> Config:
    """`config` with keys of one top-level section replaced (command-line options),
    validated like a file: errors name `source` and the section's key paths."""
    data = config.model_dump()
    current = data.get(section) or {}
    data[section] = {**current, **values}
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_issue(error, ()) for error in exc.errors()], source) from None


# ---------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """The safe loader, also noting keys written twice in one mapping.

    Plain YAML keeps the last value silently; in an audit configuration that can turn
    auditing off without anyone noticing, so duplicates are reported.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[ConfigIssue] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            # Keys brought in by `<<: *anchor` may be overridden on purpose.
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                mark = key_node.start_mark
                self.duplicates.append(
                    ConfigIssue(
                        "",
                        f"line {mark.line + 1}, column {mark.column + 1}: "
                        f"duplicate key {key_node.value!r} (write each key once)",
                    )
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _parse(text: str, source: str) -> Any:
    loader = _Loader(text)
    try:
        document = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([ConfigIssue("", f"{where}{problem}")], source) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue("", f"invalid YAML: {exc}")], source) from exc
    finally:
        loader.dispose()
    if loader.duplicates:
        raise ConfigError(loader.duplicates, source)
    return document


# ---------------------------------------------------------------------------- ${VAR}

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)(\}?)")
_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


def _substitute(
    value: Any, env: Mapping[str, str], path: tuple[PathPart, ...], issues: list[ConfigIssue]
) -> Any:
    """`value` with `${VAR}` / `${VAR:-default}` replaced in every string inside it."""
    if isinstance(value, str):
        return _substitute_string(value, env, format_path(path), issues)
    if isinstance(value, dict):
        return {
            key: _substitute(item, env, (*path, _path_key(key)), issues)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_substitute(item, env, (*path, i), issues) for i, item in enumerate(value)]
    return value


def _substitute_string(
    text: str, env: Mapping[str, str], path: str, issues: list[ConfigIssue]
) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        body, closed = match.group(1), match.group(2)
        variable = _VARIABLE.fullmatch(body)
        if not closed or variable is None:
            issues.append(
                ConfigIssue(
                    path,
                    f"malformed variable reference {match.group(0)!r} (write ${{NAME}} or "
                    "${NAME:-default}; write $${ for a literal ${)",
                )
            )
            return match.group(0)
        name, default = variable.group(1), variable.group(2)
        found = env.get(name)
        # As in POSIX shells and Compose, `:-` also replaces a variable set to "".
        if found is not None and (found or default is None):
            return found
        if default is not None:
            return default
        issues.append(
            ConfigIssue(
                path,
                f"environment variable {name} is not set and has no default "
                f"(write ${{{name}:-value}} to give one)",
            )
        )
        return match.group(0)

    return _REFERENCE.sub(replace, text)


# ---------------------------------------------------------------------------- enterprise:


def _apply_enterprise_alias(
    data: dict[Any, Any], issues: list[ConfigIssue]
) -> tuple[dict[Any, Any], tuple[PathPart, ...]]:
    """Move the OSO seed's `enterprise.audit` to `audit`.

    Returns the data to validate and the path `audit` was written at, so errors point
    to the key the user wrote.
    """
    if "enterprise" not in data:
        return data, ("audit",)
    data = dict(data)
    enterprise = data.pop("enterprise")
    if enterprise is None:
        return data, ("audit",)
    if not isinstance(enterprise, dict):
        issues.append(
            ConfigIssue("enterprise", f"must be a mapping with key audit, got {_show(enterprise)}")
        )
        return data, ("audit",)
    for key in enterprise:
        if key != "audit":
            issues.append(ConfigIssue(f"enterprise.{_path_key(key)}", _unknown_key(key, ["audit"])))
    if "audit" not in enterprise:
        return data, ("audit",)
    if "audit" in data:
        issues.append(
            ConfigIssue(
                "enterprise.audit",
                "audit is also set at the top level; enterprise.audit is another name for "
                "audit, so write it in one place",
            )
        )
        return data, ("audit",)
    data["audit"] = enterprise["audit"]
    return data, ("enterprise", "audit")


# ---------------------------------------------------------------------------- paths


def _path_key(key: object) -> str:
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


def _show(value: object) -> str:
    """A value as the user wrote it in YAML, short enough for one line."""
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


def _accepted_keys(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    keys = list(model.model_fields)
    if model is Config:
        keys.append("enterprise")
    return keys


def _unknown_key(key: object, accepted: Sequence[str]) -> str:
    text = _path_key(key)
    close = difflib.get_close_matches(text, accepted, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?; " if close else ""
    return f"unknown key {text!r} ({hint}accepted keys: {', '.join(accepted)})"


def _literal_choices(located: _Located, error: ErrorDetails) -> str:
    if get_origin(located.leaf) is Literal:
        return ", ".join(str(choice) for choice in get_args(located.leaf))
    return str(error.get("ctx", {}).get("expected", "")).replace("'", "")


def _bound(symbol: str, key: str) -> Callable[[ErrorDetails, _Located], str]:
    def message(error: ErrorDetails, _: _Located) -> str:
        return f"must be {symbol} {error.get('ctx', {}).get(key)}, got {_show(error['input'])}"

    return message


def _must_be(what: str) -> Callable[[ErrorDetails, _Located], str]:
    def message(error: ErrorDetails, _: _Located) -> str:
        return f"must be {what}, got {_show(error['input'])}"

    return message


def _string(error: ErrorDetails, _: _Located) -> str:
    value = error["input"]
    hint = " (put it in quotes to use it as text)" if isinstance(value, int | float) else ""
    return f"must be a string, got {_show(value)}{hint}"


def _mapping(error: ErrorDetails, located: _Located) -> str:
    keys = _accepted_keys(located.leaf if _is_model(located.leaf) else None)
    with_keys = f" with keys {', '.join(keys)}" if keys else ""
    return f"must be a mapping{with_keys}, got {_show(error['input'])}"


def _too_short(error: ErrorDetails, _: _Located) -> str:
    least = error.get("ctx", {}).get("min_length", 1)
    if least == 1:
        return "must not be empty"
    return f"must have at least {least} characters, got {_show(error['input'])}"


_MESSAGES: dict[str, Callable[[ErrorDetails, _Located], str]] = {
    "missing": lambda _, __: "missing required key",
    "extra_forbidden": lambda _, located: _unknown_key(
        located.parts[-1], _accepted_keys(located.owner)
    ),
    "literal_error": lambda error, located: (
        f"must be one of {_literal_choices(located, error)}, got {_show(error['input'])}"
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
    "kaudit_auditor_entry": lambda error, _: f"{error['msg']}, got {_show(error['input'])}",
}


def _issue(error: ErrorDetails, audit_prefix: tuple[PathPart, ...]) -> ConfigIssue:
    located = _locate(error["loc"])
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
        message = f"{text[:1].lower()}{text[1:]}, got {_show(error['input'])}"
    if parts[:1] == ["audit"]:
        parts[:1] = audit_prefix
    return ConfigIssue(format_path(parts), message)


def _type_message(error: ErrorDetails, switch: TypeSwitch, tags: list[str]) -> str:
    accepted = ", ".join(tags)
    value = error["input"]
    if not isinstance(value, Mapping):
        return (
            f"must be a mapping with a type key ({switch.kind} types: {accepted}), "
            f"got {_show(value)}"
        )
    if error["type"] == "union_tag_not_found" or value.get("type") is None:
        return f"missing required key (accepted {switch.kind} types: {accepted})"
    return f"unknown {switch.kind} type {_show(value.get('type'))}; accepted: {accepted}"
