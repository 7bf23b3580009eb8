"""The two small languages of an alert rule, checked when the configuration loads.

- A condition (`event_type == 'restore.started' and context.environment == 'production'`)
  is a rule-engine expression: `==`, `!=`, `and`, `or`, `not`, comparisons, `in`,
  `=~` (regular-expression match) and dotted paths into the event. `check_condition`
  parses it with rule-engine and words what is wrong with the column it is at.
- A template (`:warning: *{{ .event_type }}*`) is the seed's Go-template style: only
  path lookups `{{ .a.b }}` between literal text. `parse_template` splits it into text
  and paths, refusing anything else (pipes, functions, `if`, `range`) with its column;
  `render_template` fills the paths in from a mapping, escaping each value for where it
  goes (Slack mrkdwn, HTML, or plain text).

Both live with the configuration so that a bad rule is an error of `kaudit check-config`
and of `kaudit run` before anything starts; the alert engine evaluates what they accept.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import rule_engine

__all__ = [
    "ESCAPES",
    "Template",
    "check_condition",
    "parse_template",
    "render_template",
]

_ACCEPTED_CONDITION = (
    "accepted: comparisons (==, !=, <, <=, >, >=), =~ (regular-expression match), in, "
    "and, or, not, parentheses, 'strings', numbers, true/false/null, [lists] and dotted "
    "paths into the event such as context.environment"
)


def check_condition(text: str) -> str | None:
    """Why `text` is not a condition, with the column it goes wrong at; None when it is."""
    try:
        rule_engine.Rule(text, context=rule_engine.Context(default_value=None))
    except rule_engine.errors.RuleSyntaxError as exc:
        token = exc.token
        if token is None:
            where = f"column {len(text) + 1} (the end)"
        else:
            where = f"column {token.lexpos + 1} ({token.value!r})"
        return f"{where}: {exc.message}; {_ACCEPTED_CONDITION}"
    except rule_engine.errors.RegexSyntaxError as exc:
        return f"regular expression {exc.value!r}: {exc.message}"
    except rule_engine.errors.EngineError as exc:
        return f"{getattr(exc, 'message', exc)}; {_ACCEPTED_CONDITION}"
    return None


# ---------------------------------------------------------------------------- templates

Template = tuple[str | tuple[str, ...], ...]
"""A parsed template: literal text, and paths (tuples of keys) to fill in."""

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_PATH = re.compile(r"(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


class TemplateSyntaxError(ValueError):
    """A template with something other than path lookups between `{{` and `}}`."""


def parse_template(text: str) -> Template:
    """`text` as literal parts and paths; TemplateSyntaxError naming the column of the
    first action that is not a path lookup like `{{ .actor.id }}`."""
    parts: list[str | tuple[str, ...]] = []
    at = 0
    for match in _ACTION.finditer(text):
        if match.start() > at:
            parts.append(text[at : match.start()])
        action = match.group(1)
        if not _PATH.fullmatch(action):
            raise TemplateSyntaxError(
                f"column {match.start() + 1}: {{{{ {action} }}}} is not a path lookup; "
                "templates take only paths into the alert and its event, like "
                "{{ .event_type }} or {{ .actor.id }} (no functions, pipes, if or range)"
            )
        parts.append(tuple(action[1:].split(".")))
        at = match.end()
    rest = text[at:]
    if "{{" in rest:
        column = at + rest.index("{{") + 1
        raise TemplateSyntaxError(f"column {column}: '{{{{' is never closed with '}}}}'")
    if rest:
        parts.append(rest)
    return tuple(parts)


def _slack(text: str) -> str:
    # Slack's mrkdwn gives &, < and > meaning (links, mentions); everything else is literal.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(text: str) -> str:
    return text


_MARKDOWN_LINK = re.compile(r"([\\\[\]()])")


def _teams(text: str) -> str:
    # Adaptive Card TextBlocks and facts read Markdown: a value of "[Re-login](https://…)"
    # would be a link that hides where it goes. A backslash makes the link's marks
    # literal; emphasis marks are left, since Teams mobile shows escapes as written.
    return _MARKDOWN_LINK.sub(r"\\\1", text)


ESCAPES: dict[str, Callable[[str], str]] = {
    "slack": _slack,
    "html": html.escape,
    "plain": _plain,
    "teams": _teams,
}
"""How a value is escaped for each kind of target."""


def _lookup(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value, default=str).decode()


def render_template(template: Template, data: Mapping[str, Any], escape: str = "plain") -> str:
    """The template filled in from `data`; a missing path renders as nothing, every value
    passes through the `escape` of its target (literal text is the operator's own)."""
    quote = ESCAPES[escape]
    return "".join(
        part if isinstance(part, str) else quote(_text(_lookup(data, part))) for part in template
    )
