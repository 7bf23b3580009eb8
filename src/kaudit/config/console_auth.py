"""The console's external logins and HTTP ingest sources: `OidcProvider`, `GithubLogin`
and `IngestSource`.

This module owns their settings and the rule every secret here follows: a secret
(`client_secret`, `token`) is written inline, or named by `<secret>_env_var` (an
environment variable) or `<secret>_file` (a file holding it; surrounding whitespace is
dropped), exactly one of the three. The secret is read when the configuration is
validated, so a missing variable or unreadable file is a configuration error, and it is
held as a pydantic `SecretStr` so it never appears in a repr or a dump.

In the `console:` section they read::

    oidc:
      - name: keycloak
        issuer: https://sso.acme.com/realms/ops
        client_id: kaudit-console
        client_secret_env_var: KAUDIT_OIDC_SECRET
        roles_claim: realm_access.roles      # Okta/Entra ID: groups or roles
    github:
      client_id: Iv1.0123456789abcdef
      client_secret_file: /run/secrets/github-oauth
      team_roles: {acme/kafka-admins: [admin], "acme/*": [viewer]}
      # GitHub Enterprise Server:
      # oauth_base_url: https://ghe.acme.com
      # api_base_url: https://ghe.acme.com/api/v3
    ingest:
      - name: kafka-backup
        token_env_var: KAFKA_BACKUP_INGEST_TOKEN
        event_types: [backup.*, restore.*]
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr, model_validator

from kaudit.config.fields import ConfigModel, config_error

__all__ = [
    "ClaimPath",
    "GithubLogin",
    "IngestSource",
    "LocalUrl",
    "OidcProvider",
    "ProviderName",
    "read_secret",
]


# ---------------------------------------------------------------------------- secrets


def read_secret(data: Any, field: str, *, required: bool) -> Any:
    """`data` (a raw mapping) with `field` filled from `<field>_env_var` or `<field>_file`.

    Used by `mode="before"` validators: the raw input is where the three spellings can be
    compared, and the error then lands on the model's path.
    """
    if not isinstance(data, Mapping):
        return data
    env_key, file_key = f"{field}_env_var", f"{field}_file"
    given = [k for k in (field, env_key, file_key) if data.get(k) is not None]
    if len(given) > 1:
        raise config_error(
            "secret_sources",
            f"{field} is given {len(given)} ways ({', '.join(given)}); "
            f"accepted: exactly one of {field}, {env_key} or {file_key}",
        )
    if not given:
        if required:
            raise config_error(
                "secret_missing",
                f"{field} is required: set {field} inline, {env_key} (the name of an "
                f"environment variable holding it) or {file_key} (a file holding it)",
            )
        return data
    if given[0] == field:
        return data
    out = dict(data)
    if given[0] == env_key:
        name = data[env_key]
        value = os.environ.get(name) if isinstance(name, str) else None
        if not value:
            raise config_error(
                "secret_env", f"{env_key}: environment variable {name!r} is not set or empty"
            )
    else:
        path = data[file_key]
        try:
            value = Path(str(path)).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise config_error(
                "secret_file", f"{file_key}: cannot read {path!r} ({exc.strerror or exc})"
            ) from None
        if not value:
            raise config_error("secret_file", f"{file_key}: {path!r} is empty")
    out[field] = value
    return out


# ---------------------------------------------------------------------------- field types

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def _provider_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise config_error(
            "provider_name",
            "must be lowercase letters, digits, _ and - (starting with a letter or digit, "
            "at most 63 characters; it appears in URLs like /auth/oidc/<name>/login), "
            f"got {name!r}",
        )
    return name


ProviderName = Annotated[str, AfterValidator(_provider_name)]
"""A name used in URLs and event fields: `[a-z0-9][a-z0-9_-]*`."""


def _http_url(url: str) -> str:
    if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", url):
        raise config_error(
            "url",
            f"must be an http:// or https:// URL without query or fragment, got {url!r}",
        )
    return url.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]


def _claim_path(path: str) -> str:
    if not path or any(not part for part in path.split(".")):
        raise config_error(
            "claim_path",
            f"must be a claim name or a dotted path into the token's claims "
            f"(like 'groups' or 'realm_access.roles'), got {path!r}",
        )
    return path


ClaimPath = Annotated[str, AfterValidator(_claim_path)]
"""A claim name or a dotted path into nested claims (`realm_access.roles`)."""


def _local_url(url: str) -> str:
    if not url.startswith("/") or url.startswith("//"):
        raise config_error("local_url", f"must be a path on this site (like /), got {url!r}")
    return url


LocalUrl = Annotated[str, AfterValidator(_local_url)]

_TEAM = re.compile(r"[^/\s]+/[^/\s]+")


def _team_key(key: str) -> str:
    if not _TEAM.fullmatch(key):
        raise config_error(
            "github_team",
            f"team_roles keys must be 'org/team-slug' (globs allowed: 'acme/*'), got {key!r}",
        )
    return key.lower()


TeamKey = Annotated[str, AfterValidator(_team_key)]

_EVENT_GLOB = re.compile(r"[a-z0-9_*?\[\]!-]+(\.[a-z0-9_*?\[\]!-]+)?")


def _event_glob(pattern: str) -> str:
    if not _EVENT_GLOB.fullmatch(pattern):
        raise config_error(
            "event_glob",
            "must be an event type or a glob over event types (like 'backup.*' or "
            f"'restore.completed'), got {pattern!r}",
        )
    return pattern


EventGlob = Annotated[str, AfterValidator(_event_glob)]


# ---------------------------------------------------------------------------- the models


class OidcProvider(ConfigModel):
    """An OpenID Connect provider (Keycloak, Okta, Entra ID, Google, Dex…).

    The console finds the provider's endpoints and keys in the discovery document at
    `<issuer>/.well-known/openid-configuration`, logs in with the authorization code
    flow and PKCE (S256), and takes the user's roles from the claim at `roles_claim`.
    """

    name: ProviderName
    label: str | None = None
    """The login button's text; default: the name."""
    issuer: HttpUrl
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    """None for a public client (PKCE only)."""
    client_secret_env_var: str | None = None
    client_secret_file: str | None = None
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    roles_claim: ClaimPath = "roles"
    """Where the roles are: `roles`, `groups`, `realm_access.roles`,
    `resource_access.<client>.roles`."""
    login_claim: ClaimPath = "preferred_username"
    """The user's login; falls back to `email`, then `sub`, when the claim is absent."""
    redirect_uri: HttpUrl | None = None
    """The callback URL the provider redirects to; default: derived from the request
    (`<scheme>://<host>/auth/oidc/<name>/callback`). Set it behind a reverse proxy."""
    token_endpoint_auth_method: (
        Literal["client_secret_basic", "client_secret_post", "none"] | None
    ) = None
    """Default: client_secret_basic with a secret, none without."""
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _secret(cls, data: Any) -> Any:
        return read_secret(data, "client_secret", required=False)

    @model_validator(mode="after")
    def _consistent(self) -> OidcProvider:
        if "openid" not in self.scopes:
            raise config_error("oidc_scopes", f"scopes must include 'openid', got {self.scopes!r}")
        method = self.token_endpoint_auth_method
        if method not in (None, "none") and self.client_secret is None:
            raise config_error(
                "oidc_auth_method",
                f"token_endpoint_auth_method {method!r} needs client_secret "
                "(or client_secret_env_var / client_secret_file)",
            )
        return self

    @property
    def auth_method(self) -> str:
        if self.token_endpoint_auth_method is not None:
            return self.token_endpoint_auth_method
        return "client_secret_basic" if self.client_secret is not None else "none"

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"


