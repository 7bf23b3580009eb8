"""The audit event: its model, catalog of types, canonical bytes and other renderings.

This package imports nothing else of kaudit's, so every other part can depend on it.
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
