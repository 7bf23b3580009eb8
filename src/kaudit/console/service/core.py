"""The path every console action takes: RBAC, then Kafka, then one audit event.

Each action is decided by RBAC before anything is sent to Kafka, then made through
`kaudit.console.actions`, then recorded as one event with the request, the user, the
decision and Kafka's outcome (`ConsoleRecorder`). A refusal raises `ActionDenied` carrying
the decision; Kafka's error raises `KafkaCallError`. List views keep only what the user
may see.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from kaudit.config.console import ConsoleConfig
from kaudit.console.audit import ConsoleRecorder, RequestInfo
from kaudit.console.clusters import ClusterClients, Clusters, KafkaCallError
from kaudit.console.identity import ConsoleUser
from kaudit.console.rbac import Decision, Rbac, Target
from kaudit.errors import KauditError
from kaudit.events.model import Resource

__all__ = ["ActionDenied", "Call", "ServiceCore", "Spec"]

T = TypeVar("T")


class ActionDenied(KauditError):
    """RBAC refused the action; `decision` says which policies decided it."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


@dataclass(frozen=True)
class Call:
    """Who is asking, from where, about which cluster."""

    user: ConsoleUser
    info: RequestInfo
    cluster: str


@dataclass(frozen=True)
class Spec:
    """One action as the audit trail names it."""

    event_type: str
    console_action: str
    """Kpow's name: `create-topic`, `produce`, `reset-offsets`..."""
    rbac_action: str | None
    """The RBAC action required; None for queries any authorized user may make."""
    object_type: str | None
    object_id: str | None
    request: Mapping[str, Any]


class ServiceCore:
    """RBAC, Kafka and the audit trail, for every console action."""

    def __init__(
        self, config: ConsoleConfig, rbac: Rbac, recorder: ConsoleRecorder, clusters: Clusters
    ) -> None:
        self.config = config
        self.rbac = rbac
        self.recorder = recorder
        self.clusters = clusters

    # -- the one path every action takes ---------------------------------------------------

    def target(
        self, cluster: ClusterClients, object_type: str | None, object_id: str | None
    ) -> Target:
        return Target(self.cluster_id(cluster), cluster.name, object_type, object_id)

    @staticmethod
    def cluster_id(cluster: ClusterClients) -> str:
        """The cluster's id; its name while Kafka cannot be asked (policies naming the id
        then do not match, so nothing is allowed by mistake; the action fails anyway)."""
        try:
            return cluster.id
        except KafkaCallError:
            return cluster.name

    def decide(self, call: Call, action: str, object_type: str, object_id: str) -> Decision:
        """The decision for `action`, without acting (to show or hide buttons)."""
        cluster = self.clusters.get(call.cluster)
        return self.rbac.decide(call.user, action, self.target(cluster, object_type, object_id))

    def run(
        self,
        call: Call,
        spec: Spec,
        act: Callable[[ClusterClients], T],
        outcome: Callable[[T], Mapping[str, Any] | None] | None = None,
    ) -> T:
        """Decide, act on Kafka, record; the result of `act`."""
        cluster = self.clusters.get(call.cluster)
        decision: Decision | None = None
        if spec.rbac_action is not None:
            target = self.target(cluster, spec.object_type, spec.object_id)
            decision = self.rbac.decide(call.user, spec.rbac_action, target)
            if not decision.allowed:
                self.refuse(call, spec, decision)
        started = time.perf_counter()
        try:
            result = act(cluster)
        except Exception as exc:  # recorded whatever went wrong, then raised on
            elapsed = (time.perf_counter() - started) * 1000
            code = exc.code if isinstance(exc, KafkaCallError) else type(exc).__name__
            self._record(
                call, cluster, spec, decision, "failure", str(exc), None, elapsed,
                {"error_code": code},
            )  # fmt: skip
            raise
        elapsed = (time.perf_counter() - started) * 1000
        shown = (
            outcome(result)
            if outcome is not None
            else (result if isinstance(result, Mapping) else None)
        )
        self._record(call, cluster, spec, decision, "success", None, shown, elapsed)
        return result

    def refuse(self, call: Call, spec: Spec, decision: Decision) -> NoReturn:
        """Record `spec` as denied by `decision`, and raise ActionDenied."""
        cluster = self.clusters.get(call.cluster)
        self._record(call, cluster, spec, decision, "denied", decision.reason, None, None)
        raise ActionDenied(decision)

    def _record(
        self,
        call: Call,
        cluster: ClusterClients,
        spec: Spec,
        decision: Decision | None,
        result: Any,
        error: str | None,
        outcome: Mapping[str, Any] | None,
        elapsed_ms: float | None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        subject = spec.object_id or cluster.name
        resource = Resource(type=spec.object_type or "cluster", id=spec.object_id or cluster.name)
        cluster_id = self.cluster_id(cluster)
        self.recorder.action(
            spec.event_type,
            console_action=spec.console_action,
            subjects=[subject],
            user=call.user,
            info=call.info,
            cluster_id=cluster_id,
            cluster_name=cluster.name,
            resource=resource,
            request=spec.request,
            decision=decision,
            result=result,
            error=error,
            outcome={**(outcome or {}), **(extra or {})} or None,
            duration_ms=elapsed_ms,
        )

    def visible(
        self, call: Call, cluster: ClusterClients, object_type: str, ids: Sequence[str]
    ) -> set[str]:
        """The ids of `object_type` objects `call.user` may see."""
        return {
            i for i in ids if self.rbac.may_see(call.user, self.target(cluster, object_type, i))
        }
