"""`kaudit demo`: the embedded default end to end, with nothing but local files.

Writes a demo configuration, records a realistic week of Kafka audit traffic through
the recorder into the local log, runs the file exporters (native JSON Lines and an OCSF
feed of security events), then tells the user what is where and how to look at it.
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path

import click
import orjson

from kaudit.config import load_config
from kaudit.exporters import runners_for
from kaudit.generate import generate
from kaudit.log.segments import LogReader, list_segments
from kaudit.session import open as open_session

_CONFIG = """\
# kaudit demo configuration: the embedded default (a local log), two file exports.
data_dir: {data}
cluster:
  id: prod-us-west-2
  environment: production
audit:
  failure_policy: fail_open
  log:
    type: local
    segment_max_mb: 1      # small segments so the demo shows segment rolls
    fsync: batch
  destinations:
    - type: file           # the seed's file destination: every event, native JSON
      path: {export}/audit.log
      rotation:
        max_size_mb: 1
        max_files: 5
        compress: true
    - type: file           # security events for a SIEM, in OCSF
      name: siem-ocsf
      format: ocsf
      path: {export}/security.ocsf.jsonl
      events: ["access.*", "auth.*", "acl.*", "config.*", "topic.config_changed"]
"""


def run_demo(directory: Path, count: int) -> None:
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "kaudit.yaml"
    if not config_path.exists():
        config_path.write_text(
            _CONFIG.format(data=directory / "data", export=directory / "export"),
            encoding="utf-8",
        )
    config = load_config(config_path)
    echo = click.echo
    echo(f"kaudit demo: recording {count} events of a week of Kafka activity", err=True)
    started = time.perf_counter()
    with (
        open_session(config, source="demo") as session,
        click.progressbar(length=count, label="  recording", file=sys.stderr) as bar,
    ):
        generate(
            session, count, seed=int(time.time()), spread_seconds=7 * 86400, progress=bar.update
        )
        session.flush()
    elapsed = time.perf_counter() - started
    exported = {r.name: r.drain() for r in runners_for(config)}

    by_type: collections.Counter[str] = collections.Counter()
    by_result: collections.Counter[str] = collections.Counter()
    total = 0
    for _, line in LogReader(config.log_dir).iter_lines():
        event = orjson.loads(line)
        total += 1
        by_type[event["event_type"].split(".")[0]] += 1
        by_result[event["action"]["result"]] += 1
    segments = list_segments(config.log_dir)
    log_dir = config.log_dir
    echo(f"""
Recorded {count} events in {elapsed:.2f}s. The audit log now holds {total} events in
{len(segments)} segment(s), each event sequenced, with secrets redacted.

  by category: {", ".join(f"{k} {v}" for k, v in by_type.most_common())}
  by result:   {", ".join(f"{k} {v}" for k, v in by_result.most_common())}

Where things are:
  configuration  {config_path}
  audit log      {log_dir}/  (append-only JSON Lines segments)
  file export    {directory}/export/audit.log  ({
        exported.get(next(iter(exported), ""), 0)
    } lines this run, rotated .gz files beside it)
  OCSF export    {directory}/export/security.ocsf.jsonl

Look at them:
  .venv/bin/kaudit tail {log_dir} -n 5
  .venv/bin/kaudit tail {log_dir} --type 'acl.*' --format cloudevents
  .venv/bin/kaudit tail {
        log_dir
    } | jq 'select(.action.result == "denied") | [.timestamp, .actor.id, .event_type, .resource.id]'
  .venv/bin/kaudit tail {log_dir} | jq -r '.event_type' | sort | uniq -c | sort -rn
  .venv/bin/kaudit tail {log_dir} | grep -c hunter2     # 0: passwords never reach the log
  .venv/bin/kaudit exporters status -c {config_path}
""")
