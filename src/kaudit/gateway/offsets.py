"""Which offset commits are resets: where each client's consumption of each partition has
reached, each group's committed offsets, and the `group.offsets_reset` record.

An OffsetCommit alone does not tell a reset from a consumer's ordinary commit: a consumer
that uses `assign()` (Java's commitSync, librdkafka, Flink) commits with generation -1 and
no member id, exactly as `kafka-consumer-groups --reset-offsets` and
`AdminClient.alterConsumerGroupOffsets` do. What tells them apart is where the offsets
go. A consumer commits offsets it has consumed up to; a reset moves the group elsewhere.
So the gateway keeps, per client (principal, source address, client id) and partition,
how far its consumption has reached: the highest offset it asked to fetch from, and the
offset after the last record batch delivered to it. Per group and partition it keeps the
last committed offset it saw (from successful commits and from OffsetFetch answers).

A committed offset X for a partition is ordinary when it leaves the group where it was
(X equals the known committed offset), or when the committing client has consumed that
partition, X is not past where that consumption reached, and X is not behind the group's
known committed offset. Otherwise the commit is a reset of that partition, for one of
three reasons: `not_consumed` (the committing client never fetched it: an admin tool),
`ahead_of_consumption` (records skipped), `behind_committed` (records to be re-read).

What the gateway cannot know: positions from before it started, or seen by another
gateway instance (a consumer's fetches may go through one instance and its commits
through another). A member of the group (a generation and member id the coordinator
gave it, which no admin tool has) whose consumption this gateway did not see is
therefore judged only against the committed offset; a client outside the group's
membership that commits before its first fetch through this gateway reads as a reset.
Both tables are bounded (least recently used entries are forgotten), so a commit of a
long-idle client may read as one too. The tables live on the event loop.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from kaudit.auditor import ActionEvent, ActionTarget, AuthInfo
from kaudit.gateway.audit_apis import AuditCall, TopicNames, auth_info, topic_name

ClientKey = tuple[str, str | None, str | None]
"""(principal, source address, client id): one consuming application instance."""

MAX_ENTRIES = 200_000
"""Partitions remembered per table (about 30 MB at most): the least recently used go."""


class _Bounded(OrderedDict[Any, int]):
    """A dict that forgets its least recently used entries past `limit`."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: Any, value: int) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.limit:
            self.popitem(last=False)


class ConsumptionPositions:
    """Where consumption reached, per client and partition, and groups' committed offsets."""

    def __init__(self, limit: int = MAX_ENTRIES) -> None:
        self._reached = _Bounded(limit)
        self._committed = _Bounded(limit)

    def reached(self, client: ClientKey, topic: str, partition: int, offset: int) -> None:
        """`client` fetched from, or was delivered records up to, `offset`."""
        key = (client, topic, partition)
        if offset > self._reached.get(key, -1):
            self._reached.put(key, offset)

    def committed(self, group: str, topic: str, partition: int, offset: int) -> None:
        """The group's committed offset, from a successful commit or an OffsetFetch."""
        if offset >= 0:
            self._committed.put((group, topic, partition), offset)

    def reset_reason(
        self,
        client: ClientKey,
        group: str,
        topic: str,
        partition: int,
        offset: int,
        member: bool = False,
    ) -> tuple[str | None, int | None, int | None]:
        """(why committing `offset` is a reset, or None; the group's committed offset and
        the client's reached position as known, each None when not known). `member`: the
        commit comes from a member of the group (generation and member id)."""
        committed = self._committed.get((group, topic, partition))
        reached = self._reached.get((client, topic, partition))
        if committed is not None and offset == committed:
            return None, committed, reached
        if reached is None and not member:
            return "not_consumed", committed, None
        if reached is not None and offset > reached:
            return "ahead_of_consumption", committed, reached
        if committed is not None and offset < committed:
            return "behind_committed", committed, reached
        return None, committed, reached

    def learn_offset_fetch(self, request: Any, response: Any, names: TopicNames) -> None:
        """The committed offsets an OffsetFetch answer names (v0-v7 one group, v8+ many)."""
        groups = getattr(response, "groups", None)
        if groups is None:
            groups = ((str(request.group_id), response.topics),)
        else:
            groups = tuple((str(g.group_id), g.topics) for g in groups)
        for group, topics in groups:
            for t in topics:
                name = topic_name(t, names)
                for p in t.partitions:
                    if not int(p.error_code):
                        self.committed(group, name, int(p.partition_index), int(p.committed_offset))

    def offset_commit_call(
        self, client: ClientKey, request: Any, response: Any, names: TopicNames
    ) -> AuditCall:
        """The audit call of an OffsetCommit: `group.offsets_reset` naming the partitions
        it moved away from where consumption had reached, or no event of its own (a
        generic request) for an ordinary commit. The group's committed offsets learn
        what the broker stored."""
        group = str(request.group_id)
        codes = {
            (topic_name(t, names), int(p.partition_index)): int(p.error_code)
            for t in response.topics
            for p in t.partitions
        }
        generation = getattr(
            request, "generation_id_or_member_epoch", getattr(request, "generation_id", -1)
        )
        member = bool(request.member_id) and int(generation) >= 0
        resets: list[dict[str, Any]] = []
        stored: list[tuple[str, int, int]] = []
        for topic, partition, offset in _commits(request, names):
            code = codes.get((topic, partition), 0)
            reason, committed, reached = self.reset_reason(
                client, group, topic, partition, offset, member
            )
            if reason is not None:
                resets.append(
                    {
                        "topic": topic,
                        "partition": partition,
                        "offset": offset,
                        "reason": reason,
                        "previous_offset": committed,
                        "consumed_to": reached,
                        "error_code": code,
                    }
                )
            if code == 0:
                stored.append((topic, partition, offset))
        for topic, partition, offset in stored:
            self.committed(group, topic, partition, offset)
        code = next((c for c in codes.values() if c), 0)
        auth = (auth_info("READ", "GROUP", group, code),)
        if not resets:
            return AuditCall(None, auth)
        target = ActionTarget("group.offsets_reset", "group", group, {"partitions": resets})
        return AuditCall(ActionEvent("reset_offsets", (target,)), _reset_auth(group, resets))


def _commits(request: Any, names: TopicNames) -> Iterable[tuple[str, int, int]]:
    for t in request.topics:
        name = topic_name(t, names)
        for p in t.partitions:
            yield name, int(p.partition_index), int(p.committed_offset)


def _reset_auth(group: str, resets: list[dict[str, Any]]) -> tuple[AuthInfo, ...]:
    code = next((r["error_code"] for r in resets if r["error_code"]), 0)
    return (auth_info("READ", "GROUP", group, code),)
