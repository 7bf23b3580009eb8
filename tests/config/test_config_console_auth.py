"""The console's login providers and ingest sources: secrets inline, from the
environment or from a file, and validation errors that say what is accepted."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

import kaudit.config.console_auth as console_auth
from kaudit.config.console_auth import GithubLogin, IngestSource, OidcProvider

TOKEN = "a-long-enough-ingest-token"


def oidc(**settings: Any) -> OidcProvider:
    return OidcProvider.model_validate(
        {"name": "okta", "issuer": "https://acme.okta.com/", "client_id": "console", **settings}
    )


def error_of(excinfo: pytest.ExceptionInfo[ValidationError]) -> str:
    return "; ".join(str(e["msg"]) for e in excinfo.value.errors())


def test_a_secret_comes_inline_from_an_environment_variable_or_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OKTA_SECRET", "from-env")
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")

    inline = oidc(client_secret="inline")
    from_env = oidc(client_secret_env_var="OKTA_SECRET")
    from_file = oidc(client_secret_file=str(secret_file))

    assert inline.client_secret is not None
    assert inline.client_secret.get_secret_value() == "inline"
    assert from_env.client_secret is not None
    assert from_env.client_secret.get_secret_value() == "from-env"
    assert from_file.client_secret is not None
    assert from_file.client_secret.get_secret_value() == "from-file"
    assert "inline" not in repr(inline) and "from-env" not in repr(from_env)
    assert inline.issuer == "https://acme.okta.com"
    assert inline.metadata_url == "https://acme.okta.com/.well-known/openid-configuration"
    assert inline.auth_method == "client_secret_basic"
    assert oidc().auth_method == "none"  # a public client: PKCE only


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"client_secret": "a", "client_secret_env_var": "B"},
            "client_secret is given 2 ways (client_secret, client_secret_env_var); "
            "accepted: exactly one of client_secret, client_secret_env_var or client_secret_file",
        ),
        (
            {"client_secret_env_var": "KAUDIT_TEST_UNSET_VARIABLE"},
            "client_secret_env_var: environment variable 'KAUDIT_TEST_UNSET_VARIABLE' "
            "is not set or empty",
        ),
        ({"client_secret_file": "/nonexistent/secret"}, "client_secret_file: cannot read"),
        ({"name": "Okta Prod"}, "must be lowercase letters, digits, _ and -"),
        ({"issuer": "acme.okta.com"}, "must be an http:// or https:// URL"),
        ({"scopes": ["profile"]}, "scopes must include 'openid'"),
        ({"roles_claim": "realm_access..roles"}, "a dotted path into the token's claims"),
        (
            {"token_endpoint_auth_method": "client_secret_post"},
            "token_endpoint_auth_method 'client_secret_post' needs client_secret",
        ),
    ],
)
def test_oidc_provider_errors_say_what_is_accepted(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        oidc(**settings)

    assert message in error_of(excinfo)


def test_github_maps_org_teams_to_roles_and_needs_a_secret() -> None:
    github = GithubLogin.model_validate(
        {
            "client_id": "Iv1.abc",
            "client_secret": "s3cret",
            "api_base_url": "https://ghe.acme.com/api/v3/",
            "oauth_base_url": "https://ghe.acme.com",
            "team_roles": {"Acme/Kafka-Admins": ["admin"], "acme/*": ["viewer"]},
        }
    )

    assert github.api_base_url == "https://ghe.acme.com/api/v3"
    assert github.roles_for(["acme/kafka-admins"]) == ("admin", "viewer")
    assert github.roles_for(["acme/payments"]) == ("viewer",)
    assert github.roles_for(["other/kafka-admins"]) == ()
    with pytest.raises(ValidationError) as no_secret:
        GithubLogin.model_validate({"client_id": "x"})
    with pytest.raises(ValidationError) as bad_team:
        GithubLogin.model_validate(
            {"client_id": "x", "client_secret": "y", "team_roles": {"acme": ["admin"]}}
        )
    assert "client_secret is required" in error_of(no_secret)
    assert "team_roles keys must be 'org/team-slug'" in error_of(bad_team)


def test_ingest_sources_need_a_strong_token_and_event_type_globs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BACKUP_INGEST_TOKEN", TOKEN)
    source = IngestSource.model_validate(
        {"name": "backup", "token_env_var": "BACKUP_INGEST_TOKEN", "event_types": ["backup.*"]}
    )

    assert source.token.get_secret_value() == TOKEN
    assert source.may_send("backup.completed")
    assert not source.may_send("restore.completed")
    for settings, message in [
        ({"token": "short"}, "token must be at least 16 characters"),
        ({"token": TOKEN, "event_types": []}, "at least 1 item"),
        ({"token": TOKEN, "event_types": ["Backup Completed"]}, "must be an event type or a glob"),
        ({"event_types": ["backup.*"]}, "token is required"),
    ]:
        with pytest.raises(ValidationError) as excinfo:
            IngestSource.model_validate({"name": "backup", "event_types": ["x.*"], **settings})
        assert message in error_of(excinfo), settings


def test_the_example_in_the_module_docs_loads_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert console_auth.__doc__ is not None
    example = yaml.safe_load(textwrap.dedent(console_auth.__doc__.split("::\n", 1)[1]))
    monkeypatch.setenv("KAUDIT_OIDC_SECRET", "oidc-secret")
    monkeypatch.setenv("KAFKA_BACKUP_INGEST_TOKEN", TOKEN)
    secret_file = tmp_path / "github-oauth"
    secret_file.write_text("github-secret")
    example["github"]["client_secret_file"] = str(secret_file)

    [keycloak] = [OidcProvider.model_validate(o) for o in example["oidc"]]
    github = GithubLogin.model_validate(example["github"])
    [backup] = [IngestSource.model_validate(o) for o in example["ingest"]]

    assert keycloak.roles_claim == "realm_access.roles"
    assert github.roles_for(["acme/kafka-admins"]) == ("admin", "viewer")
    assert backup.may_send("restore.completed")
