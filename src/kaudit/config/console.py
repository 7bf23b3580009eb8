"""The `console` section: the web console where people administer Kafka, each action
audited.

This module owns where the console listens, the clusters it administers (each with its
own service credentials), its local users (argon2id hashes), sessions and login limits,
which actions are recorded (`verbosity`), the masking rules of message inspection, and
the RBAC policy in Kpow's format (`rbac:` inline, or `rbac_file:` naming a Kpow-style
YAML file that `kaudit.console.rbac` reads with line numbers in its errors).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal, get_args

from pydantic import Field, SecretStr, model_validator

from kaudit.config.connections import KafkaConnection
from kaudit.config.console_auth import GithubLogin, IngestSource, OidcProvider
from kaudit.config.fields import ConfigModel, HostPort, config_error

__all__ = [
    "ACTIONS",
    "ConsoleCluster",
    "ConsoleConfig",
    "LocalUser",
    "LoginLimits",
    "MaskRule",
    "Policy",
    "RbacPolicy",
]

RbacAction = Literal[
    "TOPIC_INSPECT",
    "TOPIC_PRODUCE",
    "TOPIC_CREATE",
    "TOPIC_EDIT",
    "TOPIC_DELETE",
    "TOPIC_TRUNCATE",
    "TOPIC_UNMASK",
    "GROUP_EDIT",
    "GROUP_DELETE",
    "ACL_EDIT",
    "BROKER_EDIT",
    "ADMIN",
]
"""Kpow's action names, plus TOPIC_UNMASK: inspect messages without the masking rules."""

ACTIONS: tuple[str, ...] = get_args(RbacAction)

OBJECT_TYPES = ("topic", "group", "broker", "acl")


class Policy(ConfigModel):
    """One Kpow policy: on `resource`, `effect` the `actions` for `role` or `roles`."""

    resource: list[str] = Field(min_length=2, max_length=4)
    """`[domain, domain_id, object_type?, object_id?]`: `["cluster", "*", "topic", "tx-*"]`."""
    effect: Literal["Allow", "Deny"]
    actions: list[RbacAction] = Field(min_length=1)
    role: str | None = None
    roles: list[str] | None = None

    @model_validator(mode="after")
    def _shape(self) -> Policy:
        if (self.role is None) == (self.roles is None):
            raise config_error("policy_role", "set one of role (a role or *) or roles (a list)")
        if self.resource[0] != "cluster":
            raise config_error(
                "policy_resource",
                f"resource domain {self.resource[0]!r} is not administered here; accepted: cluster",
            )
        if len(self.resource) >= 3 and self.resource[2] not in (*OBJECT_TYPES, "*"):
            raise config_error(
                "policy_resource",
                f"object type {self.resource[2]!r} is unknown; accepted: "
                f"{', '.join(OBJECT_TYPES)}, *",
            )
        return self

    @property
    def role_names(self) -> tuple[str, ...]:
        return (self.role,) if self.role is not None else tuple(self.roles or ())


class RbacPolicy(ConfigModel):
    """Kpow's RBAC file: who may use the console, who administers it, and the policies."""

    authorized_roles: list[str] = ["*"]
    """Roles that may log in at all (`*`: anyone a provider vouches for)."""
    admin_roles: list[str] = []
    """Roles that administer the console: they may read every user's log."""
    policies: list[Policy] = []


class LocalUser(ConfigModel):
    """A user of the console's own login, with an argon2id hash of their password."""

    username: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._@-]+$")
    password_hash: SecretStr
    """From `kaudit console hash-password`: `$argon2id$v=19$...`."""
    name: str | None = None
    email: str | None = None
    roles: list[str] = []

    @model_validator(mode="after")
    def _argon2id(self) -> LocalUser:
        if not self.password_hash.get_secret_value().startswith("$argon2id$"):
            raise config_error(
                "password_hash",
                "must be an argon2id hash ($argon2id$...); make one with "
                "`kaudit console hash-password`",
            )
        return self


