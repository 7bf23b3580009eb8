"""Broker actions: list brokers and read their configs (any authorized user), edit a
broker's dynamic configs (BROKER_EDIT)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaudit.console.actions import brokers
from kaudit.console.service.core import Call, ServiceCore, Spec

__all__ = ["BrokerActions"]


class BrokerActions(ServiceCore):
    def list_brokers(self, call: Call) -> dict[str, Any]:
        spec = Spec("admin.brokers_described", "list-brokers", None, None, None, {})
        return self.run(call, spec, brokers.list_brokers, lambda r: {"brokers": len(r["brokers"])})

    def broker_configs(self, call: Call, broker: int) -> dict[str, dict[str, Any]]:
        spec = Spec("config.viewed", "describe-broker-configs", None, "broker", str(broker),
                    {"broker": broker})  # fmt: skip
        return self.run(
            call, spec, lambda c: brokers.broker_configs(c, broker), lambda r: {"configs": len(r)}
        )

    def edit_broker_configs(
        self, call: Call, broker: int, changes: Mapping[str, str | None]
    ) -> dict[str, Any]:
        spec = Spec("config.changed", "edit-broker-config", "BROKER_EDIT", "broker", str(broker),
                    {"broker": broker, "config-items": dict(changes)})  # fmt: skip
        return self.run(call, spec, lambda c: brokers.alter_broker_configs(c, broker, changes))
