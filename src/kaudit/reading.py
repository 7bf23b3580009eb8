"""Reading audit events from wherever they are: a log directory, a data directory, a
JSON Lines file (plain or gzipped), standard input or a Kafka log topic (`kafka://`) —
once, or following new events.

Yields raw canonical lines; rendering and filtering are the caller's choice, so `tail`
can pass native lines through untouched.
"""

from __future__ import annotations

import gzip
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import ValidationError

from kaudit.config.model import KafkaConnection
from kaudit.errors import KauditError
from kaudit.log.segments import LogReader, Position, list_segments


class SourceError(KauditError):
    """A SOURCE argument that names nothing kaudit can read."""


def resolve_log_dir(path: Path) -> Path | None:
    """`path` itself if it holds log segments, or its `log/` (a data dir), else None."""
    if list_segments(path):
        return path
    if list_segments(path / "log"):
        return path / "log"
    if (path / "log").is_dir():
        return path / "log"
    if path.is_dir() and (path / ".lock").exists():
        return path
    return None


_ACCEPTED = (
    "accepted: a log directory, a data directory, a .jsonl/.jsonl.gz file, - (stdin), "
    "kafka://[user[:password]@]host:port[,host:port]/topic[?mechanism=M&protocol=P]"
)


def kafka_source(url: str, base: KafkaConnection | None = None) -> tuple[KafkaConnection, str]:
    """The connection and topic a `kafka://` SOURCE names.

    Security comes from the URL (user, password or $KAUDIT_KAFKA_PASSWORD, `mechanism`,
    `protocol`), else from `base` (the configured Kafka log) when it names the same hosts.
    """
    parsed = urlsplit(url)
    if parsed.scheme != "kafka" or not parsed.netloc:
        raise SourceError(f"cannot read {url!r}; {_ACCEPTED}")
    hosts = parsed.netloc.rpartition("@")[2]
    topic = unquote(parsed.path.lstrip("/")) or getattr(base, "topic", "__oprtr_audit_log")
    query = parse_qs(parsed.query)
    settings: dict[str, Any] = {"bootstrap_servers": hosts.split(",")}
    if parsed.username:
        password = parsed.password
        if password is None:
            password = os.environ.get("KAUDIT_KAFKA_PASSWORD")
        if password is None:
            raise SourceError(
                f"{url}: no password for {unquote(parsed.username)} "
                "(put it in the URL or in $KAUDIT_KAFKA_PASSWORD)"
            )
        settings["security"] = {
            "security_protocol": query.get("protocol", ["SASL_PLAINTEXT"])[0],
            "sasl_mechanism": query.get("mechanism", ["SCRAM-SHA-512"])[0],
            "sasl_username": unquote(parsed.username),
            "sasl_password": unquote(password),
        }
    elif base is not None and set(base.bootstrap_servers) & set(settings["bootstrap_servers"]):
        settings["security"] = base.security.model_dump()
    try:
        return KafkaConnection.model_validate(settings), topic
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SourceError(f"{url}: {problems}") from None


def open_source(source: str) -> tuple[str, Path | None]:
    """Classify SOURCE: ("dir", log dir) / ("file", path) / ("stdin", None) /
    ("kafka", None)."""
    if source == "-":
        return "stdin", None
    if source.startswith("kafka://"):
        return "kafka", None
    if "://" in source:
        raise SourceError(f"cannot read {source!r}; {_ACCEPTED}")
    path = Path(source).expanduser()
    if path.is_dir():
        log_dir = resolve_log_dir(path)
        if log_dir is None:
            raise SourceError(
                f"{path} holds no audit log segments (expected NNN.jsonl files, "
                "or a data directory with log/)"
            )
        return "dir", log_dir
    if path.is_file():
        return "file", path
    raise SourceError(f"{path} does not exist")


def iter_lines(
    source: str,
    *,
    follow: bool = False,
    poll_s: float = 0.25,
    kafka_base: KafkaConnection | None = None,
) -> Iterator[bytes]:
    """Every event line of SOURCE; with `follow`, keep yielding new ones as they come.

    While following, an empty line (`b""`) is yielded each time the reader has caught up
    and waits, so a caller can tell the backlog from what arrives later.
    """
    kind, path = open_source(source)
    if kind == "stdin":
        yield from (line for line in sys.stdin.buffer if line.strip())
        return
    if kind == "kafka":
        from kaudit.log.kafka import KafkaLogReader

        connection, topic = kafka_source(source, kafka_base)
        reader = KafkaLogReader(connection, group=None, topic=topic)
        try:
            yield from reader.lines(follow=follow)
        finally:
            reader.close()
        return
    assert path is not None
    if kind == "dir":
        yield from _dir_lines(path, follow, poll_s)
    else:
        yield from _file_lines(path, follow, poll_s)


def _dir_lines(log_dir: Path, follow: bool, poll_s: float) -> Iterator[bytes]:
    reader = LogReader(log_dir)
    position: Position | None = None
    while True:
        lines, position = reader.read(position)
        if lines:
            yield from lines
            continue
        if not follow:
            return
        yield b""
        time.sleep(poll_s)


def _file_lines(path: Path, follow: bool, poll_s: float) -> Iterator[bytes]:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as gz:
            yield from (line for line in gz if line.strip())
        return
    f: BinaryIO = open(path, "rb")  # noqa: SIM115 - reopened below when the file is rotated
    try:
        inode = os.fstat(f.fileno()).st_ino
        pending = b""
        while True:
            chunk = f.read(1 << 20)
            if chunk:
                data = pending + chunk
                cut = data.rfind(b"\n") + 1
                pending = data[cut:]
                yield from (line for line in data[:cut].splitlines(keepends=True) if line.strip())
                continue
            if not follow:
                if pending.strip():
                    yield pending
                return
            yield b""
            time.sleep(poll_s)
            try:
                if os.stat(path).st_ino != inode:  # rotated: continue with the new file
                    f.close()
                    f = open(path, "rb")  # noqa: SIM115
                    inode = os.fstat(f.fileno()).st_ino
                    pending = b""
            except FileNotFoundError:
                continue
    finally:
        f.close()
