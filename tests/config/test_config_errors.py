"""Every configuration problem is reported, all at once, with its path and a fix-it message."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaudit.config import load_config_text
from kaudit.errors import ConfigError, ConfigIssue
from kaudit.events.catalog import EventCatalog


def issues(text: str, env: Mapping[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, source="test.yaml", env=env or {})
    assert caught.value.source == "test.yaml"
    assert all(isinstance(issue, ConfigIssue) for issue in caught.value.issues)
    return [str(issue) for issue in caught.value.issues]


def test_several_problems_in_one_file_are_all_reported_with_paths() -> None:
    text = """\
audit:
  failure_policy: fail_opne
  queue_max_events: abc
  block_timeout_ms: -1
  destinations:
    - type: file
      path: /var/log/a.log
    - type: file
      path: /var/log/b.log
      rotation:
        max_size_mb: -5
        max_files: 0
"""
    assert issues(text) == [
        "audit.failure_policy: must be one of fail_open, fail_closed, got 'fail_opne'",
        "audit.queue_max_events: must be an integer, got 'abc'",
        "audit.block_timeout_ms: must be >= 0, got -1",
        "audit.destinations[1].rotation.max_size_mb: must be > 0, got -5",
        "audit.destinations[1].rotation.max_files: must be >= 1, got 0",
    ]


def test_error_message_names_the_source_and_counts_the_issues() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text("audit: {enabled: maybe}\n", source="kaudit.yaml")
    assert str(caught.value) == (
        "kaudit.yaml: 1 error(s) in configuration\n"
        "  audit.enabled: must be true or false, got 'maybe'"
    )


def test_unknown_key_suggests_the_nearest_one_and_lists_the_accepted() -> None:
    text = """\
audit:
  destination:
    type: file
    path: /var/log/audit.log
    rotation:
      max_size: 100
"""
    assert issues(text) == [
        "audit.destination.rotation.max_size: unknown key 'max_size' "
        "(did you mean 'max_size_mb'?; accepted keys: max_size_mb, max_files, compress)"
    ]


def test_unknown_key_without_a_close_match_lists_the_accepted_keys() -> None:
    assert issues("cluster: {region: eu}\n") == [
        "cluster.region: unknown key 'region' (accepted keys: id, environment)"
    ]


def test_unknown_top_level_key_counts_enterprise_as_accepted() -> None:
    assert issues("enterprize: {}\n") == [
        "enterprize: unknown key 'enterprize' (did you mean 'enterprise'?; accepted keys: "
        "data_dir, cluster, auditors, audit, gateway, console, metrics, broker_auditor, "
        "enterprise)"
    ]


def test_missing_required_key() -> None:
    assert issues("audit:\n  destination:\n    type: file\n") == [
        "audit.destination.path: missing required key"
    ]


def test_unknown_destination_type_lists_the_accepted_types() -> None:
    assert issues("audit:\n  destination:\n    type: splunk\n    url: x\n") == [
        "audit.destination.type: unknown destination type 'splunk'; accepted: cloudwatch, "
        "file, kafka, s3, slack, store, syslog, webhook"
    ]


def test_destination_without_type_asks_for_it() -> None:
    assert issues("audit:\n  destinations:\n    - path: /var/log/a.log\n") == [
        "audit.destinations[0].type: missing required key "
        "(accepted destination types: cloudwatch, file, kafka, s3, slack, store, syslog, "
        "webhook)"
    ]


def test_destination_that_is_not_a_mapping() -> None:
    assert issues("audit:\n  destination: /var/log/a.log\n") == [
        "audit.destination: must be a mapping with a type key (destination types: cloudwatch, "
        "file, kafka, s3, slack, store, syslog, webhook), got '/var/log/a.log'"
    ]


def test_unknown_log_type_lists_the_accepted_types() -> None:
    assert issues("audit:\n  log: {type: s3}\n") == [
        "audit.log.type: unknown log type 's3'; accepted: kafka, local"
    ]


def test_kafka_log_needs_bootstrap_servers_and_complete_sasl() -> None:
    text = (
        "audit:\n  log:\n    type: kafka\n    bootstrap_servers: kafka\n"
        "    security: {security_protocol: SASL_SSL, sasl_mechanism: SCRAM-SHA-256}\n"
    )
    assert issues(text) == [
        "audit.log.bootstrap_servers[0]: must be host:port (like kafka:9092), got 'kafka'",
        "audit.log.security: sasl_mechanism SCRAM-SHA-256 needs sasl_username and sasl_password",
    ]


def test_log_type_defaults_to_local_and_errors_inside_it_have_plain_paths() -> None:
    assert issues("audit:\n  log: {segment_max_mb: 0, fsync: sometimes}\n") == [
        "audit.log.segment_max_mb: must be > 0, got 0",
        "audit.log.fsync: must be one of never, batch, always, got 'sometimes'",
    ]


def test_wrong_container_and_scalar_types() -> None:
    text = """\
