"""Copying the local log's signed checkpoints beside an export: an S3 destination's
objects, or the Parquet files of a `file` destination's folder.

An export checked on its own (`kaudit verify s3://…`, or `kaudit verify` of the folder,
with the public key alone) needs the
writer's signed checkpoints next to the events, as the external anchor the integrity
design speaks of: a bucket whose objects were changed, deleted or cut short no longer
matches them. The records are uploaded as the local log keeps them (integrity/store.py),
several to an object (or file) named `<prefix>checkpoints/<first size>-<last size>-<digest>
.checkpoints.jsonl`, and only once the events they cover are uploaded (a checkpoint of
size n after event n - 1): so the copy never holds a checkpoint ahead of its events
unless events were taken away. While the destination is idle the writer's heartbeat
checkpoints follow, so a copy that stops early is visible too.

How far the checkpoint files have been read is kept in a small state file; losing it
only uploads the same records again, under the same names (they come from the content).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import orjson

from kaudit.config import Config
from kaudit.config.model import DestinationBase, LocalLog
from kaudit.files import open_private
from kaudit.integrity.store import checkpoint_files
from kaudit.log.cursor import safe_name

log = logging.getLogger("kaudit.exporters.s3")

CHECKPOINTS_DIR = "checkpoints/"
"""Under the destination's prefix: where the checkpoint objects go."""
CHECKPOINTS_SUFFIX = ".checkpoints.jsonl"
CHECKPOINT_KEY = re.compile(
    r"/?"
    + re.escape(CHECKPOINTS_DIR)
    + r"(\d{12})-(\d{12})-([0-9a-f]{16})"
    + re.escape(CHECKPOINTS_SUFFIX)
)
"""What follows the prefix in the name of a checkpoint object: first and last tree
size, content digest."""
_MAX_RECORDS_PER_OBJECT = 5000


def checkpoint_key(prefix: str, first_size: int, last_size: int, body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()[:16]
    return (
        f"{prefix}{CHECKPOINTS_DIR}{first_size:012d}-{last_size:012d}-{digest}{CHECKPOINTS_SUFFIX}"
    )


class CheckpointShipper:
    """Uploads the checkpoints written beside a local log once their events are exported.

    `upload(key, body)` puts one object (raising ExporterError when it cannot); the read
    position in the checkpoint files moves on, and is saved, only after it succeeded.
    """

    def __init__(
        self, log_dir: Path, state_path: Path, prefix: str, upload: Callable[[str, bytes], None]
    ) -> None:
        self.log_dir = log_dir
        self.state_path = state_path
        self.prefix = prefix
        self.upload = upload
        self.uploaded = 0
        """Checkpoint records uploaded by this shipper."""
        self._file, self._offset = self._load()

    def _load(self) -> tuple[str, int]:
        try:
            state = orjson.loads(self.state_path.read_bytes())
            return str(state["file"]), int(state["offset"])
        except FileNotFoundError:
            return "", 0
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning(
                "%s is damaged (%s): uploading the checkpoints again from the start",
                self.state_path,
                exc,
            )
            return "", 0

    def _save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        with open_private(tmp) as f:
            f.write(orjson.dumps({"file": self._file, "offset": self._offset}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    def _pending(self, limit: int) -> tuple[list[bytes], list[int], str, int]:
        """Complete records after the read position whose tree size is at most `limit`,
        their sizes, and the position after the last of them."""
        records: list[bytes] = []
        sizes: list[int] = []
        file, offset = self._file, self._offset
        for path in checkpoint_files(self.log_dir):
            if path.name < self._file:
                continue
            start = self._offset if path.name == self._file else 0
            try:
                with open(path, "rb") as f:
                    f.seek(start)
                    data = f.read()
            except FileNotFoundError:
                continue  # removed by retention meanwhile
            at = start
            for raw in data.splitlines(keepends=True):
                if not raw.endswith(b"\n") or len(records) >= _MAX_RECORDS_PER_OBJECT:
                    return records, sizes, file, offset  # being written, or enough for now
                try:
                    size = int(orjson.loads(raw)["size"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    log.warning("%s byte %d: skipping an unreadable checkpoint: %s", path, at, exc)
                    at += len(raw)
                    file, offset = path.name, at
                    continue
                if size > limit:
                    return records, sizes, file, offset
                records.append(raw)
                sizes.append(size)
                at += len(raw)
                file, offset = path.name, at
        return records, sizes, file, offset

    def ship(self, delivered_through: int | None) -> int:
        """Upload the checkpoints covering no event after `delivered_through` (the last
        sequence number exported) not uploaded yet; how many were."""
        limit = -1 if delivered_through is None else delivered_through + 1
        shipped = 0
        while True:
            records, sizes, file, offset = self._pending(limit)
            if records:
                body = b"".join(records)
                self.upload(checkpoint_key(self.prefix, sizes[0], sizes[-1], body), body)
                shipped += len(records)
            if (file, offset) != (self._file, self._offset):
                self._file, self._offset = file, offset
                self._save()
            if len(records) < _MAX_RECORDS_PER_OBJECT:
                self.uploaded += shipped
                return shipped


def checkpoint_shipper(
    destination: DestinationBase,
    config: Config,
    where: str,
    prefix: str,
    upload: Callable[[str, bytes], None],
) -> CheckpointShipper | None:
    """The shipper copying the log's checkpoints beside `destination`'s export (`where`
    names it in messages), or None when they cannot sign what it exports: checkpoints
    off, a Kafka log (its checkpoints stay on the companion topic), or a destination
    exporting a selection of events or another format than native."""
    name = destination.display_name
    if not config.audit.integrity.checkpoints.enabled:
        return None
    if not isinstance(config.audit.log, LocalLog):
        log.info(
            "%s: the Kafka log's checkpoints stay on its companion topic; they are "
            "not copied to %s",
            name,
            where,
        )
        return None
    if (
        destination.format != "native"
        or list(destination.events) != ["*"]
        or destination.exclude_events
    ):
        log.warning(
            "%s: checkpoints are not copied to %s: they sign the whole log in native "
            "format, and this destination exports %s",
            name,
            where,
            "a selection of events" if destination.format == "native" else destination.format,
        )
        return None
    state = config.data_path / "exporters" / f"{safe_name(name)}.checkpoints.json"
    return CheckpointShipper(config.log_dir, state, prefix, upload)
