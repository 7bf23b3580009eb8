"""The writer of the audit log on a Kafka topic (`KafkaLogSink`): one log stream.

An idempotent producer with acks=all. Each event goes to the partition of its resource
(the partition Kafka's default partitioner gives the resource as a key), so one
resource's events stay in order in one partition; the events of a batch bound for one
partition travel together, one line each, in records of up to 256 lines (one record per
event cost the writer most of its time in produce(), and the broker its work per
record). Every record carries the writer's stream id in a `kaudit_stream` header.

A batch is appended when every record of it is acknowledged; events acknowledged before
a failure are not produced again when the recorder retries the batch (they are tracked
by sequence number, for that batch only: its first sequence number, size and first
line), while records that were in flight when a write timed out may reach the topic
twice — delivery is at-least-once and readers drop duplicates by `event_id`. A batch the
recorder gives up on (`abandon`, at close) has its queued records purged and its
acknowledged events told back (those are written, the rest lost) and, if any of its
records was produced, its sequence numbers spent: one may be in the topic already, so no
later event is given the same number.
`append` is `send` and then `confirm` (which waits for the acknowledgements): the
recorder's writer calls them apart and encodes its next batch in between.

Each writer is one log stream with its own sequence numbers, and holds it: a second
process on the same state directory is refused. Its stream id and next sequence number
are kept in `<data_dir>/kafka-log/<topic>.json`, written at most once a second after an
acknowledged batch, and at close, with the partition end offsets seen then; after an unclean
stop the writer reads its own records past those offsets (with a `KafkaLogReader`) to
continue the sequence without reusing a number.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer

from kaudit.config.model import KafkaLog
from kaudit.errors import LogError, LogWriteError
from kaudit.files import open_private
from kaudit.log.kafka.client import ErrorTracker, client_base, describe, error_text
from kaudit.log.kafka.reader import STREAM_HEADER, KafkaLogReader
from kaudit.log.kafka.records import record_value, records
from kaudit.log.kafka.topic import ensure_topic

log = logging.getLogger("kaudit.log.kafka")

_DENIED = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._AUTHENTICATION,
}


_PURGED = {KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT}

_OFFSETS_REFRESH_S = 30.0
_REPORT_GRACE_S = 2.0
_STATE_SAVE_EVERY_S = 1.0


class KafkaLogSink:
    """The single writer of one log stream on a Kafka topic."""

    keyed = True

    def __init__(
        self,
        config: KafkaLog,
        state_dir: Path,
        *,
        stream: str | None = None,
        ensure: bool = True,
    ) -> None:
        self.config = config
        self.topic = config.topic
        self._where = describe(config)
        if ensure:
            ensure_topic(config)
        self.state_dir = state_dir
        self._state_path = state_dir / f"{config.topic}.json"
        self._lock = _lock_stream(state_dir / f"{config.topic}.lock", config.topic)
        self._producer = self._new_producer()
        # The batch being appended: sequences handed to the producer, and those it
        # reported failed. Only failures are reported (delivery.report.only.error), so a
        # batch is acknowledged once the producer's queue is empty: everything produced
        # and not failed has been acked (acks=all).
        self._produced: set[int] = set()
        self._failed: set[int] = set()
        # Which batch those belong to: (first sequence number, size, first line). A batch
        # renumbered from the same sequence after another was given up is not that one.
        self._batch: tuple[int, int, bytes] | None = None
        self._failure: str | None = None
        self._failure_code: int | None = None
        self._offsets_at = time.monotonic()
        self._watermarks: KafkaLogReader | None = None
        # Partition end offsets as far as this writer knows: saved with the state so that
        # recovery after an unclean stop reads only what came after.
        self._last_offsets: dict[int, int] = {}
        self.last_line: bytes | None = None
        self.stream, self.next_sequence = self._load_state(stream)
        # A dict, not a list of pairs: confluent-kafka converts it for each record, and
        # the dict costs half as much to convert (the largest cost of produce()).
        self._stream_header: dict[str, str | bytes | None] = {STREAM_HEADER: self.stream.encode()}
        self._saved_at = self._appended_at = float("-inf")
        self._partitions: int | None = None
        self._partitions_at = float("-inf")
        # The batch sent and not yet confirmed: its deadline, size and last line; and how
        # many of its lines this attempt produced.
        self._sending: tuple[float, int, bytes | None] = (0.0, 0, None)
        self._todo = 0

    def _new_producer(self) -> Producer:
        # Each producer reports to a tracker of its own: a replaced producer that reports
        # its fatal error again while being destroyed must not fail the new one.
        self._errors = ErrorTracker()
        return Producer(
            {
                **client_base(self.config, self._errors),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "batch.size": 1_000_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
                # A record not acknowledged within this long is reported as failed; the
                # recorder then retries it (and the failure policy applies meanwhile).
                "message.timeout.ms": max(self.config.write_timeout_ms, 1000),
                # One Python callback per failure instead of one per record: at 100k
                # events/s the per-record callback was the writer's largest cost.
                "delivery.report.only.error": True,
                "on_delivery": self._on_failure,
            }
        )

    def _replace_fatal_producer(self) -> None:
        """An idempotent producer that hit a fatal error (e.g. no rights to get a producer
        id) never works again: the retry gets a new one, which works once the cause is
        fixed (an ACL granted). Purging the old one reports its records as failed, so
        they are produced again."""
        if not self._errors.producer_fatal:
            return
        old, last = self._producer, self._errors.last
        self._producer = self._new_producer()
        old.purge()
        with contextlib.suppress(KafkaException, SystemError):
            old.poll(0)
        # Which of the old producer's records were acknowledged is unknown (only failures
        # are reported, and maybe not all of them now): produce them all again. At least
        # once: a record may reach the topic twice, and readers drop it by event_id.
        self._failed |= self._produced
        self._errors.last = last

    # -- state -----------------------------------------------------------------------------

    def _load_state(self, stream: str | None) -> tuple[str, int]:
        try:
            state = orjson.loads(self._state_path.read_bytes())
        except FileNotFoundError:
            new_stream = stream or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
            self._last_offsets = self._current_ends()
            return new_stream, 0
        except orjson.JSONDecodeError as exc:
            raise LogError(f"kafka log state {self._state_path} is damaged: {exc}") from exc
        saved_stream = str(state["stream"])
        if stream is not None and stream != saved_stream:
            raise LogError(
                f"kafka log state {self._state_path} belongs to stream {saved_stream!r}, "
                f"not {stream!r}"
            )
        next_sequence = int(state["next_sequence"])
        last = state.get("last_line")
        self.last_line = last.encode() if isinstance(last, str) else None
        offsets = {int(p): int(o) for p, o in state.get("offsets", {}).items()}
        return saved_stream, self._recover(saved_stream, next_sequence, offsets)

    def _current_ends(self) -> dict[int, int]:
        reader = KafkaLogReader(self.config, group=None)
        try:
            return reader.end_offsets()
        finally:
            reader.close()

    def _recover(self, stream: str, next_sequence: int, offsets: dict[int, int]) -> int:
        """Continue after our own records written since the state was saved."""
        reader = KafkaLogReader(self.config, group=None)
        try:
            highest = next_sequence - 1
            self._last_offsets = reader.end_offsets()
            for record in reader.records_from(offsets):
                if record.stream != stream:
                    continue
                seq = record.sequence
                if seq is not None and seq > highest:
                    highest = seq
                    self.last_line = record.line
        finally:
            reader.close()
        if highest + 1 != next_sequence:
            log.warning(
                "kafka log stream %s: %d events were written after the last saved state; "
                "continuing at sequence %d",
                stream,
                highest + 1 - next_sequence,
                highest + 1,
            )
        return highest + 1

    def _save_state(self) -> None:
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        offsets = self._end_offsets()
        body = {
            "stream": self.stream,
            "topic": self.topic,
            "next_sequence": self.next_sequence,
            # The chain of signatures continues from this event after a restart.
            "last_line": None if self.last_line is None else self.last_line.decode(),
            "offsets": {str(p): o for p, o in offsets.items()},
        }
        tmp = self._state_path.with_suffix(".tmp")
        with open_private(tmp) as f:
            f.write(orjson.dumps(body))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._state_path)
        self._saved_at = time.monotonic()

    def durable_ends(self) -> dict[int, int]:
        """Partition ends no later than the first record this writer has yet to write."""
        return self._end_offsets()

    def _end_offsets(self) -> dict[int, int]:
        """Partition ends no later than our last acknowledged record, refreshed every
        30 s: when the state is saved, all our records so far are acknowledged, so the
        ends read now bound where recovery has to start reading."""
        now = time.monotonic()
        if now - self._offsets_at > _OFFSETS_REFRESH_S:
            if self._watermarks is None:
                self._watermarks = KafkaLogReader(self.config, group=None)
            try:
                self._last_offsets = self._watermarks.end_offsets()
                self._offsets_at = now
            except LogError as exc:
                log.warning("kafka audit log %s: cannot read partition ends: %s", self.topic, exc)
        return dict(self._last_offsets)

    # -- writing ---------------------------------------------------------------------------

    def _on_failure(self, err: KafkaError | None, msg: Any) -> None:
        # Runs on the writer thread, inside produce/poll/flush. The failed record's
        # sequence number is read from its value: failures are rare, records many.
        if err is None:
            return
        if err.code() not in _PURGED:  # purging is ours, not the cause
            self._failure = error_text(err)
            self._failure_code = err.code()
        for line in (msg.value() or b"").split(b"\n"):
            # The integrity block ends the line: its sequence number is the last one.
            at = line.rfind(b'"sequence_number":')
            if at >= 0:
                digits = line[at + 18 : at + 40].split(b",")[0].split(b"}")[0]
                if digits.isdigit():
                    self._failed.add(int(digits))

    def _drain(self, deadline: float) -> bool:
        """Wait until the producer has reported on every record; False at the deadline."""
        while len(self._producer):
            remaining = deadline - time.monotonic()
            if self._errors.producer_fatal:
                # Nothing more will be delivered: have the queued records reported (with
                # their own errors, the cause worth showing) and give up this attempt.
                self._producer.purge()
                with contextlib.suppress(KafkaException, SystemError):
                    self._producer.poll(0)
                return False
            if remaining <= 0:
                return False
            try:
                self._producer.flush(min(remaining, 1.0))
            except (KafkaException, SystemError) as exc:
                # flush() raises once the producer is fatally failed (confluent-kafka
                # may surface that as SystemError from inside a delivery callback).
                self._errors.producer_fatal = True
                cause = (exc.__cause__ or exc.__context__) if isinstance(exc, SystemError) else exc
                with contextlib.suppress(KafkaException, SystemError):
                    self._producer.poll(0)  # the error callback may still say why
                if isinstance(cause, KafkaException):
                    self._errors.last = error_text(cause.args[0])
                elif self._errors.last is None:
                    self._errors.last = (
                        "the producer failed fatally (an idempotent producer needs WRITE on "
                        "the topic to get a producer id)"
                    )
                return False
        return True

    def append(self, lines: Sequence[bytes], keys: Sequence[bytes] | None = None) -> None:
        """Produce the batch and wait for every acknowledgement (acks=all)."""
        self.send(lines, keys)
        self.confirm()

    def send(self, lines: Sequence[bytes], keys: Sequence[bytes] | None = None) -> None:
        """Produce the batch (what `append` does first); `confirm` waits until it is
        acknowledged. The recorder's writer encodes its next batch meanwhile. Until
        confirmed (or given up), no other batch may be sent; a failed send or confirm is
        retried with `append` of the same lines."""
        # message.timeout.ms is the write timeout: a little grace past it lets the
        # producer report each record's own failure (the cause) rather than nothing.
        deadline = time.monotonic() + self.config.write_timeout_ms / 1000 + _REPORT_GRACE_S
        self._sending = (deadline, len(lines), lines[-1] if lines else None)
        base = self.next_sequence
        batch = (base, len(lines), lines[0] if lines else b"")
        if batch != self._batch:
            # A different batch than the one produced before: nothing of that one counts
            # as produced or failed for this one (a given-up batch was `abandon`ed).
            self._batch = batch
            self._produced.clear()
            self._failed.clear()
        # Records of an earlier attempt still queued are waited for, not produced again.
        self._drain(deadline)
        self._producer.poll(0)  # serve error callbacks: a fatal error replaces the producer
        self._replace_fatal_producer()
        if len(self._producer) == 0:
            # Everything produced before is reported: what did not fail is acknowledged,
            # what failed is produced again (and counts as produced only once it is).
            self._produced -= self._failed
        self._failure = None
        done = self._produced
        todo = [i for i in range(len(lines)) if base + i not in done]
        self._failed.clear()
        produce = self._producer.produce
        topic = self.topic
        headers = self._stream_header
        error: KafkaException | None = None
        replaced = False
        produced = self._produced
        for partition, chunk in self._records(lines, keys, todo):
            value = record_value([lines[i] for i in chunk])
            produced.update(map(base.__add__, chunk))
            while True:
                try:
                    if partition is None:
                        produce(topic, value, keys[chunk[0]] if keys else None, headers=headers)
                    else:
                        produce(topic, value, partition=partition, headers=headers)
                    break
                except BufferError:
                    self._producer.poll(0.05)  # local queue full: let deliveries drain
                except KafkaException as exc:
                    # The producer failed fatally (its error callback may not have run
                    # yet): replace it once and go on; a second failure ends the attempt.
                    self._errors.producer_fatal = True
                    if not replaced:
                        replaced = True
                        self._replace_fatal_producer()
                        produce = self._producer.produce
                        continue
                    produced.difference_update(map(base.__add__, chunk))
                    error = exc
                    break
            if error is not None:
                raise LogWriteError(self._explain(len(lines), len(lines))) from error
        self._todo = len(todo)

    def confirm(self) -> None:
        """Wait until every record of the batch `send` produced is acknowledged; the
        batch is then appended. LogWriteError when one failed or the write timed out."""
        deadline, count, last = self._sending
        drained = self._drain(deadline)
        failed = self._failed & self._produced  # late reports of an abandoned batch aside
        if not drained or failed:
            missing = len(failed) if drained else len(self._producer)
            raise LogWriteError(self._explain(missing or self._todo, count))
        self.next_sequence += count
        if last is not None:
            self.last_line = last.rstrip(b"\n")
        self._produced.clear()
        self._batch = None
        self._appended_at = time.monotonic()
        # The state is a lower bound for recovery, which reads our records past the saved
        # offsets: saving it (an fsync) once a second instead of after every batch loses
        # nothing, while at 100k events/s it was a tenth of the writer's time.
        if time.monotonic() - self._saved_at >= _STATE_SAVE_EVERY_S:
            self._save_state()

    def abandon(self) -> list[int]:
        """Give up the batch being appended; the indexes of its lines that were
        acknowledged (in the topic: the recorder counts them written, the rest lost).
        Its records still queued are purged, never to be delivered for it or taken for
        another batch's. If any of its records was handed to the producer, some may be in
        the topic beyond those acknowledged (a record that timed out or was purged in
        flight may still have been written): the batch's sequence numbers are then
        spent, so that no number ever names two events; the verifier sees the gap, and
        the recorder's audit.degraded event says how many events were lost."""
        batch, produced = self._batch, self._produced
        self._batch = None
        acknowledged: list[int] = []
        if batch is not None and produced:
            held, errors = self._producer, self._errors
            if len(held):
                # What follows goes through a new producer: purging records in flight
                # leaves an idempotent producer to recover its sequence state first.
                self._producer = self._new_producer()
                held.purge()  # blocking: every purged record is reported...
            with contextlib.suppress(KafkaException, SystemError):
                held.poll(0)  # ...here, as failed
            first, count, _ = batch
            # Only failures are reported: what did not fail was acknowledged once every
            # record is reported, unless the producer failed fatally (then its reports
            # may be missing, and nothing is known to be in the topic).
            if len(held) == 0 and not errors.producer_fatal:
                delivered = produced - self._failed
                acknowledged = [i for i in range(count) if first + i in delivered]
            self.next_sequence = max(self.next_sequence, first + count)
            self._appended_at = time.monotonic()  # saved at close: the numbers stay spent
            log.error(
                "kafka audit log %s: %d of %d events given up; sequence numbers %d-%d are "
                "not used again",
                self.topic,
                count - len(acknowledged),
                count,
                first,
                first + count - 1,
            )
        self._produced = set()
        self._failed.clear()
        return acknowledged

    def _records(
        self, lines: Sequence[bytes], keys: Sequence[bytes] | None, todo: list[int]
    ) -> Iterator[tuple[int | None, list[int]]]:
        """(partition, indexes of the lines of one record) for the lines to produce, as
        kaudit.log.kafka.records groups them. While the topic's partitions cannot be
        read (not allowed to describe it, no leader yet), each line is a record of its
        own, keyed (partition None): the producer then says what is wrong when it fails."""
        count = self._partition_count()
        if count is None:
            for i in todo:
                yield None, [i]
            return
        yield from records(lines, keys, todo, count)

    def _partition_count(self) -> int | None:
        """The topic's partitions, None while they cannot be read (looked up again every
        30 s, partitions can be added; every second while unknown: a topic just created
        takes a moment to appear in the metadata)."""
        now = time.monotonic()
        again = _OFFSETS_REFRESH_S if self._partitions is not None else 1.0
        if now - self._partitions_at > again:
            self._partitions_at = now
            try:
                found = self._producer.list_topics(self.topic, timeout=10).topics[self.topic]
            except (KafkaException, KeyError) as exc:
                log.warning("kafka audit log %s: cannot read its partitions: %s", self.topic, exc)
            else:
                if found.partitions:
                    self._partitions = len(found.partitions)
        return self._partitions

    def _explain(self, missing: int, total: int) -> str:
        cause = self._failure or self._errors.last or "no acknowledgement in time"
        hint = ""
        if self._failure_code in _DENIED or "uthorization" in cause:
            hint = " (grant WRITE on the topic to this principal)"
        return (
            f"kafka audit log {self.topic} ({self._where}): {missing} of {total} events not "
            f"acknowledged (acks=all, write timeout {self.config.write_timeout_ms} ms): "
            f"{cause}{hint}"
        )

    def close(self) -> None:
        try:
            remaining = self._producer.flush(self.config.write_timeout_ms / 1000)
        except KafkaException as exc:
            log.error("kafka audit log %s: producer failed at close: %s", self.topic, exc)
            remaining = -1
        if remaining:
            if remaining > 0:
                log.error(
                    "kafka audit log %s: %d events not acknowledged at close",
                    self.topic,
                    remaining,
                )
        elif not self._produced and self._saved_at < self._appended_at:
            # Every batch is acknowledged: saved now, a restart reads nothing again.
            self._save_state()
        if self._watermarks is not None:
            self._watermarks.close()
        self._lock.close()


def _lock_stream(path: Path, topic: str) -> IO[bytes]:
    """Hold the stream of this state directory for this process: two writers sharing
    one stream would reuse its sequence numbers. The lock goes with the process, however
    it ends (kill -9 included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+b")  # noqa: SIM115 (held open while the sink lives)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise LogError(
            f"kafka audit log {topic}: another kaudit process writes the stream kept in "
            f"{path.parent}; give each instance (gateway, console) a data_dir of its own, "
            "so each is a writer stream of its own"
        ) from None
    return handle
