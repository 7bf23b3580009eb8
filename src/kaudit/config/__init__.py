"""kaudit's configuration: the typed model and the loader that reads it from YAML.

`load_config(path)` is the way in; it raises `kaudit.errors.ConfigError` listing every
problem with its dotted path. The model classes are exported for code that builds a
configuration in Python (tests, embedding); every section's models can be imported from
`kaudit.config.model`.

The package sits at the bottom of kaudit's layers: of kaudit's own modules it imports
only `kaudit.events` (the event catalog, to check event selectors) and `kaudit.errors`
(`ConfigError`, `ConfigIssue`), so every other part may import it.
"""

from kaudit.config.load import load_config, load_config_text
from kaudit.config.model import (
    AuditConfig,
    AuditorEntry,
    AuditorSpec,
    ClusterConfig,
    Config,
    Destination,
    DestinationBase,
    FileDestination,
    LocalLog,
    LogConfig,
    Rotation,
    TypeSwitch,
)

__all__ = [
    "AuditConfig",
    "AuditorEntry",
    "AuditorSpec",
    "ClusterConfig",
    "Config",
    "Destination",
    "DestinationBase",
    "FileDestination",
    "LocalLog",
    "LogConfig",
    "Rotation",
    "TypeSwitch",
    "load_config",
    "load_config_text",
]
