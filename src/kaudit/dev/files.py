"""The local Kafka's files: where a cached Kafka keeps its jars, and how files change.

It owns the layout of one cached Kafka version (`KafkaDist`: its ``lib`` directory, the
classpath and its tools' log configuration), replacing a file so that readers never see
a part of it (`write_atomic`), and the advisory locks that serialize work on a directory
(`file_lock`). It imports nothing of kaudit, so every other module of `kaudit.dev` —
the users and connection details below the errors as much as the broker above them —
can use it.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KafkaDist:
    """One cached Kafka version: where its jars and its tools' log config are."""

    version: str
    home: Path

    @property
    def lib_dir(self) -> Path:
        return self.home / "lib"

    @property
    def classpath(self) -> str:
        """The `-cp` value for Kafka's main classes: Java expands the trailing `*`."""
        return f"{self.lib_dir}/*"

    @property
    def tools_log4j_config(self) -> Path:
        return self.home / "tools-log4j2.properties"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomic(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Replace `path` with `text` so readers see the old or the new file, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