class GithubLogin(ConfigModel):
    """GitHub (or GitHub Enterprise Server) OAuth login; roles from organisation teams.

    `team_roles` maps `org/team-slug` (globs allowed) to console roles; a user gets the
    roles of every team they belong to. For GitHub Enterprise Server set
    `oauth_base_url: https://ghe.example.com` and
    `api_base_url: https://ghe.example.com/api/v3`.
    """

    label: str | None = None
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    client_secret_env_var: str | None = None
    client_secret_file: str | None = None
    oauth_base_url: HttpUrl = "https://github.com"
    api_base_url: HttpUrl = "https://api.github.com"
    scopes: list[str] = Field(default_factory=lambda: ["read:user", "user:email", "read:org"])
    team_roles: dict[TeamKey, list[str]] = Field(default_factory=dict)
    redirect_uri: HttpUrl | None = None
    """The callback URL registered with the OAuth app; default: derived from the request."""
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _secret(cls, data: Any) -> Any:
        return read_secret(data, "client_secret", required=True)

    def roles_for(self, teams: list[str]) -> tuple[str, ...]:
        """The roles `team_roles` gives to members of `teams` (`org/slug`, any case)."""
        member_of = [t.lower() for t in teams]
        roles: dict[str, None] = {}
        for pattern, granted in self.team_roles.items():
            if any(fnmatch.fnmatchcase(team, pattern) for team in member_of):
                roles.update(dict.fromkeys(granted))
        return tuple(roles)


MIN_TOKEN_CHARS = 16


class IngestSource(ConfigModel):
    """A tool allowed to send events to `POST /api/v1/events` with a bearer token.

    Events it sends are recorded with `context.source` = `ingest:<name>`, whatever the
    body says, so one source cannot pass its events off as another's.
    """

    name: ProviderName
    token: SecretStr
    token_env_var: str | None = None
    token_file: str | None = None
    event_types: list[EventGlob] = Field(min_length=1)
    """The event types (globs such as `backup.*`) this source may send."""

    @model_validator(mode="before")
    @classmethod
    def _secret(cls, data: Any) -> Any:
        return read_secret(data, "token", required=True)

    @model_validator(mode="after")
    def _token_strength(self) -> IngestSource:
        if len(self.token.get_secret_value()) < MIN_TOKEN_CHARS:
            raise config_error(
                "token_length",
                f"token must be at least {MIN_TOKEN_CHARS} characters "
                "(e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)",
            )
        return self

    def may_send(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, glob) for glob in self.event_types)
