"""The reloader puts a new configuration in force in every part or in none: a file that
does not load, or a part that cannot prepare, leaves the old one (and aborts what the
others prepared); an open session's recorder selects and redacts as reloaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml

import kaudit
from kaudit.config import Config, load_config
from kaudit.ops import reload
from kaudit.ops.reload import Reloader


class Recording:
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def commit(self) -> None:
        self.log.append(f"commit {self.name}")

    def abort(self) -> None:
        self.log.append(f"abort {self.name}")


def write(path: Path, document: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(document))


def test_a_file_that_does_not_load_or_a_part_that_refuses_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "kaudit.yaml"
    write(path, {"data_dir": str(tmp_path), "audit": {"events": ["topic.*"]}})
    reloader = Reloader(lambda: load_config(path), load_config(path), announce=False)
    done: list[str] = []
    refuse = {"now": False}

    def good(old: Config, new: Config) -> Recording:
        return Recording(done, "good")

    def picky(old: Config, new: Config) -> Recording:
        if refuse["now"]:
            raise ValueError("cannot reach the new destination")
        return Recording(done, "picky")

    reloader.register("good", good)
    reloader.register("picky", picky)

    path.write_text("audit: [unclosed\n")
    outcome = reloader.reload()
    assert not outcome.ok and "kaudit.yaml" in outcome.errors[0]
    assert done == [] and reloader.config.audit.events == ["topic.*"]

    write(path, {"data_dir": str(tmp_path), "audit": {"events": ["acl.*"]}})
    refuse["now"] = True
    outcome = reloader.reload()
    assert not outcome.ok and outcome.errors == ["picky: cannot reach the new destination"]
    assert done == ["abort good"] and reloader.config.audit.events == ["topic.*"]

    refuse["now"] = False
    write(path, {"data_dir": str(tmp_path / "elsewhere"), "audit": {"events": ["acl.*"]}})
    outcome = reloader.reload()
    assert outcome.ok and outcome.changed == ["good", "picky"]
    assert outcome.restart_needed == ["data_dir"]
    assert done == ["abort good", "commit good", "commit picky"]
    assert reloader.config.audit.events == ["acl.*"]


def test_an_open_session_selects_and_redacts_as_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "kaudit.yaml"
    document: dict[str, Any] = {"data_dir": str(tmp_path), "audit": {"exclude_events": ["acl.*"]}}
    write(path, document)
    reloader = Reloader(lambda: load_config(path), load_config(path), announce=False)
    reload.install(reloader)
    try:
        with kaudit.open(load_config(path)) as session:
            session.emit("acl.created", actor="User:a", resource="topic:t", details={"n": 1})
            session.emit("topic.created", actor="User:a", resource="topic:t", details={"pin": "1"})
            document["audit"] = {"exclude_events": ["group.*"], "redact_keys": ["^pin$"]}
            write(path, document)
            assert reloader.reload().changed == ["recorder"]
            session.emit("acl.created", actor="User:a", resource="topic:t", details={"n": 2})
            session.emit("topic.created", actor="User:a", resource="topic:t", details={"pin": "2"})
            session.flush()
            lines = sorted((tmp_path / "log").glob("*.jsonl"))[0].read_bytes().splitlines()
    finally:
        reload.install(None)
    events = [orjson.loads(line) for line in lines]
    assert [(e["event_type"], e["details"]) for e in events] == [
        ("topic.created", {"pin": "1"}),
        ("acl.created", {"n": 2}),
        ("topic.created", {"pin": "[REDACTED]"}),
    ]
    assert reloader.reload().changed == []  # the session closed: it left the reloader
