"""The seed's `s3` destination: each batch is one gzipped JSON Lines object.

Objects are named `<prefix><stream>/<first seq>-<last seq>-<digest>.jsonl.gz`: the
stream is the writing host, the sequence range says which events are inside, and the
digest of the content makes the name the same when the runner retries the same batch
(so a retry overwrites instead of adding a copy) and different for any other content.
With `object_lock: true` each object is written with Object Lock retention (mode and days
from the config, days defaulting to `audit.retention.min_days`); the bucket must have been
created with Object Lock on, which is checked before the first upload. The lifecycle
rules of `audit.retention.lifecycle` (and `max_days` as expiry) are applied to the bucket,
scoped to the prefix, once at start, keeping other rules of the bucket.

With checkpoints on (`integrity.checkpoints`, a local log) and the whole log exported in
native format, the writer's signed checkpoints are uploaded under `<prefix>checkpoints/`
once their events are (exporters/s3_checkpoints.py), so `kaudit verify s3://…` can check
the copy with the public key alone (exporters/export_verify.py reads it back).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from kaudit.config import Config
from kaudit.config.model import S3Destination
from kaudit.errors import ExporterError
from kaudit.exporters.aws import AWS_ERRORS, aws_error, error_code, http_status, make_client
from kaudit.exporters.records import batch_key, render_lines
from kaudit.exporters.s3_checkpoints import checkpoint_shipper

log = logging.getLogger("kaudit.exporters.s3")

DATA_KEY = re.compile(r"/?([^/]+)/(\d{12})-(\d{12})-([0-9a-f]{16})\.jsonl\.gz")
"""What follows the prefix in the name of an object of events: stream, first and last
sequence number, content digest."""


def object_key(prefix: str, stream: str, low: int, high: int, digest: str) -> str:
    return f"{prefix}{_safe(stream)}/{low:012d}-{high:012d}-{digest}.jsonl.gz"


class S3Exporter:
    """Uploads each batch as one object."""

    native_input = True
    wants_config = True

    def __init__(self, destination: S3Destination, config: Config) -> None:
        self.destination = destination
        self.name = destination.display_name
        self.bucket = destination.bucket
        self.prefix = destination.prefix
        self.lock_days = destination.object_lock_days or config.audit.retention.min_days
        self.retention = config.audit.retention
        self.client = make_client("s3", destination)
        self._bucket_checked = False
        self.last_key: str | None = None
        """The key of the last object written."""
        self.objects_written = 0
        self.checkpoints = checkpoint_shipper(
            destination, config, "S3", self.prefix, self._put_checkpoints
        )
        """Uploads the log's checkpoints beside the objects (None: not for this log)."""

    def send(self, records: list[bytes]) -> None:
        if not records:
            return
        rendered = render_lines(records, self.destination.format, self.name)
        if not self._bucket_checked:
            self._check_bucket()
        first, last = rendered[0], rendered[-1]
        stream = first.fields.host or first.fields.cluster_id or "kaudit"
        low = first.sequence if first.sequence is not None else 0
        high = last.sequence if last.sequence is not None else low + len(rendered) - 1
        key = object_key(self.prefix, stream, low, high, batch_key(records))
        body = gzip.compress(b"".join(r.body + b"\n" for r in rendered), compresslevel=6, mtime=0)
        metadata = {
            "first-sequence": str(low),
            "last-sequence": str(high),
            "events": str(len(rendered)),
            "format": self.destination.format,
        }
        self._put(key, body, metadata)
        self.last_key = key
        self.objects_written += 1
        if self.checkpoints is not None:
            self.checkpoints.ship(high)

    def idle(self, delivered_through: int | None) -> None:
        """Caught up with the log: upload the checkpoints (heartbeats) made meanwhile."""
        if self.checkpoints is not None:
            if not self._bucket_checked:
                self._check_bucket()
            self.checkpoints.ship(delivered_through)

    def _put_checkpoints(self, key: str, body: bytes) -> None:
        self._put(key, body, {"kind": "checkpoints"})

    def upload(self, key: str, body: bytes, metadata: dict[str, str], content_type: str) -> None:
        """One object of another encoding (Parquet, exporters/parquet.py), checking the
        bucket before the first, as `send` does."""
        if not self._bucket_checked:
            self._check_bucket()
        self._put(key, body, metadata, content_type)

    def _put(
        self,
        key: str,
        body: bytes,
        metadata: dict[str, str],
        content_type: str = "application/x-ndjson",
    ) -> None:
        """One object, with the destination's storage class and Object Lock retention."""
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": body,
            "ContentType": content_type,
            "ContentMD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
            "Metadata": metadata,
        }
        if self.destination.storage_class:
            params["StorageClass"] = self.destination.storage_class
        if self.destination.object_lock:
            params["ObjectLockMode"] = self.destination.object_lock_mode
            params["ObjectLockRetainUntilDate"] = datetime.now(UTC) + timedelta(days=self.lock_days)
        try:
            self.client.put_object(**params)
        except AWS_ERRORS as exc:
            raise aws_error(self._where, f"uploading {key}", exc) from exc

    @property
    def _where(self) -> str:
        return f"s3 destination {self.name} (bucket {self.bucket})"

    def _check_bucket(self) -> None:
        """The bucket exists and is ours to write; Object Lock is on when asked for."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except AWS_ERRORS as exc:
            if http_status(exc) == 404:
                raise ExporterError(
                    f"{self._where}: NoSuchBucket: bucket {self.bucket} does not exist; "
                    "create it (with Object Lock on, for object_lock: true)",
                    retryable=True,
                ) from exc
            raise aws_error(self._where, "checking the bucket", exc) from exc
        if self.destination.object_lock:
            self._check_object_lock()
        self._apply_lifecycle()
        self._bucket_checked = True

    def _check_object_lock(self) -> None:
        try:
            answer = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except AWS_ERRORS as exc:
            if error_code(exc) == "ObjectLockConfigurationNotFoundError":
                answer = {}
            else:
                raise aws_error(self._where, "reading its Object Lock setting", exc) from exc
        if answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
            raise ExporterError(
                f"{self._where}: object_lock is true but the bucket has no Object Lock; "
                "Object Lock can only be turned on when a bucket is created",
                retryable=True,
            )

    def _lifecycle_rule(self) -> dict[str, Any] | None:
        rules = self.retention.lifecycle
        if not rules and self.retention.max_days is None:
            return None
        rule: dict[str, Any] = {
            "ID": f"kaudit:{self.prefix or '*'}"[:255],
            "Filter": {"Prefix": self.prefix},
            "Status": "Enabled",
        }
        if rules:
            rule["Transitions"] = [
                {"Days": r.days, "StorageClass": r.storage_class}
                for r in sorted(rules, key=lambda r: r.days)
            ]
        if self.retention.max_days is not None:
            rule["Expiration"] = {"Days": self.retention.max_days}
        return rule

    def _apply_lifecycle(self) -> None:
        """Put our rule in the bucket's lifecycle configuration, keeping the others.

        Not being allowed to is logged, not fatal: events still have to be delivered.
        """
        rule = self._lifecycle_rule()
        if rule is None:
            return
        try:
            try:
                current = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
                others = [r for r in current.get("Rules", []) if r.get("ID") != rule["ID"]]
            except AWS_ERRORS as exc:
                if error_code(exc) != "NoSuchLifecycleConfiguration":
                    raise
                others = []
            self.client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": [*others, rule]}
            )
        except AWS_ERRORS as exc:
            log.warning("%s", aws_error(self._where, "applying retention.lifecycle", exc))

    def close(self) -> None:
        self.client.close()


def _safe(stream: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stream) or "kaudit"
