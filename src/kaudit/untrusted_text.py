"""Writing values that clients chose (client ids, principals, topic names, error texts)
where a reader's tool would otherwise act on them.

- A spreadsheet runs a CSV cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage
  return as a formula (a `client.id` of `=HYPERLINK(…)` in an export opened in Excel):
  `spreadsheet_cell` puts a `'` before such a cell, as OWASP advises, so it reads as text.
- A terminal acts on control characters (ANSI escapes can rewrite the screen or the
  window title): `terminal_text` writes them as `\\x1b`-style escapes.

JSON output needs neither: its encoder escapes control characters, and JSON is data.
This module imports nothing of kaudit's.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["spreadsheet_cell", "terminal_text"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def spreadsheet_cell(value: Any) -> Any:
    """`value`, with a `'` before it when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def terminal_text(text: str) -> str:
    """`text` with its control characters written as escapes (`\\x1b`, `\\n`)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
