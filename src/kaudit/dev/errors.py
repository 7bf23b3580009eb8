"""Errors of the local Kafka developer tooling (`kaudit.dev`).

They sit under `kaudit.errors.KauditError` like every other kaudit error. Their base,
`LocalKafkaError`, is defined in `kaudit.errors` and handed on from here, so that the
modules this one imports (`kaudit.dev.info` for `KafkaAlreadyRunningError`) can raise it
without importing this module back. The CLI maps `MissingToolError` to exit code 2 so
scripts can tell "install something" apart from "Kafka failed".
"""

from __future__ import annotations

from kaudit.dev.info import KafkaInfo
from kaudit.errors import LocalKafkaError

__all__ = [
    "KafkaAlreadyRunningError",
    "KafkaDownloadError",
    "KafkaStartError",
    "KafkaToolError",
    "LocalKafkaError",
    "MissingToolError",
]


class MissingToolError(LocalKafkaError):
    """A program the local Kafka needs (`java`, `mvn`) is not installed or too old."""


class KafkaDownloadError(LocalKafkaError):
    """Maven could not assemble the Kafka jars (version not on Maven Central, no network)."""

    retryable = True


class KafkaToolError(LocalKafkaError):
    """One of Kafka's Java command-line tools exited with an error."""

    def __init__(self, message: str, returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class KafkaStartError(LocalKafkaError):
    """The broker did not become ready; the message carries the tail of its log."""


class KafkaAlreadyRunningError(LocalKafkaError):
    """`start` was asked for a directory whose broker is already running."""

    def __init__(self, info: KafkaInfo) -> None:
        super().__init__(f"Kafka is already running in {info.dir} (pid {info.pid})")
        self.info = info
