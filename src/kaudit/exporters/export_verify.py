"""Verifying an export's copy of the audit log: an S3 destination's objects
(`kaudit verify s3://bucket/prefix`) or a `file` destination's folder of Parquet files
(`kaudit verify <folder>`).

The objects under the prefix (or the files under the folder) are listed once: objects of
events, named by stream and sequence range (exporters/s3.py) or Parquet files
(exporters/parquet.py, whose columns are checked against their `event` column, their
footer's statistics against their rows (exporters/parquet_footer.py), and their day
against their name), and the signed checkpoints uploaded beside them
(exporters/s3_checkpoints.py). Any other object in a `dt=` folder is a finding, since
query engines read every file there as events; other objects elsewhere under the prefix
are only counted in a note. The checkpoints are read first; then each object of events
is streamed, gunzipped, into the verifier (`verify_parts` of kaudit.integrity.verify) in
sequence order, one object open at a time, so memory does not grow with the copy. With
the public key the copy is checked against the checkpoints: changed, deleted, inserted
and reordered events, a deleted object and a cut-off end are all found.

The objects of all streams under the prefix are checked as one log: a local log has one
writer, whose events may carry the host of whoever sent them (the stream in the name).
The digest in an object's name is its content's (a Parquet file's bytes, a JSON Lines
object's native lines), so one that is not, or one digest under two names, is a copy or
a renamed object, which query engines would count twice: a finding when the events
themselves verify, else a note beside their findings.

Listing needs s3:ListBucket and reading s3:GetObject. When the bucket cannot be listed
(no such bucket, access denied, no credentials, no answer) nothing was verified: that is
a `VerifyUsageError`, not a finding.

A folder is read as a bucket is, its files' paths (with `/`) being the objects' keys.

This lives with the exporters, not in kaudit.integrity: it reads what the exporters
wrote (their object names, the S3 client), and integrity knows nothing of exporters.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import unquote, urlsplit

from kaudit.config import load_config
from kaudit.config.destinations import FileDestination, ParquetFiles, S3Destination
from kaudit.config.model import AwsAccess
from kaudit.exporters.aws import AWS_ERRORS, aws_error, make_client
from kaudit.exporters.parquet import PARQUET_KEY
from kaudit.exporters.parquet_footer import footer_problem
from kaudit.exporters.parquet_format import read_checked
from kaudit.exporters.s3 import DATA_KEY
from kaudit.exporters.s3_checkpoints import CHECKPOINT_KEY, CHECKPOINTS_DIR
from kaudit.integrity.keys import KeyRing
from kaudit.integrity.store import StoredCheckpoint, parse_record
from kaudit.integrity.verify import (
    Finding,
    FindingKind,
    LogPart,
    VerifyReport,
    VerifyUsageError,
    verify_parts,
)


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of an `s3://bucket/prefix` SOURCE."""
    parsed = urlsplit(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise VerifyUsageError(f"{url!r} is not an S3 location; accepted: s3://bucket/prefix")
    return parsed.netloc, unquote(parsed.path.lstrip("/"))


class _Body(io.RawIOBase):
    """An object's body as a file whose read errors are OSErrors (the verifier reports
    an object it cannot read and goes on with the next one)."""

    def __init__(self, body: Any, where: str) -> None:
        self._body = body
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._body.read(len(buffer))
        except AWS_ERRORS as exc:
            raise OSError(f"{self._where}: {exc}") from exc
        buffer[: len(data)] = data
        return len(data)


class _Export:
    """Where an export lies, listed and read by key: `where` names it, `prefix` is the
    part of every key before the export's own names."""

    where: str
    prefix: str

    def listing(self) -> Iterator[str]:
        raise NotImplementedError

    def read(self, key: str) -> bytes:
        raise NotImplementedError

    def opener(self, key: str) -> Callable[[], Any]:
        raise NotImplementedError

    def parquet_opener(self, key: str, day: str, digest: str) -> Callable[[], Any]:
        """A Parquet object's events as native lines, once its columns are checked to be
        what its events say, its events to be of its day, and its footer's statistics and
        metadata to be what its rows say (an OSError when not). Once its events are read,
        the digest in its name must be its content's: the exporter names a file by what
        it holds, so a copy under another name (which engines would count twice) or a
        renamed file is found, after what its events themselves show."""

        @contextmanager
        def open_events() -> Iterator[IO[bytes]]:
            data = self.read(key)
            lines = read_checked(data, day, key)
            problem = footer_problem(data)
            if problem is not None:
                raise OSError(f"{key}: {problem}")
            yield io.BytesIO(lines)
            actual = hashlib.sha256(data).hexdigest()[: len(digest)]
            if actual != digest:
                raise OSError(
                    f"{key}: the digest in its name ({digest}) is not its content's "
                    f"({actual}): a copy or a renamed file, which query engines would read "
                    "as well"
                )

        return open_events


class _Folder(_Export):
    """The files under a local folder (a `file` destination's Parquet export)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.prefix = ""
        self.where = str(folder)

    def listing(self) -> Iterator[str]:
        for top, dirs, files in os.walk(self.folder, onerror=self._unlisted):
            dirs.sort()
            base = Path(top).relative_to(self.folder).as_posix()
            for name in sorted(files):
                yield name if base == "." else f"{base}/{name}"

    def _unlisted(self, exc: OSError) -> None:
        raise VerifyUsageError(f"cannot list {self.where}: {exc}")

    def read(self, key: str) -> bytes:
        return (self.folder / key).read_bytes()

    def opener(self, key: str) -> Callable[[], Any]:
        @contextmanager
        def open_events() -> Iterator[IO[bytes]]:
            with gzip.open(self.folder / key, "rb") as f:
                yield cast(IO[bytes], f)

        return open_events


class _Bucket(_Export):
    """The objects under one prefix of one bucket, and reading them."""

    def __init__(self, access: AwsAccess, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.where = f"s3://{bucket}/{prefix}"
        try:
            self.client = make_client("s3", access)
        except AWS_ERRORS as exc:
            raise VerifyUsageError(str(aws_error(self.where, "connecting", exc))) from exc

    def listing(self) -> Iterator[str]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    yield str(item["Key"])
        except AWS_ERRORS as exc:
            raise VerifyUsageError(str(aws_error(self.where, "listing the objects", exc))) from exc

    def read(self, key: str) -> bytes:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
        except AWS_ERRORS as exc:
            raise OSError(str(aws_error(self.where, f"reading {key}", exc))) from exc
        return data

    def opener(self, key: str) -> Callable[[], Any]:
        @contextmanager
        def open_events() -> Iterator[IO[bytes]]:
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            except AWS_ERRORS as exc:
                raise OSError(str(aws_error(self.where, f"reading {key}", exc))) from exc
            try:
                with gzip.GzipFile(fileobj=io.BufferedReader(_Body(body, key)), mode="rb") as f:
                    yield cast(IO[bytes], f)  # read() is all the verifier uses
            finally:
                body.close()

        return open_events


class _HashingReader:
    """A file whose reads are hashed as they go."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.hashed = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self.hashed.update(data)
        return data


def _digest_taken(
    open_events: Callable[[], Any], name: str, digest: str, misnamed: dict[str, str]
) -> Callable[[], Any]:
    """`open_events` of a JSON Lines object, whose events are hashed as the verifier
    reads them (it only calls `read`), the rest once it is done: the exporter names an
    object by the digest of the native lines it holds, so when the name's digest is not
    theirs, `misnamed[name]` says so (a copy under another name, or a renamed object)."""

    @contextmanager
    def open_hashed() -> Iterator[IO[bytes]]:
        with open_events() as f:
            reader = _HashingReader(f)
            yield cast(IO[bytes], reader)
            while reader.read(1 << 20):
                pass
        actual = reader.hashed.hexdigest()[: len(digest)]
        if actual != digest:
            misnamed[name] = (
                f"{name}: the digest in its name ({digest}) is not its events' ({actual}): a "
                "copy or a renamed object, whose events query engines would count twice"
            )

    return open_hashed


def _checkpoint_records(
    bucket: _Export, keys: list[str]
) -> Iterator[tuple[str, int, StoredCheckpoint | str]]:
    for key in keys:
        name = key[len(bucket.prefix) :].lstrip("/")
        try:
            data = bucket.read(key)
        except OSError as exc:
            yield name, 0, f"cannot read the checkpoint object: {exc}"
            continue
        for number, raw in enumerate(data.splitlines(keepends=True), 1):
            if not raw.endswith(b"\n"):
                yield name, number, "torn record: a checkpoint object is written whole"
                continue
            yield name, number, parse_record(raw)


def _gone(lo: int, hi: int) -> str:
    return f"{lo:012d}-{hi:012d}-….jsonl.gz"


def _gone_file(lo: int, hi: int) -> str:
    return f"dt=…/…_{lo:012d}-{hi:012d}-….parquet"


def verify_s3(
    access: AwsAccess,
    bucket: str,
    prefix: str,
    *,
    verifiers: KeyRing | None,
    hmac_key: bytes | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    heartbeat_grace: timedelta = timedelta(seconds=130),
) -> VerifyReport:
    """Verify the S3 copy of a log under `prefix` of `bucket` with the checkpoint public
    keys and/or the HMAC key.

    `heartbeat_grace` allows for the exporter: it uploads a checkpoint only after the
    events it covers, which wait up to the destination's `batch_interval_secs` (60 by
    default) to be sent, and the next upload may be one more interval away.
    """
    return _verify_export(
        _Bucket(access, bucket, prefix),
        verifiers=verifiers,
        hmac_key=hmac_key,
        since=since,
        until=until,
        now=now,
        progress=progress,
        heartbeat_grace=heartbeat_grace,
    )


def is_parquet_folder(folder: Path) -> bool:
    """Whether `folder` holds a `file` destination's Parquet export (`dt=` folders or the
    `checkpoints/` copied beside them), rather than a log."""
    try:
        return any(
            (entry.name.startswith("dt=") or entry.name == CHECKPOINTS_DIR.rstrip("/"))
            and entry.is_dir()
            for entry in os.scandir(folder)
        )
    except OSError:
        return False


def _verify_export(
    store: _Export,
    *,
    verifiers: KeyRing | None,
    hmac_key: bytes | None,
    since: datetime | None,
    until: datetime | None,
    now: datetime | None,
    progress: Callable[[int], None] | None,
    heartbeat_grace: timedelta,
) -> VerifyReport:
    prefix = store.prefix
    parts: list[LogPart] = []
    checkpoint_keys: list[str] = []
    others = 0
    strays: list[str] = []
    # An object's digest is its content's (a Parquet file's bytes, a JSON Lines object's
    # events), so one digest under two names is a copy (kaudit writes the same events
    # again under the same name): engines count it twice.
    named_by_digest: dict[str, str] = {}
    misnamed: dict[str, str] = {}
    copies: list[tuple[str, str]] = []
    streams: set[str] = set()
    parquet = False
    for key in store.listing():
        rest = key[len(prefix) :]
        if CHECKPOINT_KEY.fullmatch(rest):
            checkpoint_keys.append(key)
            continue
        found = DATA_KEY.fullmatch(rest)
        if found is None:
            table = PARQUET_KEY.fullmatch(rest)
            if table is None:
                if _read_by_engines(rest):
                    strays.append(rest.lstrip("/"))
                else:
                    others += 1
                continue
            streams.add(table.group(2))
            parquet = True
            name = rest.lstrip("/")
            first_named = named_by_digest.setdefault(table.group(5), name)
            if first_named != name:
                copies.append((name, first_named))
            parts.append(
                LogPart(
                    rest.lstrip("/"),
                    int(table.group(3)),
                    int(table.group(4)),
                    store.parquet_opener(key, table.group(1), table.group(5)),
                )
            )
            continue
        streams.add(found.group(1))
        name = rest.lstrip("/")
        first_named = named_by_digest.setdefault(found.group(4), name)
        if first_named != name:
            copies.append((name, first_named))
        opener = _digest_taken(store.opener(key), name, found.group(4), misnamed)
        parts.append(LogPart(name, int(found.group(2)), int(found.group(3)), opener))
    if not parts and not checkpoint_keys:
        raise VerifyUsageError(
            f"{store.where} holds no objects of a kaudit export "
            "(an s3 destination's <stream>/<first>-<last>-<digest>.jsonl.gz, or "
            "dt=<day>/<stream>_<first>-<last>-<digest>.parquet files)"
        )
    notes = []
    if others:
        notes.append(
            f"{others} other object(s) under the prefix, outside its dt= folders, are not "
            "kaudit's and were not read"
        )
    if len(streams) > 1:
        notes.append(
            f"objects of {len(streams)} streams ({', '.join(sorted(streams))}) were checked "
            "as one log in sequence order"
        )
    if verifiers is not None and len(verifiers) and not checkpoint_keys:
        notes.append(
            "no checkpoint objects under the prefix: they are uploaded when the log is "
            "local, checkpoints are on, and the destination exports every event in native "
            "format"
        )
    report = verify_parts(
        store.where,
        parts,
        _checkpoint_records(store, checkpoint_keys),
        verifiers=verifiers,
        hmac_key=hmac_key,
        since=since,
        until=until,
        now=now,
        progress=progress,
        heartbeat_grace=heartbeat_grace,
        noun="object" if isinstance(store, _Bucket) else "file",
        gone_name=_gone_file if parquet else _gone,
        notes=notes,
    )
    if misnamed and not report.ok:
        # Its events' own findings say more; a copy is then one more thing to look at.
        report = replace(report, notes=(*report.notes, *misnamed.values()))
        misnamed = {}
    if not strays and not copies and not misnamed:
        return report
    inserted = (
        [
            Finding(
                FindingKind.INSERTED,
                f"{name}: not an object kaudit writes, yet in a dt= folder of the export, which "
                "query engines read as audit events (Athena's and Trino's table, DuckDB's "
                "dt=*/*.parquet)",
                segment=name,
            )
            for name in strays
        ]
        + [
            Finding(
                FindingKind.INSERTED,
                f"{name}: the same content as {original} (one content digest under two names): "
                "one is a copy, whose events query engines would count twice",
                segment=name,
            )
            for name, original in copies
        ]
        + [Finding(FindingKind.INSERTED, text, segment=name) for name, text in misnamed.items()]
    )
    return replace(report, ok=False, findings=(*report.findings, *inserted))


def _read_by_engines(rest: str) -> bool:
    """Whether an object (its key after the prefix) is in a `dt=` folder of the export,
    where query engines read every file as the table's (a key ending in `/` is a folder
    marker, which they skip)."""
    return rest.lstrip("/").startswith("dt=") and not rest.endswith("/")


def verify_s3_source(
    url: str,
    *,
    verifiers: KeyRing | None,
    hmac_key: bytes | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    endpoint_url: str | None = None,
) -> VerifyReport:
    """`kaudit verify s3://bucket/prefix`: the S3 destination's copy of the log against
    the checkpoints uploaded beside it.

    With `config_path`, the endpoint and credentials are those of its s3 destination
    for the bucket (the one with the URL's prefix, else the first), `endpoint_url`
    overriding its endpoint; the destination's prefix is used when the URL has none,
    and its batch interval widens the heartbeat grace. Without, the endpoint is
    `endpoint_url`, else $AWS_ENDPOINT_URL, else AWS's, with the environment's
    credentials. Raises VerifyUsageError for a URL that is no S3 location, or a
    configuration without an s3 destination for the bucket.
    """
    bucket, prefix = parse_s3_url(url)
    batch_interval = S3Destination.model_fields["batch_interval_secs"].default
    if config_path:
        config = load_config(config_path)
        candidates = [
            d
            for d in config.audit.all_destinations
            if isinstance(d, S3Destination) and d.bucket == bucket
        ]
        if not candidates:
            raise VerifyUsageError(f"{config_path} has no s3 destination for bucket {bucket}")
        destination = next(
            (d for d in candidates if d.prefix.rstrip("/") == prefix.rstrip("/")), candidates[0]
        )
        access = AwsAccess.model_validate(
            destination.model_dump(include=set(AwsAccess.model_fields))
        )
        if endpoint_url:
            access = access.model_copy(update={"endpoint_url": endpoint_url})
        prefix = prefix or destination.prefix
        batch_interval = destination.batch_interval_secs
        if destination.encoding == "parquet":
            # Its events, and so its checkpoints, also wait for the file to be complete.
            batch_interval += destination.parquet.max_age_secs
    else:
        access = AwsAccess(endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None)
    return verify_s3(
        access,
        bucket,
        prefix,
        verifiers=verifiers,
        hmac_key=hmac_key,
        since=since,
        until=until,
        progress=progress,
        # A checkpoint is uploaded after its events, which wait up to a batch interval to
        # be sent, and the next upload is up to one more away.
        heartbeat_grace=timedelta(seconds=10 + 2 * batch_interval),
    )


def verify_folder_source(
    folder: Path,
    *,
    verifiers: KeyRing | None,
    hmac_key: bytes | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    config_path: str | os.PathLike[str] | None = None,
) -> VerifyReport:
    """`kaudit verify <folder>` of a `file` destination's Parquet export: its files
    against the checkpoints copied beside them. The last checkpoint may lag the log by
    up to twice the time a file waits to be complete (`parquet.max_age_secs`, from the
    file destination writing `folder` in `config_path`, else its default)."""
    max_age = ParquetFiles.model_fields["max_age_secs"].default
    if config_path:
        resolved = folder.expanduser().resolve()
        for destination in load_config(config_path).audit.all_destinations:
            if (
                isinstance(destination, FileDestination)
                and destination.encoding == "parquet"
                and Path(destination.path).expanduser().resolve() == resolved
            ):
                max_age = destination.parquet.max_age_secs
                break
    return _verify_export(
        _Folder(folder),
        verifiers=verifiers,
        hmac_key=hmac_key,
        since=since,
        until=until,
        now=None,
        progress=progress,
        heartbeat_grace=timedelta(seconds=10 + 2 * max_age),
    )
