"""The deployment files in deploy/: the Helm chart passes `helm lint`, renders, and its
objects validate against the Kubernetes schemas (kubeconform, strict); its ConfigMap
loads as kaudit's configuration; the plain manifests are the chart rendered; the systemd
units pass `systemd-analyze verify`; the Dockerfile parses (buildkit's parser) into the
image it promises. Each check is shown to bite on a broken input."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import dockerfile
import pytest
import yaml

from kaudit.config.load import load_config
from support.deploy_tools import KUBERNETES_VERSION, kubernetes_schemas, tool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "kaudit"
EVERYTHING = [
    "--set", "serviceMonitor.enabled=true",
    "--set", "prometheusRule.enabled=true",
    "--set", "networkPolicy.enabled=true",
    "--set", "grafanaDashboard.enabled=true",
    "--set", "secretFiles[0].secretName=kaudit-integrity-key",
    "--set", "secretFiles[0].mountPath=/etc/kaudit/keys",
]  # fmt: skip
CRDS = ("ServiceMonitor", "PrometheusRule")  # the Prometheus Operator's: no schema here


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def render(*options: str, release: str = "kaudit", namespace: str = "kaudit") -> str:
    done = run(tool("helm"), "template", release, str(CHART), "--namespace", namespace, *options)
    assert done.returncode == 0, done.stderr
    return done.stdout


def objects(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def kubeconform(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    manifest = tmp_path / "rendered.yaml"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(text)
    location = kubernetes_schemas(
        tmp_path / "schemas", [(d["kind"], d["apiVersion"]) for d in objects(text)]
    )
    return run(
        tool("kubeconform"), "-strict", "-summary",
        "-kubernetes-version", KUBERNETES_VERSION,
        "-schema-location", location,
        "-skip", ",".join(CRDS),
        str(manifest),
    )  # fmt: skip


def test_helm_lint_passes() -> None:
    done = run(tool("helm"), "lint", "--strict", str(CHART), *EVERYTHING)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_every_rendered_object_validates_against_the_kubernetes_schemas(tmp_path: Path) -> None:
    text = render(*EVERYTHING)
    kinds = {d["kind"] for d in objects(text)}
    assert kinds == {
        "ConfigMap", "Service", "Deployment", "StatefulSet", "PodDisruptionBudget",
        "NetworkPolicy", *CRDS,
    }  # fmt: skip
    done = kubeconform(text, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"Valid: (\d+), Invalid: 0, Errors: 0, Skipped: (\d+)", done.stdout)
    assert found, done.stdout
    assert int(found[2]) == len(CRDS)
    # It bites: a field of the wrong type, or one Kubernetes does not know.
    broken = text.replace("replicas: 2", "replicas: two").replace(
        "minAvailable: 1", "minAvailable: 1\n  maxSurge: 1"
    )
    failed = kubeconform(broken, tmp_path / "broken")
    assert failed.returncode != 0
    assert "Invalid: 2" in failed.stdout, failed.stdout


def test_the_configmap_holds_audit_yaml_that_kaudit_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = objects(render())
    (config_map,) = by_kind(docs, "ConfigMap")
    monkeypatch.setenv("KAUDIT_LOG_PASSWORD", "from-a-secret")
    for key in ("audit.yaml", "gateway.yaml"):
        (tmp_path / key).write_text(config_map["data"][key])
    exporters = load_config(tmp_path / "audit.yaml")
    gateway = load_config(tmp_path / "gateway.yaml")
    # The exporters' `kaudit run` must not start a gateway of its own.
    assert exporters.gateway is None and gateway.gateway is not None
    assert gateway.gateway.advertised_host == "kaudit-gateway.kaudit.svc"
    assert exporters.audit.log.type == "kafka"
    assert exporters.metrics is not None and exporters.metrics.listen == "0.0.0.0:9464"
    # Secrets come from the environment (a Secret), never from the ConfigMap.
    assert "from-a-secret" not in str(config_map["data"])
    (deployment,) = by_kind(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KAUDIT_LOG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "kaudit-secrets"
    assert env["KAUDIT_LOG_FORMAT"]["value"] == "json"


def test_the_gateway_service_exposes_bootstrap_and_broker_ports_and_pods_are_locked_down() -> None:
    docs = objects(render(*EVERYTHING))
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    ports = {p["name"]: p["port"] for p in services["kaudit-gateway"]["spec"]["ports"]}
    assert ports == {"bootstrap": 9192, "broker-0": 9200, "broker-1": 9201, "broker-2": 9202,
                     "metrics": 9464}  # fmt: skip
    (deployment,) = by_kind(docs, "Deployment")
    (statefulset,) = by_kind(docs, "StatefulSet")
    assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    for workload, args in ((deployment, ["gateway"]), (statefulset, ["run"])):
        pod = workload["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"][:1] == args
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/var/lib/kaudit", "/etc/kaudit", "/tmp", "/etc/kaudit/keys"} <= mounts
    budgets = {b["metadata"]["name"] for b in by_kind(docs, "PodDisruptionBudget")}
    assert budgets == {"kaudit-gateway", "kaudit-exporters"}
    (policy,) = by_kind(docs, "NetworkPolicy")
    assert policy["metadata"]["namespace"] == "kafka"
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "kafka"}
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    (rule,) = by_kind(docs, "PrometheusRule")
    rules_file = yaml.safe_load((CHART / "files" / "kaudit-alerts.yaml").read_text())
    assert rule["spec"] == rules_file


def test_a_chart_without_metrics_is_refused() -> None:
    done = run(tool("helm"), "template", "kaudit", str(CHART), "--set", "config.metrics=null")
    assert done.returncode != 0
    assert "config.metrics.listen is required" in done.stderr


def test_the_plain_manifests_are_the_chart_rendered() -> None:
    shipped = (ROOT / "deploy" / "manifests" / "kaudit.yaml").read_text()
    assert shipped == render(), (
        "deploy/manifests/kaudit.yaml is stale: regenerate it with "
        "`helm template kaudit deploy/helm/kaudit --namespace kaudit`"
    )


def test_the_systemd_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: `make system-deps` installs systemd"
    kaudit = str(Path(sys.executable).with_name("kaudit"))
    units = []
    for unit in sorted((ROOT / "deploy" / "systemd").glob("*.service")):
        # verify checks that ExecStart's program exists: this test's kaudit stands in
        # for the installed one.
        text = unit.read_text().replace("/opt/kaudit/bin/kaudit", kaudit)
        (tmp_path / unit.name).write_text(text)
        units.append(str(tmp_path / unit.name))
    assert len(units) == 2
    done = run(analyze, "verify", *units)
    assert done.returncode == 0 and not done.stderr, done.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(Path(units[0]).read_text().replace("Type=exec", "Type=sometimes"))
    refused = run(analyze, "verify", str(broken))
    assert "Failed to parse service type" in refused.stderr


def test_the_dockerfile_builds_a_non_root_image_with_a_data_volume() -> None:
    commands = dockerfile.parse_file(str(ROOT / "deploy" / "Dockerfile"))
    stages = [c for c in commands if c.cmd == "FROM"]
    assert len(stages) == 2 and stages[0].value[-2:] == ("AS", "build")
    final = commands[commands.index(stages[1]) :]
    copies = [c for c in final if c.cmd == "COPY"]
    assert any("--from=build" in c.flags for c in copies)
    (user,) = [c.value[0] for c in final if c.cmd == "USER"]
    assert not user.startswith(("0", "root"))
    (volume,) = [c.value for c in final if c.cmd == "VOLUME"]
    assert volume == ("/var/lib/kaudit",)
    (entrypoint,) = [c.value for c in final if c.cmd == "ENTRYPOINT"]
    assert entrypoint == ("kaudit",)
    environment = " ".join(" ".join(c.value) for c in final if c.cmd == "ENV")
    assert "PYTHONDONTWRITEBYTECODE" in environment  # a read-only root filesystem
