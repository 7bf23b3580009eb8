"""The console's log pages under test: a configuration whose local log is signed
(Merkle checkpoints, the key pair made here) and indexed by a `store` destination, with
console users; `fill` writes generated traffic and `index` builds the search index from
the log, as the store destination's exporter would."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kaudit.config import Config
from kaudit.generate import TrafficGenerator
from kaudit.integrity.keys import generate
from kaudit.log.segments import LogReader
from kaudit.session import AuditSession
from kaudit.store.index import EventIndex
from kaudit.store.query import store_destination

ADMIN_RBAC = {"admin_roles": ["ops"], "policies": []}
OFFLINE = {"name": "offline", "id": "offline-id", "bootstrap_servers": ["127.0.0.1:9"]}


def log_pages_config(
    tmp_path: Path,
    *,
    users: Sequence[Mapping[str, Any]],
    clusters: Sequence[Mapping[str, Any]] | None = None,
    rbac: Mapping[str, Any] = ADMIN_RBAC,
    data_dir: Path | None = None,
    **console: Any,
) -> Config:
    """A local log under `data_dir` (default tmp/data), checkpointed every 20 events and
    indexed; console users and admins (`ops`)."""
    keys = generate(tmp_path / "keys" / "audit", "kaudit/pages-test")
    return Config.model_validate(
        {
            "data_dir": str(data_dir or tmp_path / "data"),
            "audit": {
                "log": {"type": "local"},
                "integrity": {
                    "checkpoints": {
                        "enabled": True,
                        "key_file": str(keys.private),
                        "every_events": 20,
                        "every_seconds": 3600,
                    }
                },
                "destinations": [{"type": "store"}],
            },
            "console": {
                "clusters": list(clusters or [OFFLINE]),
                "users": list(users),
                "rbac": dict(rbac),
                **console,
            },
        }
    )


def fill(config: Config, count: int, *, seed: int = 7, source: str = "sdk") -> None:
    """`count` generated events (the demo's mix of principals, types and results) from
    `source`, written before the console opens the log."""
    traffic = TrafficGenerator(seed)
    with AuditSession(config, source=source) as session:
        for i in range(count):
            traffic.emit_next(session, correlation_id=f"req-{i}")


def index(config: Config) -> int:
    """Index every event of the log (idempotent); the number of events indexed."""
    store = store_destination(config)
    assert store is not None
    lines = [line for _, line in LogReader(config.log_dir).iter_lines()]
    with EventIndex(store.index_path(config.data_path)) as idx:
        idx.add(lines)
        return idx.count()
