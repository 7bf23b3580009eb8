"""A condition's rule-engine tree turned into Python closures, for speed.

rule-engine parses the condition (the grammar stays the library's); walking its tree
node by node for every event costs tens of microseconds, mostly in converting values
(every number to a Decimal, every list to a tuple) and checking their types. The alert
engine judges hundreds of thousands of events a second, so `compile_tree` builds the
same logic once as nested closures over the decoded JSON event, for the nodes alert
conditions are made of: `and`, `or`, `not`, `==`, `!=`, `<`, `<=`, `>`, `>=`, `=~`,
`=~~`, `!~`, `!~~`, `in`, dotted paths and literals. It follows rule-engine's rules:
values of different types are never equal (and ordering them is an error), a missing
field is null, a regular expression matches only strings, and any evaluation error
makes the whole condition false. A tree with any other node (functions, indexing,
arithmetic, attributes such as `.length`) returns None, and the condition is evaluated
by rule-engine itself; tests/alerts check the two agree.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from rule_engine import ast as rast

__all__ = ["Compiled", "Getters", "compile_tree", "path_getter"]

Compiled = Callable[[Any], Any]

Getters = Callable[[tuple[str, ...]], Compiled]
"""Makes the function reading a dotted path from an event: `path_getter` for a decoded
dict, `Projection.getter` for a line decoded into Structs."""


class EvalError(Exception):
    """An evaluation error: the condition is false for this event."""


class _Unsupported(Exception):
    """A node this module does not compile."""


_KIND = {str: "s", int: "n", float: "n", bool: "b", type(None): "0", list: "a", dict: "m"}


def _kind(value: Any) -> str:
    return _KIND.get(type(value), "?")


def _literal(value: Any) -> Any:
    """A rule-engine literal as the JSON value it equals."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, tuple):
        return [_literal(v) for v in value]
    if value is None or isinstance(value, str | bool):
        return value
    raise _Unsupported(type(value).__name__)


BUILTIN_ATTRIBUTES = frozenset({
    "as_lower", "as_upper", "ceiling", "date", "day", "days", "decode", "encode", "ends_with",
    "floor", "hour", "is_empty", "is_nan", "keys", "length", "microsecond", "microseconds",
    "millisecond", "minute", "month", "second", "seconds", "starts_with", "to_ary", "to_epoch",
    "to_flt", "to_int", "to_set", "to_str", "total_seconds", "values", "weekday", "year",
    "zone_name",
})  # fmt: skip
"""rule-engine's own attributes of values (`details.topics.length`): a path through one
of them is left to rule-engine."""


def _path(node: Any) -> tuple[str, ...] | None:
    if isinstance(node, rast.SymbolExpression) and node.scope is None:
        return (node.name,)
    if isinstance(node, rast.GetAttributeExpression):
        if node.name in BUILTIN_ATTRIBUTES:
            raise _Unsupported(f"attribute {node.name}")
        parent = _path(node.object)
        return None if parent is None else (*parent, node.name)
    return None


def path_getter(path: tuple[str, ...]) -> Compiled:
    """A function reading `path` from a decoded event (null where it is missing)."""
    if len(path) == 1:
        (a,) = path
        return lambda e: e.get(a)
    if len(path) == 2:
        a, b = path

        def get2(e: dict[str, Any]) -> Any:
            v = e.get(a)
            return v.get(b) if type(v) is dict else None

        return get2

    def get(e: dict[str, Any]) -> Any:
        v: Any = e
        for key in path:
            if type(v) is not dict:
                return None
            v = v.get(key)
        return v

    return get


def _value(node: Any, get: Getters) -> Compiled:
    path = _path(node)
    if path is not None:
        return get(path)
    if isinstance(node, rast.ArrayExpression):
        if not all(isinstance(item, rast.LiteralExpressionBase) for item in node.value):
            raise _Unsupported("an array of expressions")
        items = [_literal(item.value) for item in node.value]
        return lambda e: items
    if isinstance(node, rast.LiteralExpressionBase) and not isinstance(
        node, rast.MappingExpression | rast.SetExpression
    ):
        value = _literal(node.value)
        return lambda e: value
    return _boolean(node, get)


