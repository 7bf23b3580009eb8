"""The seed's `cloudwatch` destination: each event one log event in a CloudWatch Logs
stream, sent with PutLogEvents in calls that keep within its limits.

PutLogEvents takes at most 10,000 events and 1,048,576 bytes per call (each event counts
its UTF-8 message plus 26 bytes), in chronological order, spanning at most 24 hours, and
no event over 256 KiB. A batch is sorted by time and cut into calls that fit; an event
that can never fit, or that CloudWatch rejects as too old or too new, is handed back to
the runner for the dead-letter file while the rest count as delivered.
"""

from __future__ import annotations

import socket
from datetime import datetime

from kaudit.config.model import CloudWatchDestination
from kaudit.errors import RecordsRejectedError
from kaudit.exporters.aws import AWS_ERRORS, aws_error, error_code, make_client
from kaudit.exporters.records import Progress, Rendered, batch_key, render_lines

MAX_EVENTS_PER_CALL = 10_000
MAX_BYTES_PER_CALL = 1_048_576
EVENT_OVERHEAD_BYTES = 26
MAX_EVENT_BYTES = 262_144 - EVENT_OVERHEAD_BYTES
MAX_SPAN_MS = 24 * 3600 * 1000


def timestamp_ms(rendered: Rendered) -> int:
    return int(datetime.fromisoformat(rendered.fields.timestamp).timestamp() * 1000)


def plan_calls(
    items: list[tuple[int, int, bytes]],
    max_events: int = MAX_EVENTS_PER_CALL,
    max_bytes: int = MAX_BYTES_PER_CALL,
) -> tuple[list[list[tuple[int, int, bytes]]], list[int]]:
    """Cut (index, timestamp ms, message) items into PutLogEvents calls within the limits.

    Returns the calls (each in time order) and the indexes of messages too large for any.
    """
    ordered = sorted(items, key=lambda item: (item[1], item[0]))
    calls: list[list[tuple[int, int, bytes]]] = []
    too_large = []
    current: list[tuple[int, int, bytes]] = []
    size = 0
    for item in ordered:
        cost = len(item[2]) + EVENT_OVERHEAD_BYTES
        if len(item[2]) > MAX_EVENT_BYTES:
            too_large.append(item[0])
            continue
        if current and (
            len(current) >= max_events
            or size + cost > max_bytes
            or item[1] - current[0][1] > MAX_SPAN_MS
        ):
            calls.append(current)
            current, size = [], 0
        current.append(item)
        size += cost
    if current:
        calls.append(current)
    return calls, too_large


class CloudWatchExporter:
    """Puts each batch into one log stream, creating group and stream when allowed."""

    native_input = True

    def __init__(self, destination: CloudWatchDestination) -> None:
        self.destination = destination
        self.name = destination.display_name
        self.group = destination.log_group
        self.stream = destination.log_stream or socket.gethostname()
        self.client = make_client("logs", destination)
        self._stream_ready = False
        self._progress = Progress()

    @property
    def _where(self) -> str:
        return f"cloudwatch destination {self.name} (log group {self.group}, stream {self.stream})"

    def send(self, records: list[bytes]) -> None:
        if not records:
            return
        rendered = render_lines(records, self.destination.format, self.name)
        items = [(i, timestamp_ms(r), r.body) for i, r in enumerate(rendered)]
        calls, rejected = plan_calls(items)
        if not self._stream_ready:
            self._ensure_stream()
        # A retry of the same batch resumes after the calls CloudWatch already took.
        done = self._progress.start(batch_key(records))
        for number, call in enumerate(calls):
            if number < done:
                continue
            rejected += self._put(call)
            self._progress.advance(number + 1)
        self._progress.finish()
        if rejected:
            raise RecordsRejectedError(
                f"{self._where}: {len(rejected)} of {len(records)} events refused (over "
                f"{MAX_EVENT_BYTES} bytes, or older than the group's retention / 14 days, "
                "or over 2 hours in the future)",
                sorted(rejected),
            )

    def _put(self, call: list[tuple[int, int, bytes]]) -> list[int]:
        """Send one call; the batch indexes CloudWatch rejected."""
        events = [{"timestamp": ts, "message": body.decode("utf-8")} for _, ts, body in call]
        try:
            answer = self.client.put_log_events(
                logGroupName=self.group, logStreamName=self.stream, logEvents=events
            )
        except AWS_ERRORS as exc:
            if error_code(exc) == "ResourceNotFoundException":
                # Deleted under us: create again on the retry.
                self._stream_ready = False
            raise aws_error(self._where, "putting log events", exc) from exc
        info = answer.get("rejectedLogEventsInfo") or {}
        rejected: list[int] = []
        too_new = info.get("tooNewLogEventStartIndex")
        if too_new is not None:
            rejected += [call[i][0] for i in range(too_new, len(call))]
        for key in ("tooOldLogEventEndIndex", "expiredLogEventEndIndex"):
            end = info.get(key)
            if end is not None:
                rejected += [call[i][0] for i in range(end + 1)]
        return sorted(set(rejected))

    def _ensure_stream(self) -> None:
        if self.destination.create_log_group:
            for action, kwargs in (
                (self.client.create_log_group, {"logGroupName": self.group}),
                (
                    self.client.create_log_stream,
                    {"logGroupName": self.group, "logStreamName": self.stream},
                ),
            ):
                try:
                    action(**kwargs)
                except AWS_ERRORS as exc:
                    code = error_code(exc)
                    if code != "ResourceAlreadyExistsException":
                        raise aws_error(
                            self._where, "creating the log group and stream", exc
                        ) from exc
        else:
            try:
                answer = self.client.describe_log_streams(
                    logGroupName=self.group, logStreamNamePrefix=self.stream
                )
            except AWS_ERRORS as exc:
                raise aws_error(self._where, "looking up the log stream", exc) from exc
            names = {s.get("logStreamName") for s in answer.get("logStreams", [])}
            if self.stream not in names:
                raise aws_error(
                    self._where,
                    "looking up the log stream",
                    _missing(
                        f"log stream {self.stream} does not exist and create_log_group is false"
                    ),
                )
        self._stream_ready = True

    def close(self) -> None:
        self.client.close()


def _missing(message: str) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": "ResourceNotFoundException", "Message": message}}, "DescribeLogStreams"
    )
