"""The `kaudit` command line: one module per command group, each a thin layer that reads
options, calls a library function and prints its answer.

- `common`: exit codes, the error handler (kaudit's errors as one message on stderr and
  an exit code, never a traceback), the `-c/--config` option, times and durations.
- `app`: the `kaudit` group (`main`), where every command is registered.
- `check_config`, `events` (generate, emit, tail), `run` (run, gateway), `exporters`,
  `keys`, `verify` (verify, prove, verify-proof), `search` (search, report, retention),
  `demo`, `local_kafka`.

Exit codes: 0 success; 1 a runtime failure (log unwritable, destination down…) or, for
`check-config`-like checks, a negative answer; 2 bad usage or an invalid configuration.

The top layer: it may import every other part of kaudit, and nothing imports it.
`main` is imported when first asked for, so that ``python -m kaudit.cli.local_kafka``
runs that group alone (``python -m kaudit.cli`` runs them all).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kaudit.cli.app import main

__all__ = ["main"]


def __getattr__(name: str) -> Any:
    if name == "main":
        from kaudit.cli.app import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
