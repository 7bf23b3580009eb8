"""The alerting rules and the Grafana dashboard in deploy/ ask only for metrics kaudit
exports, and every alerting rule has its runbook in docs/runbooks.md."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import kaudit
from kaudit.config import Config
from kaudit.dev.ports import free_port_block
from kaudit.exporters import runners_for
from kaudit.gateway.codec import api_name
from kaudit.gateway.recording import GatewayMetrics
from kaudit.monitoring import Monitoring
from kaudit.ops import metrics

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "deploy" / "helm" / "kaudit" / "files"
METRIC = re.compile(r"\b((?:kaudit|process)_[a-z_]+)\b")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every metric name a process with every part watched serves on /metrics."""
    tmp = tmp_path_factory.mktemp("ops")
    config = Config.model_validate(
        {
            "data_dir": str(tmp / "data"),
            "audit": {
                "log": {"fsync": "never"},
                "destinations": [{"name": "archive", "type": "file", "path": str(tmp / "o")}],
            },
            "metrics": {"listen": f"127.0.0.1:{free_port_block(1)}"},
        }
    )
    with Monitoring(config) as mon, kaudit.open(config) as session:
        mon.watch_recorder(session.recorder)
        runners = runners_for(config)
        mon.watch_exporters(runners)
        unwatch = [
            metrics.watch_gateway(GatewayMetrics(), open_connections=lambda: 0, api_name=api_name),
            metrics.watch_checkpoints(time.time),
        ]
        assert mon.url is not None
        text = httpx.get(f"{mon.url}/metrics", timeout=10).text
        for stop in unwatch:
            stop()
        for r in runners:
            r.close()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")  # labelled counters not yet counted
        names.update(s.name for s in family.samples)
    return names


def rules() -> list[dict[str, object]]:
    groups = yaml.safe_load((FILES / "kaudit-alerts.yaml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alerting_rule_asks_for_exported_metrics(exported: set[str]) -> None:
    for rule in rules():
        asked = set(METRIC.findall(str(rule["expr"])))
        assert asked, rule["alert"]
        assert asked <= exported, f"{rule['alert']}: {asked - exported}"


def test_every_dashboard_panel_asks_for_exported_metrics(exported: set[str]) -> None:
    dashboard = json.loads((FILES / "kaudit-dashboard.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 12
    for panel in panels:
        for target in panel["targets"]:
            asked = set(METRIC.findall(target["expr"]))
            assert asked and asked <= exported, f"{panel['title']}: {asked - exported}"


def test_every_alerting_rule_has_a_runbook_and_a_severity() -> None:
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    headings = {h.lower() for h in re.findall(r"^## (\S+)$", runbooks, re.MULTILINE)}
    names = [str(rule["alert"]) for rule in rules()]
    assert len(names) == len(set(names)) >= 10
    assert headings == {n.lower() for n in names}
    for rule in rules():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert annotations["runbook_url"] == f"docs/runbooks.md#{str(rule['alert']).lower()}"
        labels = rule["labels"]
        assert isinstance(labels, dict) and labels["severity"] in ("warning", "critical")
