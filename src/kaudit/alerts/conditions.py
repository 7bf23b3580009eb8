"""Conditions: a rule's rule-engine expression, evaluated against a decoded event.

The seed writes dotted paths into the event (`context.environment`); rule-engine reads
those as attributes of a mapping through a slow, deprecated fallback that also computes
spelling suggestions on every miss. `_EventContext` resolves them itself: a key of a
mapping is looked up directly, a missing one (or one below a null) is null, never an
error. Nested mappings are handed to rule-engine as `_Node`s, which it does not copy,
so evaluating a condition costs the paths it reads, not the size of the event. Most
conditions are not walked by rule-engine at all: `kaudit.alerts.compiled` turns their
tree into closures once; the rest are evaluated this way.

`event_types` and `index` read the expression's tree for the values a path must have
for it to be true (`event_type == 'x'`, `action.result in ['denied', 'failure']`, joined
by `and`/`or`), so the engine looks a rule up by the event type, or another field, and
runs it only on events it can match; `needs_evaluation` is False when that test is the
whole condition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import rule_engine
from rule_engine import ast as rast
from rule_engine import types as rtypes

from kaudit.alerts.compiled import Compiled, EvalError, Getters, compile_tree, path_getter

__all__ = ["Condition"]


class _Node(Mapping[str, Any]):
    """A mapping of the event that rule-engine does not copy (it copies dicts deeply)."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return _value(self._data[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        return self._data == (other._data if isinstance(other, _Node) else other)

    __hash__ = None  # type: ignore[assignment]


def _value(value: Any) -> Any:
    if type(value) is dict:
        return _Node(value)
    if type(value) is list:
        return tuple(_value(v) for v in value)
    return value


_MAPPING_ATTRIBUTES = frozenset({"is_empty", "keys", "length", "values"})
"""rule-engine's own attributes of a mapping (`details.length`), used when no key of
that name is present."""


class _EventContext(rule_engine.Context):  # type: ignore[misc]
    """Dotted paths into nested mappings, missing keys as null."""

    def resolve_attribute(self, thing: Any, object_: Any, name: str) -> Any:
        if object_ is None:
            return None
        if isinstance(object_, _Node):
            data = object_._data
            if name in data:
                return rtypes.coerce_value(_value(data[name]), verify_type=False)
            if name in _MAPPING_ATTRIBUTES:
                plain = rtypes.coerce_value(data)
                return super().resolve_attribute(thing, plain, name)
            return None
        return super().resolve_attribute(thing, object_, name)


def _resolve_symbol(thing: Any, name: str) -> Any:
    value = thing.get(name) if isinstance(thing, dict) else None
    return _value(value)


_CONTEXT = _EventContext(default_value=None, resolver=_resolve_symbol)


Path = tuple[str, ...]
"""A dotted path into the event, as its keys."""


