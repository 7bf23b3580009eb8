"""`kaudit.__all__` is exactly what we mean to export, and every name in it resolves."""

from __future__ import annotations

import kaudit

EXPECTED = {
    # the SDK
    "open",
    "emit",
    "AuditSession",
    "Config",
    "load_config",
    "__version__",
    # events
    "AuditEvent",
    "Actor",
    "Resource",
    "Action",
    "Authorization",
    "AuthCheck",
    # the KIP-567 auditor interface
    "Auditor",
    "LoggingAuditor",
    "RequestContext",
    "RequestEvent",
    "AuthInfo",
    "TopicEvent",
    "TopicInAudit",
    "AclEvent",
    "ActionEvent",
    "ActionTarget",
    "AclBindingInfo",
    "ConfigEvent",
    "ConfigChange",
    # errors
    "KauditError",
    "ConfigError",
    "AuditUnavailableError",
    "UnknownEventTypeError",
}


def test_all_is_exactly_the_public_api() -> None:
    assert len(kaudit.__all__) == len(set(kaudit.__all__)), "duplicates in __all__"
    assert set(kaudit.__all__) == EXPECTED


def test_every_exported_name_resolves_to_the_real_object() -> None:
    from kaudit import auditor, config, errors, events, session

    for name in kaudit.__all__:
        assert hasattr(kaudit, name), name
    assert kaudit.open is session.open
    assert kaudit.emit is session.emit
    assert kaudit.AuditSession is session.AuditSession
    assert kaudit.Config is config.Config
    assert kaudit.load_config is config.load_config
    assert kaudit.AuditEvent is events.AuditEvent
    assert kaudit.LoggingAuditor is auditor.LoggingAuditor
    assert kaudit.KauditError is errors.KauditError
    assert issubclass(kaudit.AuditUnavailableError, kaudit.KauditError)
    assert issubclass(kaudit.UnknownEventTypeError, kaudit.KauditError)
    assert issubclass(kaudit.ConfigError, kaudit.KauditError)
    assert isinstance(kaudit.__version__, str) and kaudit.__version__


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from kaudit import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == EXPECTED
