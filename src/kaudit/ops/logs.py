"""kaudit's own log lines on stderr: as text for a person (`--log-format text`, the
default), or one JSON object per line for a log pipeline (`--log-format json`).

Every JSON line has the same fields: `ts` (UTC, ISO 8601 with milliseconds), `level`,
`logger`, `event`, `message`, `pid`, `thread`, and `exception` when there is one; fields
a caller passes with `extra=` follow under their own names. `event` is a stable name: the
`event` a caller gives (`extra={"event": "gateway.started"}`), else the logger's name and
the words of the message's template (`"%s failed, retrying in %.1fs: %s"` from
kaudit.exporters is `kaudit.exporters.failed_retrying_in_s`), so it stays the same
whatever the values in the message, and a query can select on it.

No secret reaches a line: every message, exception and string field passes through
kaudit.config.secrets.mask, as text logs do.

Lines for the person running a command (where a server listens, why it stopped) go
through `announce`, so that with `--log-format json` stderr holds JSON only.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
import sys
from typing import Any, Literal

from kaudit.config.secrets import MaskSecrets, mask

__all__ = ["LOG_FORMATS", "JsonFormatter", "LogFormat", "announce", "configure", "event_name"]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[str, ...] = ("text", "json")

_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[sdifrxXeEgGoca%]")
_WORD = re.compile(r"[a-z0-9]+")
_WORDS_KEPT = 6
# The attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "event",
    "kaudit_event",
}

_state: dict[str, Any] = {"format": "text", "handler": None}


def event_name(record: logging.LogRecord) -> str:
    """The record's stable event name (see the module's docstring)."""
    given = getattr(record, "event", None)
    if isinstance(given, str) and given:
        return given
    template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
    words = _WORD.findall(_PLACEHOLDER.sub(" ", template).lower())[:_WORDS_KEPT]
    return f"{record.name}.{'_'.join(words) or 'message'}"


class _NameEvent(logging.Filter):
    """Names the record's event before MaskSecrets may replace its template."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "kaudit_event"):
            record.kaudit_event = event_name(record)
        return True


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {str(k): _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return mask(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the fields the module's docstring lists."""

    def format(self, record: logging.LogRecord) -> str:
        when = _dt.datetime.fromtimestamp(record.created, _dt.UTC)
        body: dict[str, Any] = {
            "ts": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "kaudit_event", None) or event_name(record),
            "message": mask(record.getMessage()),
            "pid": record.process,
            "thread": record.threadName,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            body["exception"] = mask(record.exc_text)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in body:
                body[key] = _masked(value)
        return json.dumps(body, ensure_ascii=False, default=str)


def configure(log_format: str = "text", level: str = "warning") -> logging.Handler:
    """Send kaudit's log records at `level` and above to stderr in `log_format`, with
    every registered secret masked; replaces what an earlier call set up. The handler
    it installed on the root logger."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    root = logging.getLogger()
    old = _state["handler"]
    if old is not None:
        root.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"log level must be debug, info, warning or error, got {level!r}")
    handler.setLevel(numeric)
    handler.addFilter(_NameEvent())
    handler.addFilter(MaskSecrets())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter("%(message)s")
    )
    root.addHandler(handler)
    if root.level > numeric or root.level == logging.NOTSET:
        root.setLevel(numeric)
    # Python's warnings (a library's deprecation notice) become log records too, so
    # that under json every line on stderr is JSON.
    logging.captureWarnings(log_format == "json")
    _state["format"], _state["handler"] = log_format, handler
    return handler


def json_lines() -> bool:
    """Whether stderr takes JSON lines (`--log-format json`)."""
    return bool(_state["format"] == "json")


def announce(message: str, *, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Tell the person running kaudit `message`: a line of text on stderr, or under
    `--log-format json` a JSON line named `event`, whatever the log level."""
    handler = _state["handler"]
    if not json_lines() or handler is None:
        print(mask(message), file=sys.stderr, flush=True)
        return
    record = logging.LogRecord("kaudit", level, __file__, 0, message, None, None)
    record.event = event
    for key, value in fields.items():
        setattr(record, key, value)
    handler.handle(record)