class Condition:
    """One rule's condition, compiled once."""

    __slots__ = (
        "_fast",
        "_indexed",
        "event_types",
        "index",
        "matches",
        "needs_evaluation",
        "paths",
        "rule",
        "test",
        "text",
    )

    def __init__(self, text: str) -> None:
        self.text = text
        self.rule = rule_engine.Rule(text, context=_CONTEXT)
        keys, exact = _keys(self.rule.statement.expression)
        types = keys.get(("event_type",))
        self.event_types: frozenset[str] | None = types
        """The event types the condition can match; None when it can match any."""
        self.index: tuple[Path, frozenset[str]] | None = None
        """Where the engine looks this rule up: the event types it can match, else
        the values another path must have (`action.result == 'denied'`); None when the
        condition names no such value."""
        if types is not None:
            self.index = (("event_type",), types)
        elif keys:
            self.index = next(iter(keys.items()))
        self.needs_evaluation = not (exact and len(keys) == 1)
        read: set[Path] = set()

        def recording(path: Path) -> Compiled:
            read.add(path)
            return path_getter(path)

        self._fast = compile_tree(self.rule.statement.expression, recording)
        self._indexed = (
            compile_tree(self.rule.statement.expression, known=self._holds_by_index)
            if self._fast is not None
            else None
        )
        self.paths: frozenset[Path] | None = frozenset(read) if self._fast is not None else None
        """The paths of the event the compiled condition reads; None when it is left to
        rule-engine (which may read anything)."""

        self.matches: Callable[[dict[str, Any]], bool] = self._chosen()
        """Whether the decoded event satisfies the condition (errors count as no)."""
        self.test: Callable[[dict[str, Any]], Any] = (
            self._indexed if self._indexed is not None else self.slow_matches
        )
        """`matches` for the engine's inner loop, on events found by `index` (the
        requirements the index met are not tested again), one call less: its result is
        truthy when the condition holds, and it may raise EvalError (which counts as no)."""

    def _chosen(self) -> Callable[[dict[str, Any]], bool]:
        fast = self._fast
        if fast is None:
            return self.slow_matches

        def matches(event: dict[str, Any]) -> bool:
            try:
                return bool(fast(event))
            except EvalError:
                return False

        return matches

    def slow_matches(self, event: dict[str, Any]) -> bool:
        """`matches` by rule-engine's own evaluation of the tree."""
        try:
            return bool(self.rule.matches(event))
        except (rule_engine.errors.EvaluationError, TypeError):
            # TypeError: `in` on a null container, which rule-engine does not catch.
            return False

    def _holds_by_index(self, part: Any) -> bool:
        """Whether a part of the top-level `and`s holds for every event found by the
        index: it requires the indexed path to be one of a set of strings, and the
        index's values are the intersection of every such set."""
        if self.index is None:
            return False
        keys, exact = _keys(part)
        return exact and list(keys) == [self.index[0]]

    def test_with(self, get: Getters) -> Compiled:
        """`test` on events whose paths `get` reads (a compiled condition only)."""
        test = compile_tree(self.rule.statement.expression, get, self._holds_by_index)
        if test is None:
            raise ValueError(f"condition {self.text!r} is not compiled")
        return test

    @property
    def compiled(self) -> bool:
        """Whether `matches` runs the compiled closures (else rule-engine's evaluation)."""
        return self._fast is not None


def _path(node: Any) -> Path | None:
    """The dotted path an expression reads (`context.environment`), if it is one."""
    if isinstance(node, rast.SymbolExpression) and node.scope is None:
        return (node.name,)
    if isinstance(node, rast.GetAttributeExpression) and not node.safe:
        parent = _path(node.object)
        return None if parent is None else (*parent, node.name)
    return None


def _literal_strings(node: Any) -> frozenset[str] | None:
    if isinstance(node, rast.StringExpression):
        return frozenset([node.value])
    if isinstance(node, rast.ArrayExpression) and all(
        isinstance(item, rast.StringExpression) for item in node.value
    ):
        return frozenset(item.value for item in node.value)
    return None


Keys = dict[Path, frozenset[str]]


def _keys(node: Any) -> tuple[Keys, bool]:
    """(paths whose string value `node` requires to be one of a set, for `node` to be
    true; whether `node` is exactly that requirement)."""
    if isinstance(node, rast.ComparisonExpression) and node.type == "eq":
        for symbol, literal in ((node.left, node.right), (node.right, node.left)):
            path = _path(symbol)
            if path is not None and isinstance(literal, rast.StringExpression):
                return {path: frozenset([literal.value])}, True
    if isinstance(node, rast.ContainsExpression):
        path = _path(node.member)
        found = _literal_strings(node.container)
        if path is not None and found is not None:
            return {path: found}, True
    if isinstance(node, rast.LogicExpression):
        left, left_exact = _keys(node.left)
        right, right_exact = _keys(node.right)
        if node.type == "and":
            merged = dict(left)
            for path, values in right.items():
                merged[path] = merged[path] & values if path in merged else values
            return merged, left_exact and right_exact
        if node.type == "or":
            common = {p: left[p] | right[p] for p in left.keys() & right.keys()}
            exact = left_exact and right_exact and len(left) == len(right) == len(common) == 1
            return common, exact
    return {}, False
