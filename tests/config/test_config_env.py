"""`${VAR}` and `${VAR:-default}` are substituted in every string value after parsing."""

from __future__ import annotations

import pytest

from kaudit.config import load_config_text
from kaudit.errors import ConfigError


def load_issues(text: str, env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, env=env)
    return [str(issue) for issue in caught.value.issues]


def test_set_variables_are_substituted_inside_strings_and_lists() -> None:
    text = """\
data_dir: ${KAUDIT_HOME}/data
cluster:
  id: ${CLUSTER}
  environment: prod-${REGION}
audit:
  events:
    - ${EVENT_CATEGORY}.*
  destinations:
    - type: file
      path: ${LOG_DIR}/audit.log
auditors:
  - name: recorder
    config:
      nested:
        - ${CLUSTER}
        - deeper: ${REGION}
"""
    env = {
        "KAUDIT_HOME": "/srv/kaudit",
        "CLUSTER": "prod-us-west-2",
        "REGION": "us-west-2",
        "EVENT_CATEGORY": "backup",
        "LOG_DIR": "/var/log",
    }
    config = load_config_text(text, env=env)

    assert config.data_dir == "/srv/kaudit/data"
    assert config.cluster.id == "prod-us-west-2"
    assert config.cluster.environment == "prod-us-west-2"
    assert config.audit.events == ["backup.*"]
    assert config.audit.destinations[0].path == "/var/log/audit.log"
    assert config.auditor_specs[0].config == {"nested": ["prod-us-west-2", {"deeper": "us-west-2"}]}


def test_defaults_apply_when_unset_or_empty_and_yield_typed_values() -> None:
    text = """\
audit:
  enabled: ${AUDIT_ENABLED:-false}
  queue_max_events: ${QUEUE:-250}
  failure_policy: ${POLICY:-fail_closed}
  destination:
    type: file
    path: ${LOG_PATH:-/var/log/kaudit/audit.log}
    name: ${NAME:-}
"""
    config = load_config_text(text, env={"POLICY": ""})

    assert config.audit.enabled is False
    assert config.audit.queue_max_events == 250
    # Like POSIX shells, `:-` also replaces a variable set to the empty string.
    assert config.audit.failure_policy == "fail_closed"
    assert config.audit.destination is not None
    assert config.audit.destination.path == "/var/log/kaudit/audit.log"
    assert config.audit.destination.name == ""


def test_a_set_variable_wins_over_its_default() -> None:
    text = "audit:\n  queue_max_events: ${QUEUE:-250}\n"
    assert load_config_text(text, env={"QUEUE": "42"}).audit.queue_max_events == 42


def test_double_dollar_escapes_a_literal_reference() -> None:
    text = "cluster:\n  id: $${NOT_A_VAR} and ${SET} and $${SET:-x}\n"
    config = load_config_text(text, env={"SET": "yes"})
    assert config.cluster.id == "${NOT_A_VAR} and yes and ${SET:-x}"


def test_text_without_references_is_left_alone() -> None:
    text = "cluster:\n  id: cost is $5 {not a ref} $HOME\n"
    assert load_config_text(text, env={}).cluster.id == "cost is $5 {not a ref} $HOME"


def test_unset_variables_without_default_are_each_reported_at_their_path() -> None:
    text = """\
auditors:
  - name: webhook
    config:
      headers:
        Authorization: Bearer ${WEBHOOK_TOKEN}
      urls:
        - https://${HOST}/ingest
audit:
  queue_max_events: ${QUEUE}
"""
    assert load_issues(text, env={}) == [
        "auditors[0].config.headers.Authorization: environment variable WEBHOOK_TOKEN is not "
        "set and has no default (write ${WEBHOOK_TOKEN:-value} to give one)",
        "auditors[0].config.urls[0]: environment variable HOST is not set and has no default "
        "(write ${HOST:-value} to give one)",
        # Only the missing variable is reported here, not the type error its
        # unsubstituted text would cause.
        "audit.queue_max_events: environment variable QUEUE is not set and has no default "
        "(write ${QUEUE:-value} to give one)",
    ]


def test_keys_with_dots_are_quoted_in_paths() -> None:
    text = "auditors:\n  - name: logging\n    config: {sasl.jaas.config: '${JAAS}'}\n"
    assert load_issues(text, env={}) == [
        'auditors[0].config["sasl.jaas.config"]: environment variable JAAS is not set and '
        "has no default (write ${JAAS:-value} to give one)"
    ]


def test_unset_variables_are_reported_together_with_validation_errors() -> None:
    text = "cluster:\n  id: ${CLUSTER}\naudit:\n  batch_max_events: 0\n"
    assert load_issues(text, env={}) == [
        "cluster.id: environment variable CLUSTER is not set and has no default "
        "(write ${CLUSTER:-value} to give one)",
        "audit.batch_max_events: must be > 0, got 0",
    ]


@pytest.mark.parametrize("reference", ["${}", "${1ABC}", "${HOME-x}", "${UNCLOSED"])
def test_malformed_references_are_reported(reference: str) -> None:
    text = f"cluster:\n  id: 'a {reference}'\n"
    assert load_issues(text, env={"HOME": "/root"}) == [
        f"cluster.id: malformed variable reference {reference!r} (write ${{NAME}} or "
        "${NAME:-default}; write $${ for a literal ${)"
    ]


def test_substitution_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAUDIT_TEST_CLUSTER", "from-process")
    text = "cluster:\n  id: ${KAUDIT_TEST_CLUSTER}\n"
    assert load_config_text(text).cluster.id == "from-process"


def test_substituted_values_are_not_parsed_as_yaml_again() -> None:
    text = "cluster:\n  id: ${VALUE}\n"
    assert load_config_text(text, env={"VALUE": "{a: 1}"}).cluster.id == "{a: 1}"
