"""kaudit: a tamper-evident audit trail for Apache Kafka.

For Python programs: `kaudit.open(config)` opens an audit session (a context manager)
and `kaudit.emit(event_type, actor=..., resource=..., ...)` records an event through it.
"""

from kaudit.auditor import (
    AclBindingInfo,
    AclEvent,
    ActionEvent,
    ActionTarget,
    Auditor,
    AuthInfo,
    ConfigChange,
    ConfigEvent,
    LoggingAuditor,
    RequestContext,
    RequestEvent,
    TopicEvent,
    TopicInAudit,
)
from kaudit.config import Config, load_config
from kaudit.errors import (
    AuditUnavailableError,
    ConfigError,
    KauditError,
    UnknownEventTypeError,
)
from kaudit.events import Action, Actor, AuditEvent, AuthCheck, Authorization, Resource
from kaudit.session import AuditSession, emit, open
from kaudit.version import __version__

__all__ = [
    "AclBindingInfo",
    "AclEvent",
    "Action",
    "ActionEvent",
    "ActionTarget",
    "Actor",
    "AuditEvent",
    "AuditSession",
    "AuditUnavailableError",
    "Auditor",
    "AuthCheck",
    "AuthInfo",
    "Authorization",
    "Config",
    "ConfigChange",
    "ConfigError",
    "ConfigEvent",
    "KauditError",
    "LoggingAuditor",
    "RequestContext",
    "RequestEvent",
    "Resource",
    "TopicEvent",
    "TopicInAudit",
    "UnknownEventTypeError",
    "__version__",
    "emit",
    "load_config",
    "open",
]
