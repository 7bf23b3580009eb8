"""`kaudit console -c FILE` serves the console and stops on SIGINT; `kaudit run` serves the
`console:` section too; the section's mistakes are reported like any configuration
error (path, what was wrong, what is accepted)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from kaudit.config import load_config_text
from kaudit.demo import DEMO_LOGINS, console_demo_config
from kaudit.dev.ports import free_port_block
from kaudit.errors import ConfigError
from support.console import local_user
from support.kafka import wait_for

KAUDIT = [sys.executable, "-m", "kaudit.cli"]


def _write_config(tmp_path: Path, port: int, **extra: object) -> Path:
    config = {
        "data_dir": str(tmp_path / "data"),
        "console": {
            "listen": f"127.0.0.1:{port}",
            "clusters": [
                {"name": "offline", "id": "offline-id", "bootstrap_servers": "127.0.0.1:9"}
            ],
            "users": [local_user("alice", "dev")],
        },
        **extra,
    }
    path = tmp_path / "kaudit.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _serves(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/login", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("command", [["console"], ["run"]])
def test_the_console_is_served_until_sigint(tmp_path: Path, command: list[str]) -> None:
    port = free_port_block(1)
    path = _write_config(tmp_path, port)
    process = subprocess.Popen(
        [*KAUDIT, *command, "-c", str(path)], stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: _serves(port) or process.poll() is not None, "the console", 60)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        page = httpx.get(f"http://127.0.0.1:{port}/login")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        assert process.stderr is not None
        assert f"http://127.0.0.1:{port}/" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_kaudit_console_without_a_console_section_says_so(tmp_path: Path) -> None:
    path = tmp_path / "kaudit.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\n")
    done = subprocess.run([*KAUDIT, "console", "-c", str(path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "no console section" in done.stderr


def _issues(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text)
    return [str(i) for i in caught.value.issues]


def test_console_section_errors_name_the_key_and_what_is_accepted() -> None:
    (empty,) = _issues("console:\n  clusters: []\n")
    assert empty.startswith("console.clusters: list should have at least 1 item")
    issues = _issues(
        "console:\n"
        "  listen: localhost\n"
        "  verbosity: loud\n"
        "  clusters: [{name: a, bootstrap_servers: 'h:1'}]\n"
        "  users: [{username: bob, password_hash: plain}]\n"
    )
    assert issues == [
        "console.listen: must be host:port (like kafka:9092), got 'localhost'",
        "console.users[0]: must be an argon2id hash ($argon2id$...); make one with "
        "`kaudit console hash-password`",
        "console.verbosity: must be one of mutations, queries, all, got 'loud'",
    ]


def test_console_section_refuses_duplicate_cluster_names() -> None:
    (issue,) = _issues(
        "console:\n  clusters:\n"
        "    - {name: a, bootstrap_servers: 'h:1'}\n"
        "    - {name: a, bootstrap_servers: 'h:2'}\n"
    )
    assert issue.startswith("console: cluster names must be unique")


def test_the_readmes_console_example_is_a_valid_configuration() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## The console", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    env = {"CONSOLE_KAFKA_PASSWORD": "pw", "CONSOLE_SESSION_SECRET": "s" * 40}
    config = load_config_text(block, "README.md", env)
    assert config.console is not None
    assert [p.effect for p in (config.console.rbac.policies if config.console.rbac else [])] == [
        "Allow", "Deny", "Allow"
    ]  # fmt: skip


def test_check_config_reads_the_rbac_file_and_reports_its_errors(tmp_path: Path) -> None:
    path = _write_config(tmp_path, 8080)
    data = yaml.safe_load(path.read_text())
    data["console"]["rbac_file"] = "rbac.yaml"
    path.write_text(yaml.safe_dump(data))
    (tmp_path / "rbac.yaml").write_text(
        "policies:\n  - resource: [cluster, '*']\n    effect: Allow\n"
        "    actions: [TOPIC_NUKE]\n    role: '*'\n"
    )
    done = subprocess.run([*KAUDIT, "check-config", str(path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert f"{tmp_path / 'rbac.yaml'}: invalid configuration" in done.stderr
    assert "policies[0].actions[0]: line 4: must be one of TOPIC_INSPECT" in done.stderr
    (tmp_path / "rbac.yaml").write_text(
        "policies:\n  - resource: [cluster, '*']\n    effect: Allow\n"
        "    actions: [TOPIC_INSPECT]\n    role: '*'\n"
    )
    done = subprocess.run([*KAUDIT, "check-config", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "console: 127.0.0.1:8080, clusters offline, 1 local user, 1 RBAC policy" in done.stdout


def test_the_demos_console_configuration_is_valid(tmp_path: Path) -> None:
    text = console_demo_config(tmp_path / "data", 8080, "127.0.0.1:9093")
    config = load_config_text(text, "demo", env={})
    assert config.console is not None
    assert [u.username for u in config.console.users] == list(DEMO_LOGINS)
    assert config.console.rbac is not None and config.console.rbac.admin_roles == ["ops"]
