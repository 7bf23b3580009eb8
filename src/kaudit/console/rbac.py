"""RBAC in Kpow's policy format: who may use the console, and which actions each role may
take on which clusters, topics, groups, brokers and ACLs.

A policy is `{resource: [domain, domain_id, object_type?, object_id?], effect, actions,
role | roles}`; ids and roles may be `*` or globs (`tx-*`), and a cluster is matched by
its id or its name. Any matching Deny wins, then any matching Allow; with neither the
action is denied. `ADMIN` in a policy's actions stands for every action on what the
resource covers. The decision carries the policies that matched, as Kpow's audit record
does, so an event says why.

This module also reads a Kpow RBAC file (`console.rbac_file`), reporting its problems like
configuration errors: the key's path, the line, what is accepted.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kaudit.config.console import ACTIONS, ConsoleConfig, Policy, RbacPolicy
from kaudit.config.issues import validation_issue
from kaudit.console.identity import ConsoleUser
from kaudit.errors import ConfigError, ConfigIssue
from kaudit.events.model import Authorization

__all__ = ["Decision", "Rbac", "Target", "load_rbac", "load_rbac_file"]


@dataclass(frozen=True)
class Target:
    """What an action is on: a cluster (id and name), and optionally an object in it."""

    cluster_id: str
    cluster_name: str
    object_type: str | None = None
    object_id: str | None = None


@dataclass(frozen=True)
class Decision:
    """The answer for one action: allowed or not, and the policies that decided it."""

    action: str
    allowed: bool
    policies: tuple[Policy, ...]

    @property
    def reason(self) -> str:
        """Why, in words for the person refused."""
        if self.allowed:
            return f"{self.action} allowed by {len(self.policies)} policy(ies)"
        denying = [p for p in self.policies if p.effect == "Deny"]
        if denying:
            return f"{self.action} is denied by a policy on {_show(denying[0].resource)}"
        return f"no policy allows {self.action} here"

    def authorization(self) -> Authorization:
        """The event's `authorization`: the action, the outcome, the matched policies."""
        return Authorization(
            allowed=self.allowed,
            action=self.action,
            policies=tuple(policy_record(p) for p in self.policies),
        )


def policy_record(policy: Policy) -> dict[str, Any]:
    """A policy as the audit record shows it (Kpow's `:policies` entries)."""
    record: dict[str, Any] = {
        "resource": list(policy.resource),
        "effect": policy.effect,
        "actions": sorted(policy.actions),
    }
    if policy.role is not None:
        record["role"] = policy.role
    else:
        record["roles"] = list(policy.roles or ())
    return record


def _show(resource: Iterable[str]) -> str:
    return "[" + ", ".join(resource) + "]"


def _glob(pattern: str, value: str | None) -> bool:
    return value is not None and (pattern == "*" or fnmatch.fnmatchcase(value, pattern))


class Rbac:
    """Decides actions for users under one RBAC policy."""

    def __init__(self, policy: RbacPolicy) -> None:
        self.policy = policy
        # Each action's candidate policies, so a decision walks only those that name it.
        self._by_action = {
            action: tuple(p for p in policy.policies if action in p.actions or "ADMIN" in p.actions)
            for action in ACTIONS
        }

    def authorized(self, user: ConsoleUser) -> bool:
        """Whether `user` may use the console at all (`authorized_roles`)."""
        return self._any_role(self.policy.authorized_roles, user)

    def is_admin(self, user: ConsoleUser) -> bool:
        """Whether `user` administers the console (`admin_roles`)."""
        return self._any_role(self.policy.admin_roles, user)

    @staticmethod
    def _any_role(patterns: Iterable[str], user: ConsoleUser) -> bool:
        return any(p == "*" or any(_glob(p, r) for r in user.roles) for p in patterns)

    def _applies(self, policy: Policy, user: ConsoleUser, target: Target) -> bool:
        if not self._any_role(policy.role_names, user):
            return False
        resource = policy.resource
        domain_id = resource[1]
        if not (_glob(domain_id, target.cluster_id) or _glob(domain_id, target.cluster_name)):
            return False
        if len(resource) >= 3:
            if target.object_type is None or not _glob(resource[2], target.object_type):
                return False
            if len(resource) == 4 and not _glob(resource[3], target.object_id):
                return False
        return True

    def decide(self, user: ConsoleUser, action: str, target: Target) -> Decision:
        """Deny if any matching policy denies, allow if one allows, else deny."""
        candidates = self._by_action.get(action)
        if candidates is None:
            raise ValueError(f"unknown action {action!r}; accepted: {', '.join(ACTIONS)}")
        if not self.authorized(user):
            return Decision(action, False, ())
        matched = tuple(p for p in candidates if self._applies(p, user, target))
        denying = tuple(p for p in matched if p.effect == "Deny")
        if denying:
            return Decision(action, False, denying)
        return Decision(action, bool(matched), matched)

    def may_see(self, user: ConsoleUser, target: Target) -> bool:
        """Whether list views show `target` to `user`: some action on it is allowed."""
        return any(self.decide(user, action, target).allowed for action in ACTIONS)


# ---------------------------------------------------------------------------- loading


def load_rbac(console: ConsoleConfig, base: Path | None = None) -> Rbac:
    """The console's RBAC: `rbac` inline, `rbac_file` (relative to `base`), or with
    neither an empty policy that lets users log in but take no action."""
    if console.rbac_file is not None:
        path = Path(console.rbac_file).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        return Rbac(load_rbac_file(path))
    return Rbac(console.rbac or RbacPolicy())


def load_rbac_file(path: Path) -> RbacPolicy:
    """Read a Kpow RBAC YAML file; ConfigError naming each problem's key, line and what
    is accepted."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError([ConfigIssue("", f"cannot read the RBAC file: {exc}")], source) from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError([ConfigIssue("", f"{where}{exc.problem}")], source) from exc
    try:
        return RbacPolicy.model_validate(data or {})
    except ValidationError as exc:
        issues = []
        for error in exc.errors():
            # Worded as the main configuration's errors are, then re-rooted at the file.
            located = dict(error)
            located["loc"] = ("console", "rbac", *error["loc"])
            issue = validation_issue(located, ())  # type: ignore[arg-type]
            path_text = issue.path.removeprefix("console.rbac").lstrip(".")
            line = _line_of(root, error["loc"])
            message = f"line {line}: {issue.message}" if line else issue.message
            issues.append(ConfigIssue(path_text, message))
        raise ConfigError(issues, source) from None


def _line_of(node: yaml.Node | None, loc: Iterable[int | str]) -> int | None:
    """The line (1-based) of the deepest YAML node `loc` reaches."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            child = next(
                (v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part),
                None,
            )
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if part < len(node.value) else None
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line
