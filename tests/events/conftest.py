"""Makes `kaudit` (under src/) and `tests.events.strategies` importable for these tests.

The project is not installed into the virtualenv and pytest is not configured with a
`pythonpath`, so without this the suite cannot import the package it tests. Paths are
only added when the import would otherwise fail, so an installed kaudit always wins.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from hypothesis import settings

_ROOT = Path(__file__).resolve().parents[2]

for _path, _module in ((_ROOT / "src", "kaudit"), (_ROOT, "tests")):
    if importlib.util.find_spec(_module) is None:
        sys.path.insert(0, str(_path))

# `pytest --hypothesis-profile=thorough tests/events` searches much harder than the
# default run, for before a release or after touching the codec.
settings.register_profile("thorough", max_examples=3000, deadline=None)
