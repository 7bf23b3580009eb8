"""`${VAR}` and `${VAR:-default}` substitution in a parsed configuration document.

This module owns the substitution rules: every string in the document is substituted
(keys are not), `$${` writes a literal `${`, `:-` also replaces a variable set to the
empty string, and an unset variable without a default or a malformed reference is an
issue at the path of the value holding it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kaudit.config.issues import PathPart, format_path, path_key
from kaudit.errors import ConfigIssue

__all__ = ["substitute"]

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)(\}?)")
_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


def substitute(
    value: Any, env: Mapping[str, str], path: tuple[PathPart, ...], issues: list[ConfigIssue]
) -> Any:
    """`value` with `${VAR}` / `${VAR:-default}` replaced in every string inside it."""
    if isinstance(value, str):
        return _substitute_string(value, env, format_path(path), issues)
    if isinstance(value, dict):
        return {
            key: substitute(item, env, (*path, path_key(key)), issues)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [substitute(item, env, (*path, i), issues) for i, item in enumerate(value)]
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