_NUMBERS = (int, float)


def _eq(left: Any, right: Any) -> bool:
    """rule-engine's equality: values of different types are never equal (a bool is
    not a number), numbers compare by value."""
    kind = type(left)
    if kind is type(right):
        return bool(left == right)
    return kind in _NUMBERS and type(right) in _NUMBERS and left == right


def _equals_literal(value: Compiled, literal: Any) -> Compiled:
    """`path == literal`, specialised by the literal's type."""
    if isinstance(literal, list) and all(type(item) is str for item in literal):
        # A list of strings equals only a list of the same strings: Python's list
        # equality, as no other value equals a string.
        return lambda e: type(v := value(e)) is list and v == literal
    if isinstance(literal, str) or literal is None or isinstance(literal, bool):
        # Only a value of the literal's own type can equal it (True == 1 is ruled out
        # by the identity test for bools and None).
        if isinstance(literal, str):
            return lambda e: value(e) == literal
        return lambda e: value(e) is literal
    return lambda e: _eq(value(e), literal)


def _literal_of(node: Any) -> tuple[bool, Any]:
    """(whether `node` is a literal this module reads, its JSON value)."""
    if isinstance(node, rast.ArrayExpression):
        if all(isinstance(item, rast.LiteralExpressionBase) for item in node.value):
            return True, [_literal(item.value) for item in node.value]
        return False, None
    if isinstance(node, rast.LiteralExpressionBase) and not isinstance(
        node, rast.MappingExpression | rast.SetExpression
    ):
        return True, _literal(node.value)
    return False, None


_ORDER = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(left: Any, right: Any) -> bool:
        if left is None and right is None:
            return op in (operator.ge, operator.le)
        kind = _kind(left)
        if kind != _kind(right) or kind in ("m", "0", "?"):
            raise EvalError("data type mismatch")
        return bool(op(left, right))

    return compare


def _regex(node: Any, get: Getters) -> Compiled:
    if not isinstance(node.right, rast.StringExpression):
        raise _Unsupported("a regular expression that is not a literal")
    pattern = re.compile(node.right.value, flags=node.context.regex_flags)
    method = pattern.search if node.type.endswith("fzs") else pattern.match
    negate: bool = node.type.startswith("ne")
    left = _value(node.left, get)

    def match(e: dict[str, Any]) -> bool:
        text = left(e)
        if text is None:
            return negate
        if type(text) is not str:
            raise EvalError("data type mismatch")
        return (method(text) is None) if negate else (method(text) is not None)

    return match


def _among_strings(node: Any, get: Getters) -> tuple[Compiled, frozenset[str]] | None:
    """For `x in ['a', 'b']`: what reads x, and the strings."""
    if not isinstance(node, rast.ContainsExpression):
        return None
    is_literal, items = _literal_of(node.container)
    if is_literal and isinstance(items, list) and all(isinstance(i, str) for i in items):
        return _value(node.member, get), frozenset(items)
    return None


def _contains(node: Any, get: Getters) -> Compiled:
    among = _among_strings(node, get)
    if among is not None:
        # `path in ['a', 'b']`: only a string can equal one of these strings.
        value, strings = among
        return lambda e: type(v := value(e)) is str and v in strings
    container, member = _value(node.container, get), _value(node.member, get)

    def contains(e: dict[str, Any]) -> bool:
        within, item = container(e), member(e)
        kind = _kind(within)
        if kind == "s":
            if type(item) is not str:
                raise EvalError("data type mismatch")
            return item in within
        if kind == "a":
            return any(_eq(item, x) for x in within)
        if kind == "m":
            try:
                return bool(item in within)
            except TypeError:
                raise EvalError("unhashable key") from None
        raise EvalError("containment check on a value that holds nothing")

    return contains


