"""Message actions: produce, and inspect (always recorded, masked unless the user holds
TOPIC_UNMASK)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kaudit.console.actions import messages
from kaudit.console.masking import Masker, render_bytes
from kaudit.console.service.core import Call, ServiceCore, Spec

__all__ = ["MessageActions"]

RENDER_MODES = ("text", "json", "hex")


class MessageActions(ServiceCore):
    def produce(
        self,
        call: Call,
        topic: str,
        key: str | None,
        value: str | None,
        headers: Sequence[tuple[str, str]] = (),
        partition: int | None = None,
    ) -> dict[str, Any]:
        # The record keeps the key and header names, not the data itself.
        request = {
            "topic-name": topic,
            "key": key,
            "headers": [name for name, _ in headers],
            "value-bytes": len(value.encode()) if value is not None else None,
            "partition": partition,
        }
        spec = Spec("records.produced", "produce", "TOPIC_PRODUCE", "topic", topic, request)
        encoded = [(name, text.encode()) for name, text in headers]
        return self.run(
            call,
            spec,
            lambda c: messages.produce_message(
                c,
                topic,
                key.encode() if key is not None else None,
                value.encode() if value is not None else None,
                encoded,
                partition,
            ),
        )

    def inspect(
        self,
        call: Call,
        topic: str,
        *,
        partition: int | None = None,
        offset: int | None = None,
        since_ms: int | None = None,
        limit: int = 20,
        render: str = "text",
    ) -> dict[str, Any]:
        """Messages shown as `render`, masked unless the user may unmask this topic."""
        if render not in RENDER_MODES:
            raise ValueError(f"render must be one of {', '.join(RENDER_MODES)}, got {render!r}")
        limit = min(limit, self.config.max_inspect_messages)
        masker = Masker(self.config.masking, topic)
        unmasked = bool(masker) and self.decide(call, "TOPIC_UNMASK", "topic", topic).allowed
        request = {
            "topic-name": topic,
            "partition": partition,
            "offset": offset,
            "since-ms": since_ms,
            "limit": limit,
            "render": render,
        }
        spec = Spec("records.inspected", "inspect", "TOPIC_INSPECT", "topic", topic, request)

        def act(cluster: Any) -> dict[str, Any]:
            raw = messages.read_messages(
                cluster, topic, partition=partition, offset=offset, since_ms=since_ms, limit=limit
            )
            active = masker if masker and not unmasked else None
            return {
                "topic": topic,
                "masked": active is not None,
                "messages": [self._shown(m, render, active) for m in raw],
            }

        def outcome(result: dict[str, Any]) -> dict[str, Any]:
            shown = result["messages"]
            return {
                "messages": len(shown),
                "masked": result["masked"],
                "offsets": [[m["partition"], m["offset"]] for m in shown],
            }

        return self.run(call, spec, act, outcome)

    @staticmethod
    def _shown(message: dict[str, Any], render: str, masker: Masker | None) -> dict[str, Any]:
        value = masker.value(message["value"]) if masker else message["value"]
        key = masker.key(message["key"]) if masker else message["key"]
        headers = [
            (name, masker.header(name, data) if masker else data)
            for name, data in message["headers"]
        ]
        return {
            "partition": message["partition"],
            "offset": message["offset"],
            "timestamp": message["timestamp"],
            "key": render_bytes(key, "hex" if render == "hex" else "text"),
            "value": render_bytes(value, render),
            "headers": [
                {"name": name, "value": render_bytes(data, "hex" if render == "hex" else "text")}
                for name, data in headers
            ],
        }
