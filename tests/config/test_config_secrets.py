"""Secret config fields: typed as secrets, never shown in errors, masked once loaded."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from kaudit.config import load_config_text
from kaudit.config.secrets import MaskSecrets, mask, reveal, shown_url
from kaudit.errors import ConfigError

CONFIG = """
audit:
  destinations:
    - type: kafka
      bootstrap_servers: [kafka:9092]
      topic: audit
      security:
        security_protocol: SASL_SSL
        sasl_mechanism: PLAIN
        sasl_username: audit
        sasl_password: unit-sasl-secret-1
      client_config:
        sasl.jaas.config: 'PlainLoginModule required password="unit-jaas-secret-2";'
    - type: slack
      webhook: https://hooks.slack.example/services/unit-slack-secret-3
"""


def test_secret_fields_print_as_stars_and_reveal_to_their_user() -> None:
    config = load_config_text(CONFIG, env={})
    kafka, slack = config.audit.destinations
    assert isinstance(kafka.security.sasl_password, SecretStr)
    assert "unit-sasl-secret-1" not in repr(config)
    assert reveal(kafka.security.sasl_password) == "unit-sasl-secret-1"
    assert kafka.client_settings()["sasl.password"] == "unit-sasl-secret-1"
    assert slack.target == "hooks.slack.example"


def test_every_loaded_secret_is_masked_in_what_kaudit_says() -> None:
    load_config_text(CONFIG, env={})
    text = (
        'login failed with unit-sasl-secret-1; jaas ...password="unit-jaas-secret-2"; '
        "POST https://hooks.slack.example/services/unit-slack-secret-3 failed"
    )
    masked = mask(text)
    for secret in ("unit-sasl-secret-1", "unit-jaas-secret-2", "unit-slack-secret-3"):
        assert secret not in masked
    assert "***" in masked
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "%s", (text,), None)
    MaskSecrets().filter(record)
    assert "unit-sasl-secret-1" not in record.getMessage()


def test_a_wrong_secret_is_not_repeated_in_the_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text(
            "audit:\n  destinations:\n    - type: webhook\n      url: https://x.example/h\n"
            "      secret: unit-short-4\n",
            env={},
        )
    assert "unit-short-4" not in str(caught.value)
    assert "secret: must have at least 16 characters, got ***" in str(caught.value)


def test_shown_url_keeps_scheme_and_host_only() -> None:
    assert (
        shown_url("https://user:pw@hooks.example:8443/a/b?token=t") == "https://hooks.example:8443"
    )
