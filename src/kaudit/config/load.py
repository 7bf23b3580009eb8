"""Reading a configuration: the file, YAML, `${VAR}` substitution, the `enterprise:` alias.

This module owns the way from text to a `Config`: it reads the file it is given and
nothing else, parses YAML (a key written twice is an error), substitutes variables
(`kaudit.config.env`), moves the OSO seed's `enterprise.audit` to `audit` and validates.
Every problem becomes a `ConfigIssue` naming the dotted path of the key, what was wrong
and what is accepted (worded by `kaudit.config.issues`), and all of them are raised
together as one `ConfigError`.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kaudit.config.env import substitute
from kaudit.config.issues import (
    PathPart,
    accepted_keys,
    path_key,
    show,
    unknown_key,
    validation_issue,
)
from kaudit.config.model import Config
from kaudit.config.secrets import register_config_secrets
from kaudit.errors import ConfigError, ConfigIssue

__all__ = ["load_config", "load_config_text"]


def load_config(
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Read, substitute and validate the configuration file at `path`.

    `env` defaults to the process environment. `overrides` (command-line options, by
    top-level section) replace or fill in the file's keys before it is validated, so a
    section the file leaves incomplete may be completed by them. Raises `ConfigError`
    listing every problem, including a file that cannot be read.
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
    return load_config_text(text, source, env, overrides)


def load_config_text(
    text: str,
    source: str = "<string>",
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Parse, substitute and validate configuration `text`; `source` names it in errors.

    An empty document is the all-defaults configuration.
    """
    document = _parse(text, source)
    if document is None:
        document = {}
    if not isinstance(document, dict):
        accepted = ", ".join(accepted_keys(Config))
        issue = ConfigIssue(
            "", f"the top level must be a mapping with keys {accepted}, got {show(document)}"
        )
        raise ConfigError([issue], source)

    issues: list[ConfigIssue] = []
    data = substitute(document, env if env is not None else os.environ, (), issues)
    substitution_paths = {issue.path for issue in issues}
    data, audit_prefix = _apply_enterprise_alias(data, issues)
    for section, values in (overrides or {}).items():
        current = data.get(section)
        data[section] = {**(current if isinstance(current, dict) else {}), **values}

    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            issue = validation_issue(error, audit_prefix)
            # A value whose variable is unset still holds the `${...}` text; the type
            # error it causes repeats the substitution issue at the same path.
            if issue.path not in substitution_paths:
                issues.append(issue)
    else:
        if not issues:
            register_config_secrets(config)  # masked in whatever kaudit says from now on
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
        raise ConfigError([validation_issue(error, ()) for error in exc.errors()], source) from None


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
            ConfigIssue("enterprise", f"must be a mapping with key audit, got {show(enterprise)}")
        )
        return data, ("audit",)
    for key in enterprise:
        if key != "audit":
            issues.append(ConfigIssue(f"enterprise.{path_key(key)}", unknown_key(key, ["audit"])))
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