data_dir: ""
cluster: prod
auditors: recorder
audit:
  events: topic.*
  destination:
    type: file
    path: 7
    format: xml
"""
    assert issues(text) == [
        "data_dir: must not be empty",
        "cluster: must be a mapping with keys id, environment, got 'prod'",
        "auditors: must be a list, got 'recorder'",
        "audit.events: must be a list, got 'topic.*'",
        "audit.destination.format: must be one of native, cloudevents, ocsf, got 'xml'",
        "audit.destination.path: must be a string, got 7 (put it in quotes to use it as text)",
    ]


def test_auditor_entries_must_be_plugin_names_or_specs() -> None:
    text = """\
auditors:
  - recorder
  - 5
  - {name: "not a name"}
  - {name: mypkg.audit:Auditor, config: {topic: audit}, extra: 1}
"""
    assert issues(text) == [
        "auditors[1]: must be a plugin name (like recorder or package.module:Class) "
        "or a mapping with keys name, config, got 5",
        "auditors[2].name: must be an entry-point name like 'recorder' or an import path "
        "like 'package.module:Class', got 'not a name'",
        "auditors[3].extra: unknown key 'extra' (accepted keys: name, config)",
    ]


def test_redact_keys_must_be_regular_expressions() -> None:
    (problem,) = issues("audit:\n  redact_keys: ['(password']\n")
    assert problem.startswith(
        "audit.redact_keys[0]: must be a regular expression, got '(password' ("
    )


def test_top_level_must_be_a_mapping() -> None:
    assert issues("- audit\n") == [
        "the top level must be a mapping with keys data_dir, cluster, auditors, audit, "
        "gateway, console, metrics, broker_auditor, enterprise, got a list"
    ]


def test_yaml_syntax_error_gives_one_based_line_and_column() -> None:
    text = "audit:\n  enabled: true\n  destination:\n    type: file\n  path: a: b\n"
    assert issues(text) == ["line 5, column 10: mapping values are not allowed here"]


def test_yaml_duplicate_keys_are_refused() -> None:
    text = "audit:\n  enabled: false\naudit:\n  enabled: true\n"
    assert issues(text) == ["line 3, column 1: duplicate key 'audit' (write each key once)"]


def test_yaml_merge_keys_may_be_overridden() -> None:
    text = """\
defaults: &rotation {max_size_mb: 10, max_files: 3}
"""
    # An unknown top-level key still fails, but not because of the merge below it.
    assert issues(text) == [
        "defaults: unknown key 'defaults' (accepted keys: data_dir, cluster, auditors, "
        "audit, gateway, console, metrics, broker_auditor, enterprise)"
    ]
    merged = """\
audit:
  destination:
    type: file
    path: /a
    rotation:
      <<: {max_size_mb: 10, max_files: 3}
      max_files: 5
"""
    config = load_config_text(merged, env={})
    assert config.audit.destination is not None
    assert config.audit.destination.rotation.max_files == 5
    assert config.audit.destination.rotation.max_size_mb == 10


# ---------------------------------------------------------------------------- enterprise


def test_enterprise_alias_errors_point_at_the_enterprise_path() -> None:
    text = "enterprise:\n  audit:\n    failure_policy: closed\n"
    assert issues(text) == [
        "enterprise.audit.failure_policy: must be one of fail_open, fail_closed, got 'closed'"
    ]


def test_enterprise_and_top_level_audit_together_are_refused() -> None:
    text = "audit:\n  enabled: true\nenterprise:\n  audit:\n    enabled: false\n"
    assert issues(text) == [
        "enterprise.audit: audit is also set at the top level; enterprise.audit is another "
        "name for audit, so write it in one place"
    ]


def test_enterprise_accepts_only_audit() -> None:
    text = "enterprise:\n  audti: {}\n  rbac: {}\n"
    assert issues(text) == [
        "enterprise.audti: unknown key 'audti' (did you mean 'audit'?; accepted keys: audit)",
        "enterprise.rbac: unknown key 'rbac' (accepted keys: audit)",
    ]


def test_enterprise_must_be_a_mapping() -> None:
    assert issues("enterprise: [audit]\n") == [
        "enterprise: must be a mapping with key audit, got a list"
    ]


# ---------------------------------------------------------------------------- destinations


def test_destination_and_destinations_together_are_refused_naming_both() -> None:
    text = """\
