"""Plugin loading: entry-point groups `kaudit.auditors` (and later exporters, notifiers).

Built-ins are registered through the same entry points as third-party plugins (see
pyproject.toml). A plugin is named by its entry-point name or by a `module:Class` import
path; an unknown name is an error listing the valid ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from kaudit.auditor import Auditor
from kaudit.errors import PluginError
from kaudit.recorder.auditor import RecorderAuditor
from kaudit.recorder.core import Recorder

AUDITORS_GROUP = "kaudit.auditors"


def available(group: str) -> list[str]:
    return sorted(ep.name for ep in entry_points(group=group))


def load_class(group: str, name: str) -> type[Any]:
    """The class named `name`: an entry point of `group` or a `module:Class` path."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PluginError(f"cannot import plugin module {module_name!r}: {exc}") from exc
        try:
            cls = getattr(module, attr)
        except AttributeError:
            raise PluginError(f"module {module_name!r} has no attribute {attr!r}") from None
        if not isinstance(cls, type):
            raise PluginError(f"plugin {name!r} is not a class")
        return cls
    matches = [ep for ep in entry_points(group=group) if ep.name == name]
    if not matches:
        raise PluginError(
            f"unknown plugin {name!r} in {group}; available: {', '.join(available(group))} "
            "(or give a module:Class import path)"
        )
    loaded = matches[0].load()
    if not isinstance(loaded, type):
        raise PluginError(f"entry point {name!r} of {group} is not a class")
    return loaded


def load_auditor(name: str, config: Mapping[str, Any], recorder: Recorder) -> Auditor:
    """Instantiate, configure and start the auditor called `name`.

    The recorder auditor is bound to the session's recorder; any other auditor class is
    built with no arguments and configured with `config`.
    """
    cls = load_class(AUDITORS_GROUP, name)
    try:
        auditor: Any = RecorderAuditor(recorder) if cls is RecorderAuditor else cls()
    except Exception as exc:
        raise PluginError(
            f"auditor {name!r} could not be built (it must take no arguments): {exc}"
        ) from exc
    if not isinstance(auditor, Auditor):
        raise PluginError(
            f"plugin {name!r} is not an Auditor: it needs configure, start, audit and close"
        )
    try:
        auditor.configure(config)
        auditor.start()
    except (ValueError, TypeError, OSError) as exc:
        raise PluginError(f"auditor {name!r} could not start: {exc}") from exc
    return auditor