def _boolean(node: Any, get: Getters) -> Compiled:
    if isinstance(node, rast.LogicExpression):
        left, right = _value(node.left, get), _value(node.right, get)
        if node.type == "and":
            return lambda e: bool(left(e) and right(e))
        return lambda e: bool(left(e) or right(e))
    if isinstance(node, rast.UnaryExpression) and node.type == "not":
        among = _among_strings(node.right, get)
        if among is not None:
            # `not (path in ['a', 'b'])` in one step (the cost of a call per event).
            value, strings = among
            return lambda e: not (type(v := value(e)) is str and v in strings)
        inner = _value(node.right, get)
        return lambda e: not inner(e)
    if isinstance(node, rast.FuzzyComparisonExpression):
        return _regex(node, get)
    if isinstance(node, rast.ArithmeticComparisonExpression):
        op = _ORDER[node.type]
        compare = _ordered(op)
        is_literal, limit = _literal_of(node.right)
        if is_literal and type(limit) in _NUMBERS:
            # `path > 100`: a number is compared at once, anything else as below.
            value = _value(node.left, get)

            def against_number(e: dict[str, Any]) -> bool:
                v = value(e)
                if type(v) is int or type(v) is float:
                    return bool(op(v, limit))
                return compare(v, limit)

            return against_number
        left, right = _value(node.left, get), _value(node.right, get)
        return lambda e: compare(left(e), right(e))
    if isinstance(node, rast.ComparisonExpression) and node.type in ("eq", "ne"):
        equal: Compiled | None = None
        for one, other in ((node.left, node.right), (node.right, node.left)):
            is_literal, literal = _literal_of(other)
            if is_literal and (
                not isinstance(literal, list) or all(type(item) is str for item in literal)
            ):
                if node.type == "ne" and isinstance(literal, str):
                    # Any value but that string, whatever its type: Python's own `!=`.
                    unequal = _value(one, get)
                    return lambda e: unequal(e) != literal
                equal = _equals_literal(_value(one, get), literal)
                break
        if equal is None:
            left, right = _value(node.left, get), _value(node.right, get)

            def equal(e: dict[str, Any]) -> bool:
                return _eq(left(e), right(e))

        if node.type == "eq":
            return equal
        test = equal
        return lambda e: not test(e)
    if isinstance(node, rast.ContainsExpression):
        return _contains(node, get)
    raise _Unsupported(type(node).__name__)


def _conjuncts(node: Any) -> list[Any]:
    """The parts of a chain of `and`s (the node itself when it is not one)."""
    if isinstance(node, rast.LogicExpression) and node.type == "and":
        return _conjuncts(node.left) + _conjuncts(node.right)
    return [node]


def _cost(node: Any) -> int:
    """A rough rank of what testing a part costs: a path against a literal first, a
    regular expression last."""
    if isinstance(node, rast.ComparisonExpression | rast.ContainsExpression):
        sides = (
            (node.left, node.right)
            if isinstance(node, rast.ComparisonExpression)
            else (
                node.member,
                node.container,
            )
        )
        if any(_literal_of(side)[0] for side in sides):
            return 1
    if isinstance(node, rast.FuzzyComparisonExpression):
        return 3
    return 2


def _all_of(parts: list[Compiled]) -> Compiled:
    if len(parts) == 2:
        a, b = parts
        return lambda e: bool(a(e) and b(e))
    if len(parts) == 3:
        a, b, c = parts
        return lambda e: bool(a(e) and b(e) and c(e))
    return lambda e: all(part(e) for part in parts)


def compile_tree(
    expression: Any, get: Getters = path_getter, known: Callable[[Any], bool] | None = None
) -> Compiled | None:
    """The closure evaluating a rule-engine expression tree on an event whose paths
    `get` reads (default: a decoded dict), raising EvalError where rule-engine would
    raise, or None when the tree uses a node this
    module does not compile.

    The parts of a top-level chain of `and`s are tested cheapest first. Only there is
    the order free: an error makes the whole condition false, as does any false part,
    whichever comes first (below a `not` or an `or`, an error in a part the original
    order never reaches would change the answer). `known` picks the parts that hold
    for every event the closure will be given (an event type its rule is looked up
    by): those are left out, as they can neither be false nor raise.

    """
    try:
        parts = _conjuncts(expression)
        if known is not None:
            parts = [part for part in parts if not known(part)]
            if not parts:
                return lambda e: True
        if len(parts) == 1:
            return _value(parts[0], get)
        return _all_of([_value(part, get) for part in sorted(parts, key=_cost)])
    except _Unsupported:
        return None