audit:
  destination: {type: file, path: /a}
  destinations:
    - {type: file, path: /b}
"""
    assert issues(text) == [
        "audit: destination and destinations are both set; use destination for one "
        "destination or destinations for a list, not both"
    ]


# ---------------------------------------------------------------------------- event names


def test_unknown_event_names_and_empty_globs_are_reported_where_written() -> None:
    text = """\
audit:
  custom_event_types: [billing.invoice_sent]
  events: [topic.created, billing.*, topic.craeted, bakup.*]
  exclude_events: [billing.invoice_sent, nothing.here]
  destinations:
    - type: file
      path: /a
      events: [acl.*, acl.granted]
      exclude_events: ["*.nothing"]
"""
    catalog = EventCatalog(["billing.invoice_sent"])
    categories = ", ".join(sorted({name.partition(".")[0] for name in catalog.names}))
    assert "billing" in categories
    assert issues(text) == [
        f"audit.events[2]: {catalog.unknown_message('topic.craeted')}",
        "audit.events[3]: pattern 'bakup.*' matches no event type; did you mean backup.*? "
        f"(known categories: {categories})",
        f"audit.exclude_events[1]: {catalog.unknown_message('nothing.here')}",
        f"audit.destinations[0].events[1]: {catalog.unknown_message('acl.granted')}",
        "audit.destinations[0].exclude_events[0]: pattern '*.nothing' matches no event type "
        f"(known categories: {categories})",
    ]
    assert "did you mean topic.created" in catalog.unknown_message("topic.craeted")


def test_event_name_problems_are_reported_together_with_type_errors() -> None:
    text = """\
audit:
  batch_max_events: 0
  events: [topic.deletd]
"""
    found = issues(text)
    assert found[0] == "audit.batch_max_events: must be > 0, got 0"
    assert found[1].startswith("audit.events[0]: unknown event type 'topic.deletd'; did you")
    assert len(found) == 2


def test_custom_event_types_must_be_lowercase_category_dot_verb() -> None:
    text = """\
audit:
  custom_event_types: [billing.invoice_sent, Billing.Sent, billing, billing.sent.twice]
  events: [billing.invoice_sent]
"""
    message = (
        "must be category.verb in lowercase letters, digits and _ "
        "(like 'billing.invoice_sent'), got "
    )
    assert issues(text) == [
        f"audit.custom_event_types[1]: {message}'Billing.Sent'",
        f"audit.custom_event_types[2]: {message}'billing'",
        f"audit.custom_event_types[3]: {message}'billing.sent.twice'",
    ]


def test_event_names_in_the_enterprise_block_report_its_path() -> None:
    (problem,) = issues("enterprise:\n  audit:\n    events: [backup.strated]\n")
    assert problem.startswith(
        "enterprise.audit.events[0]: unknown event type 'backup.strated'; did you mean "
        "backup.started"
    )


# ---------------------------------------------------------------------------- properties


@given(st.integers(max_value=0))
def test_any_non_positive_max_size_mb_is_reported_at_its_path(size: int) -> None:
    text = (
        "audit:\n  destinations:\n    - {type: file, path: /a}\n"
        f"    - type: file\n      path: /b\n      rotation: {{max_size_mb: {size}}}\n"
    )
    assert issues(text) == [f"audit.destinations[1].rotation.max_size_mb: must be > 0, got {size}"]


@given(st.integers(min_value=1, max_value=2**63))
def test_any_positive_max_size_mb_is_accepted(size: int) -> None:
    text = f"audit:\n  destination: {{type: file, path: /a, rotation: {{max_size_mb: {size}}}}}\n"
    destination = load_config_text(text, env={}).audit.destination
    assert destination is not None
    assert destination.rotation.max_size_mb == size


def test_retention_with_max_days_below_min_days_is_refused_naming_max_days() -> None:
    text = "audit:\n  retention:\n    min_days: 365\n    max_days: 30\n"
    [problem] = issues(text)
    assert problem.startswith("audit.retention.max_days: max_days (30) is below min_days (365)")
    assert "accepted: max_days >= min_days" in problem


def test_retention_lifecycle_storage_class_lists_the_accepted_classes() -> None:
    text = "audit:\n  retention:\n    lifecycle:\n      - days: 90\n        storage_class: COLD\n"
    [problem] = issues(text)
    assert problem.startswith("audit.retention.lifecycle[0].storage_class")
    assert "GLACIER" in problem and "STANDARD_IA" in problem
