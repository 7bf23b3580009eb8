"""Reading audit events from wherever they are: a log directory, a data directory, a
JSON Lines file (plain or gzipped), standard input or a Kafka log topic (`kafka://`) —
once, or following new events.

`iter_lines` yields raw canonical lines; rendering and filtering are the caller's choice,
so `tail` can pass native lines through untouched. What `kaudit tail` shows is chosen
here too (`tail_lines`: the configured log by default, an event type glob, the last N)
and printed by `write_lines`.
"""

from __future__ import annotations

import collections
import fnmatch
import gzip
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from pydantic import ValidationError

from kaudit.config import Config
from kaudit.config.model import KafkaConnection, KafkaLog
from kaudit.config.secrets import register_secret
from kaudit.errors import KauditError
from kaudit.events.codec import decode
from kaudit.events.formats import render_bytes
from kaudit.files import UnprotectedKeyError, check_private_key
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

    Security comes from the URL (user, `mechanism`, `protocol`, and the password: in the
    URL, else in $KAUDIT_KAFKA_PASSWORD, else in the file $KAUDIT_KAFKA_PASSWORD_FILE
    names), else from `base` (the configured Kafka log) when it names the same hosts.
    Errors never repeat the password.
    """
    parsed = urlsplit(url)
    if parsed.password:
        register_secret(unquote(parsed.password))
        register_secret(parsed.password)
    shown = _without_password(url)
    if parsed.scheme != "kafka" or not parsed.netloc:
        raise SourceError(f"cannot read {shown!r}; {_ACCEPTED}")
    hosts = parsed.netloc.rpartition("@")[2]
    topic = unquote(parsed.path.lstrip("/")) or getattr(base, "topic", "__oprtr_audit_log")
    query = parse_qs(parsed.query)
    settings: dict[str, Any] = {"bootstrap_servers": hosts.split(",")}
    if parsed.username:
        password = parsed.password
        if password is None:
            password = os.environ.get("KAUDIT_KAFKA_PASSWORD")
        if password is None:
            password = _password_file(shown)
        if password is None:
            raise SourceError(
                f"{shown}: no password for {unquote(parsed.username)} (put it in the URL, "
                "in $KAUDIT_KAFKA_PASSWORD, or in a file named by $KAUDIT_KAFKA_PASSWORD_FILE)"
            )
        register_secret(password)
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
        raise SourceError(f"{shown}: {problems}") from None


def _without_password(url: str) -> str:
    """`url` with the password of its user part, if any, as `***`."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.partition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{hosts}"


def _password_file(shown: str) -> str | None:
    """The password in the file $KAUDIT_KAFKA_PASSWORD_FILE names (one trailing newline
    dropped); the file must be readable by its owner only."""
    path = os.environ.get("KAUDIT_KAFKA_PASSWORD_FILE")
    if not path:
        return None
    try:
        check_private_key(path, "password file ($KAUDIT_KAFKA_PASSWORD_FILE)")
        with open(path, encoding="utf-8") as f:
            return f.read().removesuffix("\n")
    except UnprotectedKeyError as exc:
        raise SourceError(f"{shown}: {exc}") from None
    except OSError as exc:
        raise SourceError(
            f"{shown}: cannot read the password file $KAUDIT_KAFKA_PASSWORD_FILE ({path}): "
            f"{exc.strerror or exc}"
        ) from None


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


# ---------------------------------------------------------------------------- tail


def configured_source(config: Config) -> str:
    """The configured log as a SOURCE: its `kafka://` URL, or its directory."""
    log = config.audit.log
    if isinstance(log, KafkaLog):
        return f"kafka://{','.join(log.bootstrap_servers)}/{log.topic}"
    return str(config.log_dir)


def tail_lines(
    source: str | None,
    config: Config | None,
    *,
    follow: bool = False,
    type_glob: str | None = None,
    last: int | None = None,
) -> Iterator[bytes]:
    """What `kaudit tail` shows: the lines of SOURCE (default: the log `config` names),
    only event types matching `type_glob`, only the `last` ones of the backlog. A
    configured Kafka log lends its security settings to a `kafka://` SOURCE on its hosts.
    While following, `b""` marks each catch-up (see `iter_lines`)."""
    kafka_log = (
        config.audit.log if config is not None and isinstance(config.audit.log, KafkaLog) else None
    )
    if source is None:
        if config is None:
            raise ValueError("tail_lines needs a SOURCE or a configuration")
        source = configured_source(config)
    stream = of_type(iter_lines(source, follow=follow, kafka_base=kafka_log), type_glob)
    if last is not None:
        stream = last_lines(stream, last)
    return stream


def of_type(lines: Iterator[bytes], type_glob: str | None) -> Iterator[bytes]:
    """The lines whose event type matches `type_glob` (all of them when it is None); lines
    that are not JSON are left out when filtering, catch-up markers kept."""
    for line in lines:
        if type_glob is not None and line:
            try:
                event_type = orjson.loads(line).get("event_type", "")
            except orjson.JSONDecodeError:
                continue
            if not fnmatch.fnmatchcase(str(event_type), type_glob):
                continue
        yield line


def last_lines(stream: Iterator[bytes], n: int) -> Iterator[bytes]:
    """The last `n` lines of the backlog (up to the first catch-up marker), then the rest."""
    backlog: collections.deque[bytes] = collections.deque(maxlen=n)
    for line in stream:
        if not line:
            yield from backlog
            backlog.clear()
            yield line
            yield from stream
            return
        backlog.append(line)
    yield from backlog


def write_lines(lines: Iterable[bytes], fmt: str, out: BinaryIO) -> None:
    """Print event lines, one a line, in `fmt` (`native`: the lines as they are, byte for
    byte); a catch-up marker flushes what came before it."""
    for line in lines:
        if not line:  # caught up while following: show what we have
            out.flush()
            continue
        if fmt == "native":
            out.write(line if line.endswith(b"\n") else line + b"\n")
        else:
            out.write(render_bytes(decode(line), fmt) + b"\n")
    out.flush()
