"""The parts of an event the rules read, decoded straight from its line.

An audit event is some 700 bytes of nested JSON, of which the rules read a handful of
fields. Decoding it whole into dicts was a fifth of the alert engine's time; a
`Projection` decodes a line into msgspec Structs holding only the paths the rules (and
the engine) read, which skips the rest of the line without building it.

It answers exactly as the decoded event would: a field missing from the line is None; a
value anywhere on a path that is not an object (a string where `actor` was expected)
decodes as itself, and the path below it reads as None, as `path_getter` reads a dict;
a path that some rule reads whole (`actor.roles`, a `group_by` on `actor`) decodes as
the plain JSON value, and paths below it walk it as a dict. Fields are named `f0`,
`f1`, ... and renamed to the event's keys, so any key can be a field.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

__all__ = ["ENGINE_FIELDS", "Projection"]

Path = tuple[str, ...]

ENGINE_FIELDS = ("event_type", "integrity", "timestamp", "event_id")
"""Top-level fields the engine itself reads of every event; on the root Struct they are
attributes of these names."""

_NOT_AN_OBJECT = (str, int, float, bool, list, type(None))
"""What a JSON value other than an object decodes as."""


class _Node:
    """One key on the paths read: its children, or None when some path reads it whole."""

    __slots__ = ("children", "struct")

    def __init__(self) -> None:
        self.children: dict[str, _Node] | None = {}
        self.struct: type[msgspec.Struct] | None = None


def _walk_dict(v: Any, keys: Path) -> Any:
    for key in keys:
        if type(v) is not dict:
            return None
        v = v.get(key)
    return v


class Projection:
    """Decodes a line into the paths that `paths` names (plus the engine's fields)."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self._root = _Node()
        for path in [*((name,) for name in ENGINE_FIELDS), *paths]:
            self._add(path)
        self.root = self._build(self._root, "Event", top=True)
        self.decode: Callable[[bytes], Any] = msgspec.json.Decoder(self.root).decode
        """The root Struct for a line (msgspec.MsgspecError when it is not a JSON object)."""

    def _add(self, path: Path) -> None:
        node = self._root
        for i, key in enumerate(path):
            children = node.children
            if children is None:
                return  # read whole above: nothing to add below
            node = children.setdefault(key, _Node())
            if i == len(path) - 1:
                node.children = None

    def _build(self, node: _Node, name: str, top: bool = False) -> type[msgspec.Struct]:
        assert node.children is not None
        fields: list[tuple[str, Any, None]] = []
        rename: dict[str, str] = {}
        for i, (key, child) in enumerate(node.children.items()):
            field = key if top and key in ENGINE_FIELDS else f"f{i}"
            rename[field] = key
            if child.children is None:
                kind: Any = Any
            else:
                struct = self._build(child, f"{name}_{i}")
                kind = struct | str | int | float | bool | list[Any] | None
            fields.append((field, kind, None))
        node.struct = msgspec.defstruct(name, fields, rename=rename, gc=False)
        return node.struct

    def getter(self, path: Path) -> Callable[[Any], Any]:
        """A function reading `path` from a decoded line (None where it is missing)."""
        return _getter(*self._steps(path))

    def _steps(self, path: Path) -> tuple[list[str], Path]:
        """The fields `path` reads through Structs, and the keys it reads below them in
        a value decoded whole."""
        steps: list[str] = []
        node = self._root
        rest: Path = ()
        for i, key in enumerate(path):
            children = node.children
            if children is None:
                rest = path[i:]
                break
            assert node.struct is not None
            field = node.struct.__struct_fields__[list(children).index(key)]
            node = children[key]
            steps.append(field)
        return steps, rest

    def fast_getter(self, path: Path) -> Callable[[Any], Any]:
        """`getter` without its Python frame where the path runs through Structs only:
        it raises AttributeError where `getter` returns None for a value on the way
        that is not an object (the caller reads the path again with `getter`)."""
        steps, rest = self._steps(path)
        return operator.attrgetter(".".join(steps)) if not rest else _getter(steps, rest)


def _getter(steps: list[str], rest: Path) -> Callable[[Any], Any]:
    """Reads the fields `steps` through Structs, then `rest` through dicts."""
    if len(steps) == 1 and not rest:
        return operator.attrgetter(steps[0])
    # One C call through the Structs: a value that is not the Struct its path goes
    # through (a string, a list, None) has no such field, as fields below the top are
    # named `f0`, `f1`, ...
    through = operator.attrgetter(".".join(steps))

    def get(e: Any) -> Any:
        try:
            v = through(e)
        except AttributeError:
            return None
        return _walk_dict(v, rest) if rest else v

    return get
