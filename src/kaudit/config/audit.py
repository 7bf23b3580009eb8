"""The `audit` section: what is recorded, how the recorder behaves, and where events go.

This module owns `AuditConfig`, which assembles the log, destinations, integrity and
retention sections with the recorder's own settings (failure policy, queue, event
selection, redaction), and the rules that span several of its keys: event selectors
checked against the catalog, `destination` versus `destinations`. Those rules run on the
raw input, so their problems are reported together with every other one.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

from kaudit.config.alerts import AlertRule, BuiltinAlerts
from kaudit.config.destinations import Destination
from kaudit.config.fields import ConfigModel, EventSelector, config_error
from kaudit.config.integrity import Integrity
from kaudit.config.log import LocalLog, LogConfig
from kaudit.config.retention import Retention
from kaudit.events.catalog import EventCatalog, is_glob

__all__ = ["AuditConfig", "CustomEventType", "KeyPattern"]


# ---------------------------------------------------------------------------- field types

_CUSTOM_EVENT_TYPE = re.compile(r"[a-z0-9_]+\.[a-z0-9_]+")


def _custom_event_type(name: str) -> str:
    if not _CUSTOM_EVENT_TYPE.fullmatch(name):
        raise config_error(
            "event_type_name",
            "must be category.verb in lowercase letters, digits and _ "
            f"(like 'billing.invoice_sent'), got {name!r}",
        )
    return name


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise config_error(
            "regex", f"must be a regular expression, got {pattern!r} ({exc})"
        ) from None
    return pattern


CustomEventType = Annotated[str, AfterValidator(_custom_event_type)]
"""An entry of `custom_event_types`: `category.verb` (like `billing.invoice_sent`)."""

KeyPattern = Annotated[str, AfterValidator(_regex)]
"""An entry of `redact_keys`: a regular expression for key names."""


# ---------------------------------------------------------------------------- the section


class AuditConfig(ConfigModel):
    """What is audited, how the recorder behaves under pressure, and where events go."""

    enabled: bool = True
    log: LogConfig = LocalLog()
    failure_policy: Literal["fail_open", "fail_closed"] = "fail_open"
    """fail_open drops (and counts) events when the log cannot keep up; fail_closed
    makes callers wait up to `block_timeout_ms`, then refuses their request."""
    queue_max_events: int = Field(default=100_000, gt=0)
    block_timeout_ms: int = Field(default=5000, ge=0)
    batch_max_events: int = Field(default=4096, gt=0)
    events: EventSelector = ["*"]
    exclude_events: EventSelector = []
    custom_event_types: list[CustomEventType] = []
    redact_keys: list[KeyPattern] = []
    """Regular expressions for key names to redact, on top of the built-in ones."""
    destination: Destination | None = None
    destinations: list[Destination] = []
    integrity: Integrity = Integrity()
    retention: Retention = Retention()
    alerts: list[AlertRule] = []
    """Alert rules (the OSO seed's `enterprise.audit.alerts`), see kaudit.config.alerts."""
    builtin_alerts: BuiltinAlerts = BuiltinAlerts()

    @property
    def all_destinations(self) -> list[Destination]:
        """`destination` and `destinations` as one list."""
        single = [self.destination] if self.destination is not None else []
        return [*single, *self.destinations]

    @model_validator(mode="wrap")
    @classmethod
    def _check_across_keys(
        cls, data: Any, handler: ModelWrapValidatorHandler[AuditConfig]
    ) -> AuditConfig:
        problems = _audit_problems(data) if isinstance(data, Mapping) else []
        if not problems:
            return handler(data)
        extra = [
            InitErrorDetails(type=config_error("cross_field", p.message), loc=p.loc, input=p.value)
            for p in problems
        ]
        try:
            handler(data)
        except ValidationError as exc:
            # Raise one error listing pydantic's problems and ours, so a reader fixes
            # everything in one pass.
            raise ValidationError.from_exception_data(
                exc.title, [*_reraisable(exc), *extra]
            ) from None
        raise ValidationError.from_exception_data(cls.__name__, extra)


# ---------------------------------------------------------------------------- across keys

_Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class _Problem:
    """A problem spanning several keys: where (relative to `audit`), what, and the value."""

    loc: _Loc
    message: str
    value: object


def _pattern_message(catalog: EventCatalog, pattern: str) -> str | None:
    """Why `pattern` selects nothing, or None when it selects at least one type."""
    if not is_glob(pattern):
        return None if pattern in catalog else catalog.unknown_message(pattern)
    if catalog.matching(pattern):
        return None
    categories = sorted({name.partition(".")[0] for name in catalog.names})
    hint = ""
    category, dot, rest = pattern.partition(".")
    if dot and not is_glob(category) and category not in categories:
        close = difflib.get_close_matches(category, categories, n=1, cutoff=0.6)
        if close:
            hint = f"; did you mean {close[0]}.{rest}?"
    return (
        f"pattern {pattern!r} matches no event type{hint} "
        f"(known categories: {', '.join(categories)})"
    )


def _selector_problems(catalog: EventCatalog, raw: Mapping[str, Any], loc: _Loc) -> list[_Problem]:
    problems = []
    for key in ("events", "exclude_events"):
        patterns = raw.get(key)
        if not isinstance(patterns, list):
            continue  # a wrong type is reported by pydantic itself
        for index, pattern in enumerate(patterns):
            if isinstance(pattern, str):
                message = _pattern_message(catalog, pattern)
                if message:
                    problems.append(_Problem((*loc, key, index), message, pattern))
    return problems


def _audit_problems(raw: Mapping[str, Any]) -> list[_Problem]:
    """Rules spanning several keys of `audit`, checked on the raw input.

    Working on the raw mapping rather than the validated model lets these problems be
    reported together with pydantic's own, instead of only once everything else is fixed.
    """
    custom = raw.get("custom_event_types")
    declared = (
        [n for n in custom if isinstance(n, str) and _CUSTOM_EVENT_TYPE.fullmatch(n)]
        if isinstance(custom, list)
        else []
    )
    catalog = EventCatalog(declared)
    problems = _selector_problems(catalog, raw, ())

    destination = raw.get("destination")
    if isinstance(destination, Mapping):
        problems += _selector_problems(catalog, destination, ("destination",))
    destinations = raw.get("destinations")
    if isinstance(destinations, list):
        for index, item in enumerate(destinations):
            if isinstance(item, Mapping):
                problems += _selector_problems(catalog, item, ("destinations", index))

    if destination is not None and isinstance(destinations, list) and destinations:
        problems.append(
            _Problem(
                (),
                "destination and destinations are both set; use destination for one "
                "destination or destinations for a list, not both",
                dict(raw),
            )
        )
    return problems


_PYDANTIC_ERROR_TYPES: frozenset[str] = frozenset(get_args(ErrorType))


def _reraisable(exc: ValidationError) -> list[InitErrorDetails]:
    """`exc`'s errors in the form `ValidationError.from_exception_data` takes back."""
    details: list[InitErrorDetails] = []
    for error in exc.errors():
        kind = error["type"]
        if kind in _PYDANTIC_ERROR_TYPES:
            detail = InitErrorDetails(type=kind, loc=error["loc"], input=error["input"])
            if "ctx" in error:
                detail["ctx"] = error["ctx"]
        else:
            custom = PydanticCustomError(kind, "{message}", {"message": error["msg"]})
            detail = InitErrorDetails(type=custom, loc=error["loc"], input=error["input"])
        details.append(detail)
    return details