class ConsoleCluster(KafkaConnection):
    """A Kafka cluster the console administers, with the console's own credentials."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    """How people and URLs name it (`/clusters/{name}/topics`)."""
    id: str | None = None
    """The cluster id written in events (default: the id Kafka reports)."""
    timeout_seconds: float = Field(default=30.0, gt=0)
    """How long one Kafka call may take before the action fails."""


class LoginLimits(ConfigModel):
    """Failed logins allowed per user and per address within `window_seconds`."""

    max_failures_per_user: int = Field(default=5, ge=1)
    max_failures_per_address: int = Field(default=20, ge=1)
    window_seconds: float = Field(default=900.0, gt=0)


class MaskRule(ConfigModel):
    """Hide JSON fields and headers of messages on matching topics when inspecting,
    unless the user holds TOPIC_UNMASK on the topic."""

    topics: list[str] = ["*"]
    """Topic names or globs."""
    fields: list[str] = []
    """JSON keys (at any depth) or dotted paths (`card.number`) of message values."""
    headers: list[str] = []
    """Header names or globs."""
    pattern: str | None = None
    """A regular expression whose matches are hidden in text values."""

    @model_validator(mode="after")
    def _compiles(self) -> MaskRule:
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise config_error("mask_pattern", f"not a regular expression: {exc}") from None
        return self


class ConsoleConfig(ConfigModel):
    """The web console: clusters, login, RBAC and what is recorded."""

    listen: HostPort = "127.0.0.1:8080"
    clusters: list[ConsoleCluster] = Field(min_length=1)
    users: list[LocalUser] = []
    rbac: RbacPolicy | None = None
    rbac_file: str | None = None
    """A Kpow RBAC YAML file (authorized_roles, admin_roles, policies), instead of `rbac`."""
    verbosity: Literal["mutations", "queries", "all"] = "all"
    """Whether queries are recorded too (`queries`, `all`) or not (`mutations`); mutations,
    logins and message inspection always are."""
    session_secret: SecretStr | None = None
    """Signs session cookies (32+ characters); unset, a random one per start."""
    session_idle_minutes: float = Field(default=30.0, gt=0)
    session_max_hours: float = Field(default=12.0, gt=0)
    secure_cookies: bool | None = None
    """Send the session cookie over HTTPS only. Unset: yes unless the console listens on
    a loopback address (so http://127.0.0.1 keeps working); set false to serve plain
    HTTP on other addresses."""
    trusted_proxies: list[str] = []
    """Addresses or networks of reverse proxies whose X-Forwarded-For and
    X-Forwarded-Proto are believed; empty (the default), the headers are ignored and the
    source address is the connection's."""
    login_limits: LoginLimits = LoginLimits()
    masking: list[MaskRule] = []
    max_inspect_messages: int = Field(default=500, ge=1)
    log_days: float = Field(default=7.0, gt=0, le=3660)
    """How far back the audit log and each user's log look unless asked otherwise (days;
    Kpow shows seven)."""
    oidc: list[OidcProvider] = []
    """OpenID Connect providers, each a button on the login page."""
    github: GithubLogin | None = None
    """GitHub OAuth login."""
    ingest: list[IngestSource] = []
    """Sources that may send events to POST /api/v1/events with a bearer token."""
    ingest_max_body_bytes: int = Field(default=1 << 20, ge=1024)
    """The largest body POST /api/v1/events takes (413 beyond it)."""

    @model_validator(mode="after")
    def _consistent(self) -> ConsoleConfig:
        if self.rbac is not None and self.rbac_file is not None:
            raise config_error("rbac", "set rbac (inline) or rbac_file, not both")
        names = [c.name for c in self.clusters]
        if len(set(names)) != len(names):
            raise config_error("clusters", f"cluster names must be unique, got {names}")
        users = [u.username for u in self.users]
        if len(set(users)) != len(users):
            raise config_error("users", f"usernames must be unique, got {users}")
        if self.session_secret is not None and len(self.session_secret.get_secret_value()) < 32:
            raise config_error("session_secret", "must be at least 32 characters long")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise config_error(
                    "trusted_proxies",
                    f"{proxy!r} is not an IP address or network; accepted: 10.0.0.5, 10.0.0.0/8",
                ) from None
        return self

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def cookies_secure(self) -> bool:
        """Whether the session cookie is Secure: `secure_cookies`, else whether the
        console listens beyond loopback."""
        if self.secure_cookies is not None:
            return self.secure_cookies
        host = self.listen_host.strip("[]")
        if host == "localhost":
            return False
        try:
            return not ipaddress.ip_address(host).is_loopback
        except ValueError:  # a host name: reachable from elsewhere
            return True

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])
