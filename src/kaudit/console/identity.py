"""Who is using the console: the user a login provider vouched for, with their roles."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConsoleUser:
    """A person logged in to the console.

    `provider` names how they logged in (``local``, ``oidc:<name>``, ``github``); `login`
    is their unique name within that provider; `id` is the provider's stable subject
    (the OIDC ``sub``, the GitHub numeric id, the local user name). `roles` decide what
    the RBAC policies allow.
    """

    provider: str
    login: str
    id: str
    name: str | None = None
    email: str | None = None
    roles: tuple[str, ...] = ()
