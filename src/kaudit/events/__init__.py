"""The audit event: its model (immutable dataclasses), the catalog of event types, the
filter that selects types by glob, the canonical bytes (`codec`, the one serialiser, also
used by the recorder's writer to assemble lines from parts) and other renderings
(`formats`: CloudEvents, OCSF).

It imports nothing of kaudit's but kaudit.errors, so every other part can depend on it.
"""

from kaudit.events.catalog import CATALOG, CATEGORIES, EventCatalog, EventType
from kaudit.events.codec import decode, encode, from_dict, to_dict
from kaudit.events.model import (
    Action,
    Actor,
    ApiRef,
    AuditEvent,
    AuthCheck,
    Authorization,
    Context,
    Integrity,
    Resource,
)

__all__ = [
    "CATALOG",
    "CATEGORIES",
    "Action",
    "Actor",
    "ApiRef",
    "AuditEvent",
    "AuthCheck",
    "Authorization",
    "Context",
    "EventCatalog",
    "EventType",
    "Integrity",
    "Resource",
    "decode",
    "encode",
    "from_dict",
    "to_dict",
]
