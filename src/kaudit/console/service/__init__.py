"""The console's one service layer, shared by the pages and the `/api/v1` API: every
action goes through here (RBAC, then Kafka, then one audit event), never straight to
Kafka. `core` holds that path; each other module the actions on one kind of object."""

from __future__ import annotations

from kaudit.console.service.acls import AclActions
from kaudit.console.service.brokers import BrokerActions
from kaudit.console.service.core import ActionDenied, Call, Spec
from kaudit.console.service.groups import GroupActions
from kaudit.console.service.messages import MessageActions
from kaudit.console.service.topics import TopicActions

__all__ = ["ActionDenied", "Call", "ConsoleService", "Spec"]


class ConsoleService(TopicActions, MessageActions, GroupActions, AclActions, BrokerActions):
    """Every console action on every configured cluster."""
