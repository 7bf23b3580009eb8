"""How the console records what people do: one event per action, with the user, the
request, the RBAC decision, Kafka's outcome and the context (cluster id, source address,
user agent, request id).

`ConsoleRecorder` owns the event's shape and the verbosity: mutations, logins and
message inspection are always recorded; the verbosity decides whether queries are too
(`mutations`: no; `queries` or `all`: yes).
`details` carries Kpow's view of the action (`console_action` such as `create-topic`,
its `subjects`, the `user` block, the `request` and the `outcome`), which the Slack
destination turns into Kpow's message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kaudit.console.identity import ConsoleUser
from kaudit.console.rbac import Decision
from kaudit.events.catalog import EventCatalog
from kaudit.events.model import Action, Actor, AuditEvent, Context, Resource, Result
from kaudit.recorder.core import Recorder

__all__ = ["ALWAYS_RECORDED", "ConsoleRecorder", "RequestInfo", "user_record"]

ALWAYS_RECORDED = frozenset(
    {"auth.login", "auth.logout", "auth.failed", "records.inspected", "audit.exported"}
)
"""Recorded whatever the verbosity: who logged in, who looked at data, who exported the
audit log."""


@dataclass(frozen=True)
class RequestInfo:
    """Where a console request came from."""

    request_id: str
    source_address: str | None = None
    user_agent: str | None = None


def user_record(user: ConsoleUser) -> dict[str, Any]:
    """The event's `user` block, as in Kpow's record: provider, email, name, login, id."""
    return {
        "provider": user.provider,
        "email": user.email,
        "name": user.name,
        "login": user.login,
        "id": user.id,
    }


class ConsoleRecorder:
    """Turns console actions into audit events on one recorder."""

    def __init__(self, recorder: Recorder, verbosity: str = "all") -> None:
        self.recorder = recorder
        self.verbosity = verbosity
        self._catalog = EventCatalog()
        self._mutation: dict[str, bool] = {}

    def _is_mutation(self, event_type: str) -> bool:
        found = self._mutation.get(event_type)
        if found is None:
            catalog = self._catalog
            found = catalog.get(event_type).mutation if event_type in catalog else True
            self._mutation[event_type] = found
        return found

    def selected(self, event_type: str) -> bool:
        """Whether the verbosity records events of this type."""
        if event_type in ALWAYS_RECORDED or self.verbosity != "mutations":
            return True
        return self._is_mutation(event_type)

    def action(
        self,
        event_type: str,
        *,
        console_action: str,
        subjects: Sequence[str],
        user: ConsoleUser,
        info: RequestInfo,
        cluster_id: str | None,
        cluster_name: str | None,
        resource: Resource,
        request: Mapping[str, Any],
        decision: Decision | None,
        result: Result,
        error: str | None = None,
        outcome: Mapping[str, Any] | None = None,
        duration_ms: float | None = None,
    ) -> None:
        """Record one console action (unless the verbosity leaves it out)."""
        if not self.selected(event_type):
            return
        kind = "mutation" if self._is_mutation(event_type) else "query"
        details: dict[str, Any] = {
            "console_action": console_action,
            "kind": kind,
            "subjects": list(subjects),
            "user": user_record(user),
            "request": dict(request),
            "outcome": dict(outcome) if outcome is not None else None,
            "cluster": cluster_name,
        }
        event = AuditEvent(
            timestamp="",
            event_type=event_type,
            event_id="",
            actor=Actor(
                type="user",
                id=user.login,
                roles=tuple(user.roles),
                ip_address=info.source_address,
                user_agent=info.user_agent,
                auth=user.provider,
            ),
            resource=resource,
            action=Action(
                operation=console_action,
                result=result,
                duration_ms=duration_ms,
                error=error,
            ),
            authorization=decision.authorization() if decision is not None else None,
            context=Context(
                cluster_id=cluster_id, correlation_id=info.request_id, source="console"
            ),
            details=details,
        )
        self.recorder.record(event)

    def auth(
        self,
        event_type: str,
        *,
        provider: str,
        login: str | None,
        user: ConsoleUser | None,
        info: RequestInfo,
        result: Result,
        error: str | None = None,
    ) -> None:
        """Record `auth.login`, `auth.logout` or `auth.failed` with the provider and the
        source address."""
        details: dict[str, Any] = {
            "console_action": event_type.partition(".")[2],
            "provider": provider,
            "user": user_record(user)
            if user is not None
            else {"provider": provider, "login": login},
        }
        self.recorder.record(
            AuditEvent(
                timestamp="",
                event_type=event_type,
                event_id="",
                actor=Actor(
                    type="user",
                    id=login or "-",
                    roles=tuple(user.roles) if user is not None else (),
                    ip_address=info.source_address,
                    user_agent=info.user_agent,
                    auth=provider,
                ),
                resource=Resource(type="console", id="session"),
                action=Action(operation=event_type.partition(".")[2], result=result, error=error),
                context=Context(correlation_id=info.request_id, source="console"),
                details=details,
            )
        )
